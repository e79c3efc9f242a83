"""Write the configured encoder (hub id, local directory, or random config) to results/encoder/."""

from pathlib import Path

from cltm.encoder import materialise_encoder
from cltm.io import run_script, script_logger, write_json

log = script_logger(snakemake.log[0])


def main():
    summary = materialise_encoder(snakemake.params.encoder, Path(snakemake.output.config).parent)
    write_json(snakemake.output.summary, summary)
    log(f"encoder {summary['source']}: {summary['parameters']:,} parameters")


run_script(main, log)
