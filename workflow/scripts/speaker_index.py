"""Every language's speakers and their labels in one table (language, speaker, genders[, labels_<column>])."""

import pandas as pd

from cltm.data.corpora import read_speaker_labels
from cltm.io import run_script, script_logger, write_table

log = script_logger(snakemake.log[0])


def main():
    labels = read_speaker_labels(snakemake.input)
    # language, speaker, genders, and the labels_<column> of any extra label column a task reads
    index = pd.concat([df.assign(language=lang)[["language", *df.columns]] for lang, df in labels.items()])
    write_table(snakemake.output[0], index, index=False)
    log(f"{len(index)} speakers in {len(labels)} languages, {index['speaker'].duplicated().sum()} ids in several")


run_script(main, log)
