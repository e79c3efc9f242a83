"""Preflight: can each language supply the requested regimes, how many runs, what cost (metadata only)."""

from pathlib import Path

from cltm.corpora import read_manifest_table
from cltm.io import atomic_path, run_script, script_logger, write_table
from cltm.preflight import preflight

log = script_logger(snakemake.log[0])


def main():
    manifests = {Path(p).stem: read_manifest_table(p) for p in snakemake.input}
    capacity, runs, text = preflight(snakemake.params.config, manifests)
    write_table(snakemake.output.capacity, capacity, index=False)
    write_table(snakemake.output.grid, runs, index=False)
    with atomic_path(snakemake.output.summary) as tmp:
        tmp.write_text(text)
    log("\n" + text)


run_script(main, log)
