"""Plan one language's selection on metadata only: test set, nested training subsets, trials, under
the corpus-wide speaker rules (no test speaker of any language trains here).

The plan is final unless audio preparation finds bad clips (then it replaces them: see prepare_audio.py).
"""

from cltm.data.corpora import read_manifest_table, read_speaker_index, read_speaker_labels
from cltm.data.plan import select_language
from cltm.data.selection import SelectionError
from cltm.data.speakers import language_rules
from cltm.io import read_json, run_script, script_logger, write_json

log = script_logger(snakemake.log[0])


def main():
    lang = snakemake.wildcards.lang
    config = read_json(snakemake.input.settings)
    labels = read_speaker_index(snakemake.input.index, read_speaker_labels([snakemake.input.labels]))
    tests = {**read_json(snakemake.input.test_index), lang: read_json(snakemake.input.test)["test_speakers"]}
    rules = language_rules(config, lang, labels, tests)
    try:
        plan = select_language(config, read_manifest_table(snakemake.input.manifest), lang, rules)
    except SelectionError as err:
        raise SelectionError(f"{err}; no training was started (`snakemake --cores 1 preflight` lists every "
                             "language's capacity at once)") from None
    if plan and sorted(next(iter(plan.values()))["test_speakers"]) != sorted(tests[lang]):
        raise RuntimeError(f"{lang}: the selection's test speakers differ from {snakemake.input.test}")  # a bug
    write_json(snakemake.output[0], plan)
    for task, sel in plan.items():
        log(f"{lang}/{task}: test {len(sel['test'])}, single {len(sel['single'])}, extra {len(sel['extra'])} clips"
            + (f"; {len(rules.no_training)} test speaker(s) of other languages kept out of training"
               if rules.no_training else ""))


run_script(main, log)
