"""A learning-curve rung's subsets: single and extra cut to n, nested in the ordinary subsets."""

import pandas as pd

from cltm.data.selection import nested_subset
from cltm.io import read_json, run_script, script_logger, write_json
from cltm.tasks import make_task

log = script_logger(snakemake.log[0])


def main():
    w = snakemake.wildcards
    selection = read_json(snakemake.input.subsets)
    index = pd.read_csv(snakemake.input.index, sep="\t", dtype=str, keep_default_na=False)
    sub = nested_subset(selection, index, make_task(w.task, snakemake.params.task), int(w.size), snakemake.params.seed)
    write_json(snakemake.output[0], sub)
    log(f"{w.task} {w.lang} n={w.size}: single {len(sub['single'])}, extra {len(sub['extra'])} clips")


run_script(main, log)
