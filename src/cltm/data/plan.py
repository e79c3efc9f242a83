"""A language's selection: its test speakers, then every task's test set, training subsets and trials
under the corpus-wide speaker rules. Metadata only; deterministic from `data.seed`."""

from __future__ import annotations

import pandas as pd

from cltm.config import draw_seeds, task_languages, task_resample
from cltm.data.draws import RESAMPLE, draw_seed, training_clips
from cltm.data.selection import (
    SelectionError,
    make_trials,
    select_classes,
    select_speaker,
    split_pools,
    split_test_speakers,
    test_clips,
)
from cltm.data.speakers import SpeakerRules, language_rules, speaker_checks, speaker_labels
from cltm.tasks import make_task
from cltm.tasks.classification import GENDER_CLASSES


def select_task(task, manifest: pd.DataFrame, train_pool: pd.DataFrame, test_spk: list, test: list,
                rules: SpeakerRules, seed: int, draws=()) -> tuple[list, dict]:
    """(the task's test clips, {single, extra[, trials][, mixed_label_speakers][, draws]}) of one language.
    `draws` (run seeds, `data.resample: per_seed`): each seed's own training subsets under `draws`, drawn
    from the same pool by the same rules with that seed's key (`draw_seed`); the test set and the trials
    are the data seed's, shared by every draw."""
    if task.kind == "speaker_verification":
        test, subsets = test, select_verification(task, manifest, train_pool, test_spk, test, rules, seed)
        redraw = lambda key: select_verification(task, manifest, train_pool, test_spk, test, rules, key,  # noqa: E731
                                                 trials=False)
    else:
        test, subsets = select_classification(task, manifest, train_pool, test_spk, test, rules, seed)
        redraw = lambda key: select_classification(task, manifest, train_pool, test_spk, test, rules, key)[1]  # noqa: E731
    if draws:
        subsets["draws"] = {str(s): {k: v for k, v in redraw(draw_seed(seed, s)).items() if k in ("single", "extra")}
                            for s in draws}
    return test, subsets


def select_verification(task, manifest, train_pool, test_spk, test, rules, seed, trials: bool = True) -> dict:
    """N utterances from enough speakers, N more from others, and trials among the test speakers."""
    cfg = task.cfg
    subsets = select_speaker(train_pool, test_spk, n_utterances=cfg["n_utterances"],
                             max_utterances_per_speaker=cfg["max_utterances_per_speaker"],
                             min_speaker_fraction=cfg["min_speaker_fraction"], seed=seed,
                             exclude=rules.no_training, task=task.name)
    if trials:
        rows = manifest[manifest["utt_id"].isin(test)]
        subsets["trials"] = make_trials(rows, max_positives_per_speaker=cfg["max_positives_per_speaker"],
                                        seed=seed).values.tolist()
    return subsets


def select_classification(task, manifest, train_pool, test_spk, test, rules, seed) -> tuple[list, dict]:
    """N clips per class, N more from other speakers, and the test clips that carry a class."""
    lang = manifest["language"].iloc[0]
    mixed = task.excluded(rules)
    subsets = select_classes(train_pool, test_spk, task.labelled(train_pool), task.classes, task=task.name,
                             n_per_class=task.n_per_class, max_clips_per_speaker=task.max_clips_per_speaker,
                             seed=seed, exclude=rules.no_training | mixed, per_speaker=task.per_speaker,
                             keys=(lang, task.name), hint=lambda: task.unrecognised(manifest))
    if task.is_gender and not task.label_map and task.classes == GENDER_CLASSES:
        return test, subsets  # test speakers are picked by gender: every test clip of theirs is labelled
    rows = manifest[manifest["utt_id"].isin(test)]
    classes = task.labelled(rows)
    keep = rows[(classes != "") & ~rows["speaker"].isin(mixed)]
    have = set(classes[keep.index])
    missing = [c for c in task.classes if c not in have]
    if missing:
        raise SelectionError(
            f"language '{lang}', task {task.name}: the test set has no clip of class(es) "
            f"{', '.join(missing)} (the test speakers, {len(test_spk)}, are picked balanced by gender, the "
            f"same for every task; {len(keep)} of their {len(rows)} clips carry a class of "
            f"'{task.label_column}'); raise data.test.speakers_per_gender" + task.unrecognised(manifest))
    if task.per_speaker and not task.is_gender:
        subsets["mixed_label_speakers"] = sorted(mixed & set(manifest["speaker"]))
    return sorted(keep["utt_id"]), subsets


def language_test_speakers(config: dict, manifest: pd.DataFrame, rules: SpeakerRules | None = None) -> list[str]:
    """The test speakers `select_language` picks for this language (they depend on no other language)."""
    data, rules = config["data"], rules or SpeakerRules()
    test_pool, _ = split_pools(manifest, data.get("split", "own"))
    return split_test_speakers(test_pool, speakers_per_gender=data["test"]["speakers_per_gender"],
                               min_clips=data["test"]["min_clips_per_speaker"], seed=data["seed"],
                               exclude=rules.no_test | rules.no_gender)


def select_language(config: dict, manifest: pd.DataFrame, lang: str, rules: SpeakerRules | None = None) -> dict[str, dict]:
    """All selections of one language, per task that uses it: {task: selection}.

    `rules` carry what the rest of the corpus imposes (`speaker_rules`); without them the language is
    selected as if no other language existed. When the rules change anything, each selection records
    it under `speaker_checks` (left out otherwise, so such selections are as they always were).
    """
    data = config["data"]
    seed = data["seed"]
    rules = rules or SpeakerRules()
    test_pool, train_pool = split_pools(manifest, data.get("split", "own"))
    test_spk = language_test_speakers(config, manifest, rules)
    test = test_clips(test_pool, test_spk, max_per_speaker=data["test"]["max_clips_per_speaker"], seed=seed)
    checks = speaker_checks(manifest, train_pool, test_spk, rules)
    resample = data.get("resample", "none")
    if resample not in RESAMPLE:
        raise SelectionError(f"config key 'data.resample' must be one of {', '.join(RESAMPLE)}, not '{resample}'")
    out = {}
    for task, cfg in config["tasks"].items():
        if lang not in task_languages(config, task) or cfg.get("subsets_from"):  # a twin reuses another's
            continue
        task_mode = task_resample(config, task)
        if task_mode not in RESAMPLE:
            raise SelectionError(f"config key 'tasks.{task}.resample' must be one of {', '.join(RESAMPLE)}, "
                                 f"not '{task_mode}'")
        draws = draw_seeds(config, task) if task_mode == "per_seed" else []
        task_test, subsets = select_task(make_task(task, cfg), manifest, train_pool, test_spk, test, rules, seed,
                                         draws)
        sel = {"task": task, "language": lang, "data_seed": seed, "test_speakers": test_spk, "test": task_test,
               **subsets}
        if checks:
            sel["speaker_checks"] = checks
        out[task] = sel
    return out


def speaker_rules(config: dict, manifests: dict[str, pd.DataFrame]) -> dict[str, SpeakerRules]:
    """The corpus-wide speaker rules of every language at once (the workflow computes the same per
    language, from each language's `speaker_labels` and test speakers: workflow/rules/data.smk)."""
    labels = {lang: speaker_labels(m) for lang, m in manifests.items()}
    tests = {}
    for lang, m in manifests.items():
        try:
            tests[lang] = language_test_speakers(config, m, language_rules(config, lang, labels))
        except SelectionError:  # reported by select_all, with every other short language
            tests[lang] = []
    return {lang: language_rules(config, lang, labels, tests) for lang in manifests}


def selected_clips(selections: dict[str, dict]) -> set[str]:
    """Every clip a language's selections use (test, single, extra, and every seed's draw), over all tasks."""
    return {u for sel in selections.values() for u in set(sel["test"]) | training_clips(sel)}


def select_all(config: dict, manifests: dict[str, pd.DataFrame]) -> dict[str, dict[str, dict]]:
    """Selections for every language; every language that falls short is reported at once."""
    selections, problems = {}, []
    rules = speaker_rules(config, manifests)
    for lang, manifest in manifests.items():
        try:
            selections[lang] = select_language(config, manifest, lang, rules[lang])
        except SelectionError as err:
            problems.append(str(err))
    if problems:
        raise SelectionError("Not every language can supply what the config asks; no training was started:\n  - "
                             + "\n  - ".join(problems))
    return selections
