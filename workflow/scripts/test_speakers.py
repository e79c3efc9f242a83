"""Pick one language's test speakers (they depend on no other language's test set; a speaker labelled
with both genders anywhere in the corpus is never one)."""

from cltm.data.corpora import read_manifest_table, read_speaker_index, read_speaker_labels
from cltm.data.plan import language_test_speakers
from cltm.data.speakers import language_rules
from cltm.io import read_json, run_script, script_logger, write_json

log = script_logger(snakemake.log[0])


def main():
    lang = snakemake.wildcards.lang
    config = read_json(snakemake.input.settings)
    labels = read_speaker_index(snakemake.input.index, read_speaker_labels([snakemake.input.labels]))
    rules = language_rules(config, lang, labels)
    speakers = language_test_speakers(config, read_manifest_table(snakemake.input.manifest), rules)
    write_json(snakemake.output[0], {"language": lang, "test_speakers": speakers})
    log(f"{lang}: test speakers {', '.join(speakers)}")


run_script(main, log)
