"""Write the demo corpus's plant file: the planted rule of each language and the expected CLTM structure."""

from cltm.demo.plant import PlantSpec, plant_record
from cltm.demo.synth import plant_clips
from cltm.io import run_script, script_logger, write_json

log = script_logger(snakemake.log[0])


def main():
    demo = snakemake.params.demo
    spec = PlantSpec.from_config(demo.get("plant"))
    if spec is None:
        raise ValueError("config key 'corpus.demo.plant' is not set: there is no plant to write "
                         "(set it as in config/config.yaml, or do not ask for results/demo_corpus/plant.json)")
    languages = list(snakemake.params.languages)
    clips = {lang: plant_clips(lang, demo["n_speakers_per_gender"], demo["utterances_per_speaker"], demo["seed"], spec)
             for lang in languages}
    record = plant_record(spec, languages, clips, demo["seed"])
    write_json(snakemake.output[0], record)
    for lang, info in record["languages"].items():
        log(f"{lang}: rule angle {info['rule_angle_deg']:g} deg (layout {info['angle_deg']:g}), "
            f"{info[spec.classes[1]]} of {info['clips']} clips {spec.classes[1]}")
    log(f"{len(record['pairs'])} ordered pairs; null control: {spec.null}")


run_script(main, log)
