"""Decode one language's selected clips to mono 16 kHz, replacing every bad clip from the pool.

Writes the audio (one int16 array plus an index) and the language's record: its final selections,
corpus statistics and every dropped clip with its path and reason.
"""

from cltm.data.audio import write_store
from cltm.data.corpora import read_manifest_table
from cltm.data.prepare import prepare_selection
from cltm.data.report import language_record
from cltm.io import read_json, run_script, script_logger, write_json

log = script_logger(snakemake.log[0])


def main():
    lang = snakemake.wildcards.lang
    config = read_json(snakemake.input.settings)
    sr = config["data"]["sample_rate"]
    manifest = read_manifest_table(snakemake.input.manifest)
    planned = read_json(snakemake.input.plan)
    log(f"{lang}: preparing the selected clips of {len(manifest)}")
    prepared = prepare_selection(config, manifest, lang, planned, sample_rate=sr, log=log)
    index = write_store(prepared.pcm, manifest.set_index("utt_id"), snakemake.output.audio, snakemake.output.index)
    samples = int(index["n_samples"].sum())
    record = language_record(lang, manifest, prepared.selections, prepared.dropped, prepared.checked, samples, sr,
                             speaker_ids=config["data"].get("speaker_ids", "corpus"))
    write_json(snakemake.output.record, record)
    log(f"{lang}: {len(index)} clips, {samples / sr / 60:.1f} min of audio; {len(prepared.dropped)} bad clip(s) "
        f"dropped and replaced" + (f": {prepared.dropped['reason'].value_counts().to_dict()}" if len(prepared.dropped) else ""))


run_script(main, log)
