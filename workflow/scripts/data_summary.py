"""Per language: speakers and clips per gender, hours, the planned sizes per task, and what the
corpus-wide speaker rules removed."""

from pathlib import Path

from cltm.data.corpora import read_manifest_table
from cltm.data.report import data_summary
from cltm.io import read_json, run_script, script_logger, write_table

log = script_logger(snakemake.log[0])


def main():
    manifests = {Path(p).stem: read_manifest_table(p) for p in snakemake.input.manifests}
    selections = {Path(p).stem: read_json(p) for p in snakemake.input.plans}
    summary = data_summary(manifests, selections)
    write_table(snakemake.output[0], summary, index=False)
    log("\n" + summary.to_string(index=False))


run_script(main, log)
