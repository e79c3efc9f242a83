"""Write one language of the synthetic demo corpus as a Common Voice-shaped folder."""

from pathlib import Path

from cltm.demo.plant import PlantSpec
from cltm.demo.synth import synthesize_language
from cltm.io import run_script, script_logger

log = script_logger(snakemake.log[0])


def main():
    demo = snakemake.params.demo
    df = synthesize_language(
        snakemake.wildcards.lang,
        Path(snakemake.output.validated).parent,
        n_speakers_per_gender=demo["n_speakers_per_gender"],
        utterances_per_speaker=demo["utterances_per_speaker"],
        seed=demo["seed"],
        clip_format=demo["clip_format"],
        plant=PlantSpec.from_config(demo.get("plant")),
        log=log,
    )
    log(f"{snakemake.wildcards.lang}: {len(df)} synthetic clips from {df['client_id'].nunique()} speakers")


run_script(main, log)
