"""The final subsets of one task and language (after bad clips were replaced), which its runs read."""

from cltm.io import read_json, run_script, script_logger, write_json

log = script_logger(snakemake.log[0])


def main():
    write_json(snakemake.output[0], read_json(snakemake.input[0])["selections"][snakemake.wildcards.task])


run_script(main, log)
