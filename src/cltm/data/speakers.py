"""Speakers across the corpus: the rules one language's selection must follow because of the others
(`SpeakerRules`: test voices of every language stay out of every training set, speakers with conflicting
labels stay out of labelled sets), what they did to a language, and the last check before a run trains
(`check_run_speakers`: no voice of the target's test set is training data of the run)."""

from __future__ import annotations

from dataclasses import dataclass, field

import pandas as pd

from cltm.data.selection import SelectionError, training_items
from cltm.errors import CltmError
from cltm.paths import SELECTION
from cltm.tasks import STANDARD_COLUMNS, configured_tasks
from cltm.tasks.labels import GENDERS

# data.speaker_ids: `corpus` (default) = a speaker id names one person across the whole corpus (Common
# Voice's client_id is per contributor, not per locale); `per_language` = ids are local to a language.
SPEAKER_IDS = ("corpus", "per_language")


@dataclass(frozen=True)
class SpeakerRules:
    """What one language's selection must know about its speakers from the rest of the corpus.

    no_training: speakers of this language that are test speakers of another language; they never enter
    a training subset. no_gender: speakers whose clips carry both gender labels; they are kept out of
    every gender-labelled set (test set and gender training). shared: speakers of this language that
    also speak in another language (reported; needed to re-select safely after bad clips). no_test:
    speakers that may not be picked as test speakers (mixed-gender ones; in a re-selection also every
    shared speaker not planned as a test speaker, since another language may already train on it).
    """

    no_training: frozenset = frozenset()
    no_gender: frozenset = frozenset()
    shared: frozenset = frozenset()
    no_test: frozenset = frozenset()
    # per classification task on another per-speaker label column (age): its mixed-label speakers, the
    # `no_gender` of that column; they are kept out of that task's sets only
    no_label: dict = field(default_factory=dict)

    @classmethod
    def from_selection(cls, sel: dict, selections: dict | None = None) -> "SpeakerRules":
        """The rules a planned selection was made under, for re-selecting it after bad clips are dropped:
        its test speakers may change, but never to a speaker that another language might train on.
        `selections` (all tasks' selections of the language) give each task's mixed-label speakers."""
        checks = sel.get("speaker_checks") or {}
        mixed = frozenset(checks.get("mixed_gender_speakers", ()))
        shared = frozenset(checks.get("shared_speakers", ()))
        no_label = {task: frozenset(s["mixed_label_speakers"]) for task, s in (selections or {}).items()
                    if "mixed_label_speakers" in s}
        return cls(no_training=frozenset(checks.get("excluded_speakers", ())), no_gender=mixed, shared=shared,
                   no_test=mixed | (shared - set(sel["test_speakers"])), no_label=no_label)


def speaker_checks(manifest: pd.DataFrame, train_pool: pd.DataFrame, test_spk, rules: SpeakerRules) -> dict:
    """What the corpus-wide speaker rules did to this language; empty when they did nothing."""
    own = set(manifest["speaker"])
    excluded = sorted((rules.no_training & own) - set(test_spk))
    mixed = sorted(rules.no_gender & own)
    shared = sorted(rules.shared & own)
    if not (excluded or mixed or shared):
        return {}
    return {"shared_speakers": shared, "excluded_speakers": excluded,
            "excluded_clips": int(train_pool["speaker"].isin(excluded).sum()),
            "mixed_gender_speakers": mixed,
            "mixed_gender_clips": int(train_pool["speaker"].isin(set(mixed) - set(test_spk)).sum())}


def speaker_labels(manifest: pd.DataFrame) -> pd.DataFrame:
    """One row per speaker of a language: `genders`, the gender labels its clips carry, comma-joined
    ('' if none). What the other languages' selections need to know of this one."""
    labelled = manifest[manifest["gender"].isin(GENDERS)]
    genders = labelled.groupby("speaker")["gender"].agg(lambda g: ",".join(sorted(set(g))))
    out = pd.DataFrame({"speaker": sorted(set(manifest["speaker"]))})
    out["genders"] = out["speaker"].map(genders).fillna("")
    # the extra label columns a task reads (age, ...): `labels_<column>`, the raw values, |-joined
    for col in [c for c in manifest.columns if c not in STANDARD_COLUMNS]:
        raw = manifest[col].fillna("").astype(str).str.strip()
        values = raw[raw != ""].groupby(manifest.loc[raw != "", "speaker"]).agg(lambda v: "|".join(sorted(set(v))))
        out[f"labels_{col}"] = out["speaker"].map(values).fillna("")
    return out


def _mixed(labels: pd.DataFrame) -> set:
    per = labels[labels["genders"] != ""].groupby("speaker")["genders"].agg(lambda g: set(",".join(g).split(",")))
    return set(per.index[per.map(len) > 1])


def _mixed_labels(labels: pd.DataFrame, task) -> set:
    """Speakers whose raw values of the task's label column give more than one of its classes."""
    col = f"labels_{task.label_column}"
    if col not in labels.columns:
        return set()
    rows = labels[labels[col].fillna("") != ""]
    raw = rows[col].str.split("|").explode()
    classes = task.class_of(raw)
    per = classes[classes != ""].groupby(rows.loc[classes[classes != ""].index, "speaker"]).agg(lambda c: len(set(c)))
    return set(per.index[per > 1])


def _label_tasks(config: dict) -> list:
    """The per-speaker classification tasks on a label column other than gender (their `no_label`)."""
    return [t for t in configured_tasks(config).values()
            if t.kind == "classification" and t.per_speaker and not t.is_gender]


def _speaker_ids(config: dict) -> str:
    mode = config["data"].get("speaker_ids", "corpus")
    if mode not in SPEAKER_IDS:
        raise SelectionError(f"config key 'data.speaker_ids' must be one of {', '.join(SPEAKER_IDS)}, not '{mode}'")
    return mode


def language_rules(config: dict, lang: str, labels: dict[str, pd.DataFrame],
                   tests: dict[str, list] | None = None) -> SpeakerRules:
    """The corpus-wide speaker rules of one language (see `SpeakerRules`), from every language's
    `speaker_labels` and, for the exclusion from training, the other languages' test speakers
    (`tests`; None while they are being picked, which needs only `no_gender`).

    With `data.speaker_ids: corpus` (the default) an id shared by two languages is one person: a
    speaker labelled male in one language and female in another has conflicting labels, and the test
    speakers of every language are kept out of every language's training subsets. Test speakers are
    picked per language first (independently of the others' test sets), so the exclusion never changes them.
    """
    own = labels[lang]
    if _speaker_ids(config) == "per_language":
        return SpeakerRules(no_gender=frozenset(_mixed(own)),
                            no_label={t.name: frozenset(_mixed_labels(own, t)) for t in _label_tasks(config)})
    mine = set(own["speaker"])
    others = [df for other, df in labels.items() if other != lang]
    elsewhere = set().union(*(set(df["speaker"]) for df in others)) if others else set()
    shared = mine & elsewhere
    seen = pd.concat([own] + [df[df["speaker"].isin(shared)] for df in others])
    mixed = _mixed(seen) & mine
    no_label = {t.name: frozenset(_mixed_labels(seen, t) & mine) for t in _label_tasks(config)}
    tested_elsewhere = set().union(*(set(t) for other, t in (tests or {}).items() if other != lang))
    return SpeakerRules(no_training=frozenset(tested_elsewhere & shared), no_gender=frozenset(mixed),
                        shared=frozenset(shared), no_label=no_label)


def checks_columns(selections: dict[str, dict]) -> dict:
    """Per language: speakers shared with other languages, test speakers of other languages excluded from
    training (and their clips), speakers with conflicting gender labels (and their training clips)."""
    checks = next((sel.get("speaker_checks") or {} for sel in selections.values()), {})
    return {"shared_speakers": len(checks.get("shared_speakers", ())),
            "excluded_speakers": len(checks.get("excluded_speakers", ())),
            "excluded_clips": checks.get("excluded_clips", 0),
            "mixed_gender_speakers": len(checks.get("mixed_gender_speakers", ())),
            "mixed_gender_clips": checks.get("mixed_gender_clips", 0)}


class LeakError(CltmError):
    """A run would train on a voice of its target's test set; the message names the selection to redo."""


def check_run_speakers(spec, selections: dict, stores: dict, speaker_ids: str = "corpus") -> None:
    """No speaker of the target's test set is training data of this run: checked on the very files the run
    reads, before it trains (a language selected before another was added could not know that one's test
    voices; the data report finds the same for the whole grid). With `data.speaker_ids: per_language`
    ids of two languages never name one person, so only the target's own training clips are compared."""
    tested = set(selections[spec.target]["test_speakers"])
    for lang, utt in training_items(spec.target, spec.condition, selections):
        if lang != spec.target and speaker_ids != "corpus":
            continue
        speaker = stores[lang].meta(utt)["speaker"]
        if speaker in tested:
            raise LeakError(
                f"{spec.name} would train on test speaker {speaker} of '{spec.target}' (clip {utt} of '{lang}'); "
                f"no training was started. Redo that selection with `snakemake {SELECTION.format(lang=lang)} -f "
                "--cores 1` plus your --configfile, then run your usual command (docs/data.md, \"Speakers\")")
