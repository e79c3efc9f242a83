"""Every language's test speakers in one file: {language: [speaker, ...]}."""

from cltm.io import read_json, run_script, script_logger, write_json

log = script_logger(snakemake.log[0])


def main():
    tests = {rec["language"]: rec["test_speakers"] for rec in map(read_json, snakemake.input)}
    write_json(snakemake.output[0], tests)


run_script(main, log)
