"""One language's speakers and the gender labels their clips carry: what the other languages'
selections read of this one (corpus-wide speaker identity, mixed-gender speakers)."""

from cltm.data.corpora import read_manifest_table
from cltm.data.speakers import speaker_labels
from cltm.io import run_script, script_logger, write_table

log = script_logger(snakemake.log[0])


def main():
    labels = speaker_labels(read_manifest_table(snakemake.input[0]))
    write_table(snakemake.output[0], labels, index=False)
    log(f"{snakemake.wildcards.lang}: {len(labels)} speakers")


run_script(main, log)
