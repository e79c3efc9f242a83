"""Decode the selected clips of one language to mono 16 kHz, stored as one array plus an index."""

import pandas as pd

from cltm.audio import prepare_language
from cltm.io import read_json, run_script, script_logger

log = script_logger(snakemake.log[0])


def main():
    manifest = pd.read_csv(snakemake.input.manifest, sep="\t", dtype={"utt_id": str, "speaker": str, "gender": str},
                           keep_default_na=False)
    wanted = set()
    for path in snakemake.input.subsets:
        sel = read_json(path)
        wanted.update(sel["test"], sel["single"], sel["extra"])
    log(f"{snakemake.wildcards.lang}: decoding {len(wanted)} selected clips of {len(manifest)}")
    index = prepare_language(manifest, wanted, snakemake.output.audio, snakemake.output.index,
                             sample_rate=snakemake.params.sample_rate, log=log)
    log(f"{snakemake.wildcards.lang}: {index['n_samples'].sum() / snakemake.params.sample_rate / 60:.1f} min of audio")


run_script(main, log)
