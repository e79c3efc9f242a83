"""Read one language of the configured corpus into the tool's manifest format."""

from cltm.data.corpora import load_corpus_language
from cltm.io import run_script, script_logger, write_table

log = script_logger(snakemake.log[0])


def main():
    lang = snakemake.wildcards.lang
    df = load_corpus_language(snakemake.params.corpus, lang, demo_root="results/demo_corpus")
    write_table(snakemake.output[0], df, index=False)
    log(f"{lang}: {len(df)} clips, {df['speaker'].nunique()} speakers, genders {df['gender'].value_counts().to_dict()}")


run_script(main, log)
