"""Selection on metadata, before any audio is decoded: test split, nested training subsets, trials.

Per language: a speaker-disjoint, gender-balanced test set; training subsets nested so that only
the added data differs between conditions (single = N, dual = single + extra, bilingual = single of
the target + single of the donor); trials from the test speakers. Deterministic from the data seed.
"""

from __future__ import annotations

import hashlib
import itertools
import zlib
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from cltm.config import min_speakers, task_languages
from cltm.errors import CltmError
from cltm.tasks import STANDARD_COLUMNS, task_kind, tasks_of

GENDERS = ("male", "female")

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


class SelectionError(CltmError):
    """A language cannot supply what the config asks; the message names language, need and counts."""


def rng_for(seed: int, *keys: str) -> np.random.Generator:
    """A generator that depends on the seed and on stable hashes of `keys` (language, purpose)."""
    return np.random.default_rng([seed, *(zlib.crc32(k.encode()) for k in keys)])


def keyed_order(values, seed: int, *keys: str) -> list:
    """`values` in a pseudo-random order fixed by (seed, keys, value) alone.

    Each value's rank depends on nothing but itself, so removing one value (a bad clip found when
    its audio is prepared) leaves the order of all others unchanged: a re-selection then takes the
    next clip of the same speaker, and the rest of the selection stays as it was.
    """
    prefix = "|".join([str(seed), *keys]) + "|"

    def rank(v):
        return hashlib.blake2b((prefix + str(v)).encode(), digest_size=8).digest()

    return sorted(set(values), key=lambda v: (rank(v), str(v)))


def unrecognised_genders(manifest: pd.DataFrame) -> str:
    """For an error message: the raw gender labels that mapped to neither male nor female (and do not say
    so on purpose, like Common Voice's `other`), and how to map them; "" when there are none."""
    from cltm.corpora import NON_BINARY_LABELS

    if "gender_raw" not in manifest:
        return ""
    raw = manifest.loc[~manifest["gender"].isin(GENDERS), "gender_raw"].fillna("").astype(str).str.strip()
    counts = raw[(raw != "") & ~raw.str.lower().isin(NON_BINARY_LABELS)].value_counts()
    if counts.empty:
        return ""
    labels = ", ".join(f"'{label}' ({n} clips)" for label, n in counts.head(10).items())
    example = ", ".join(f"{label}: male|female" for label in counts.index[:2])
    return (f". The gender label(s) {labels} were not recognised (known: male, female, m, f, male_masculine, "
            "female_feminine), so those clips count as unlabelled; map them with the config key "
            f"corpus.manifest.gender_map, e.g. `corpus: {{manifest: {{gender_map: {{{example}}}}}}}`")


def split_test_speakers(manifest: pd.DataFrame, *, speakers_per_gender: int, min_clips: int, seed: int,
                        exclude=frozenset()) -> list[str]:
    """Pick `speakers_per_gender` test speakers of each gender among speakers with >= min_clips clips
    (never one of `exclude`: speakers with conflicting gender labels, see `SpeakerRules`)."""
    lang = manifest["language"].iloc[0]
    labelled = manifest[manifest["gender"].isin(GENDERS) & ~manifest["speaker"].isin(exclude)]
    clips = labelled.groupby(["speaker", "gender"]).size().reset_index(name="n")
    chosen = []
    for gender in GENDERS:
        pool = clips[(clips["gender"] == gender) & (clips["n"] >= min_clips)]["speaker"]
        if len(pool) < speakers_per_gender:
            raise SelectionError(
                f"language '{lang}': the test set needs {speakers_per_gender} {gender} speakers with at least "
                f"{min_clips} clips each, but only {len(pool)} exist (of {int((clips['gender'] == gender).sum())} "
                f"{gender} speakers{_left_out(manifest, exclude)}); lower data.test.speakers_per_gender or "
                "data.test.min_clips_per_speaker" + unrecognised_genders(manifest)
            )
        chosen += keyed_order(pool, seed, lang, "test-speakers")[:speakers_per_gender]
    return sorted(chosen)


def _left_out(manifest: pd.DataFrame, exclude) -> str:
    n = manifest.loc[manifest["speaker"].isin(exclude), "speaker"].nunique() if len(exclude) else 0
    return (f", not counting {n} speaker(s) that may not be test speakers: conflicting gender labels, or, when "
            "bad clips force a re-selection, shared with another language" if n else "")


def test_clips(manifest: pd.DataFrame, speakers: list[str], *, max_per_speaker: int, seed: int) -> list[str]:
    lang = manifest["language"].iloc[0]
    out = []
    for spk in speakers:
        out += keyed_order(manifest.loc[manifest["speaker"] == spk, "utt_id"], seed, lang, "test-clips")[:max_per_speaker]
    return sorted(out)


def _blocks(pool: pd.DataFrame, *, n: int, per_speaker: int, n_blocks: int, seed: int,
            keys: tuple[str, ...], avoid: list[set] | None = None) -> tuple[list[list[str]], list[set]]:
    """Fill `n_blocks` blocks of n clips by walking speakers in keyed order, at most `per_speaker` clips each.

    A speaker belongs to one block only, so `single` and its `extra` never share a voice; `avoid[b]`:
    speakers block b may not take (those another class already put in another block).
    """
    blocks, speakers = [[] for _ in range(n_blocks)], [set() for _ in range(n_blocks)]
    clips_of = pool.groupby("speaker")["utt_id"].apply(list).to_dict()
    b = 0
    for spk in keyed_order(clips_of, seed, *keys, "speakers"):
        if b == n_blocks:
            break
        if avoid is not None and spk in avoid[b]:
            continue
        take = min(per_speaker, n - len(blocks[b]))
        blocks[b] += keyed_order(clips_of[spk], seed, *keys, "clips")[:take]
        speakers[b].add(spk)
        if len(blocks[b]) == n:
            b += 1
    return blocks, speakers


def select_gender(manifest, test_speakers, *, n_per_class: int, max_clips_per_speaker: int, seed: int,
                  exclude=frozenset()) -> dict:
    """single = N clips per gender; extra = N more per gender from other speakers (dual = single + extra).
    Speakers in `exclude` (test speakers of other languages, conflicting gender labels) are never used."""
    lang = manifest["language"].iloc[0]
    labels = manifest["gender"].where(manifest["gender"].isin(GENDERS), "")
    return select_classes(manifest, test_speakers, labels, GENDERS, task="gender", n_per_class=n_per_class,
                          max_clips_per_speaker=max_clips_per_speaker, seed=seed, exclude=exclude,
                          keys=(lang, "gender"), hint=lambda: unrecognised_genders(manifest))


def select_classes(manifest, test_speakers, labels: pd.Series, classes, *, task: str, n_per_class: int,
                   max_clips_per_speaker: int, seed: int, exclude=frozenset(), per_speaker: bool = True,
                   keys: tuple[str, ...] = (), hint=lambda: "") -> dict:
    """single = N clips per class; extra = N more per class from other speakers (dual = single + extra).

    `labels`: each manifest row's class ("" = none). Speakers in `exclude` (test speakers of other languages,
    mixed-label speakers) are never used. With per-utterance labels (`per_speaker` false) a speaker has clips
    of several classes: one that a class put in `single` is never taken into `extra` by another, and back.
    """
    lang = manifest["language"].iloc[0]
    keep = ~manifest["speaker"].isin(set(test_speakers) | set(exclude))
    train, labels = manifest[keep], labels[keep]
    single, extra = [], []
    used = None if per_speaker else [set(), set()]
    for cls in classes:
        pool = train[labels == cls]
        (s, e), spk = _blocks(pool, n=n_per_class, per_speaker=max_clips_per_speaker, n_blocks=2, seed=seed,
                              keys=(*keys, cls), avoid=None if used is None else [used[1], used[0]])
        if len(e) < n_per_class:
            usable = int(pool.groupby("speaker").size().clip(upper=max_clips_per_speaker).sum())
            raise SelectionError(
                f"language '{lang}', task {task}: single + dual need 2 x {n_per_class} {cls} training clips "
                f"(at most {max_clips_per_speaker} per speaker, speakers not in any test set), but only {usable} are "
                f"usable from {pool['speaker'].nunique()} {cls} speakers ({len(pool)} clips); lower "
                f"tasks.{task}.n_per_class or raise tasks.{task}.max_clips_per_speaker" + hint()
            )
        if used is not None:
            used[0] |= spk[0]
            used[1] |= spk[1]
        single += s
        extra += e
    return {"single": sorted(single), "extra": sorted(extra)}


def select_speaker(manifest, test_speakers, *, n_utterances: int, max_utterances_per_speaker: int,
                   min_speaker_fraction: float, seed: int, exclude=frozenset(), task: str = "speaker") -> dict:
    """single = N utterances from >= ceil(fraction * N) speakers; extra = N more from other speakers.
    Speakers in `exclude` (test speakers of other languages) are never used."""
    lang = manifest["language"].iloc[0]
    pool = manifest[~manifest["speaker"].isin(set(test_speakers) | set(exclude))]
    (s, e), (s_spk, e_spk) = _blocks(pool, n=n_utterances, per_speaker=max_utterances_per_speaker, n_blocks=2,
                                     seed=seed, keys=(lang, "speaker"))
    need_spk = min_speakers(n_utterances, min_speaker_fraction)
    if len(e) < n_utterances or len(s_spk) < need_spk or len(e_spk) < need_spk:
        usable = int(pool.groupby("speaker").size().clip(upper=max_utterances_per_speaker).sum())
        raise SelectionError(
            f"language '{lang}', task {task}: single + dual need 2 x {n_utterances} training utterances, each "
            f"subset from at least {need_spk} speakers (at most {max_utterances_per_speaker} per speaker), but only "
            f"{usable} are usable from {pool['speaker'].nunique()} speakers outside every test set; lower "
            f"tasks.{task}.n_utterances or raise tasks.{task}.max_utterances_per_speaker"
        )
    return {"single": sorted(s), "extra": sorted(e)}


def make_trials(test: pd.DataFrame, *, max_positives_per_speaker: int, seed: int) -> pd.DataFrame:
    """Positives: within-speaker pairs (capped per speaker). Negatives: different speakers of the same
    gender, as many as positives. Columns enroll, test, label (1 = same speaker)."""
    lang = test["language"].iloc[0]
    rng = rng_for(seed, lang, "trials")
    test = test.sort_values("utt_id")
    positives = []
    for _, clips in test.groupby("speaker", sort=True):
        pairs = list(itertools.combinations(clips["utt_id"].tolist(), 2))
        keep = rng.permutation(len(pairs))[:max_positives_per_speaker]
        positives += [pairs[i] for i in sorted(keep)]
    # all same-gender cross-speaker pairs, enumerated once (test sets are small by design)
    negatives_pool = []
    for _, clips in test.groupby("gender", sort=True):
        rows = list(zip(clips["utt_id"], clips["speaker"]))
        negatives_pool += [(a, b) for (a, sa), (b, sb) in itertools.combinations(rows, 2) if sa != sb]
    if len(negatives_pool) < len(positives):
        raise SelectionError(
            f"language '{lang}', task speaker: {len(positives)} positive trials need as many same-gender "
            f"negative pairs, but the test set only has {len(negatives_pool)}; raise data.test.speakers_per_gender"
        )
    pick = np.sort(rng.permutation(len(negatives_pool))[: len(positives)])
    negatives = [negatives_pool[i] for i in pick]
    rows = [(a, b, 1) for a, b in positives] + [(a, b, 0) for a, b in negatives]
    return pd.DataFrame(rows, columns=["enroll", "test", "label"])


OFFICIAL_TRAIN_SPLITS = ("train", "dev")


def split_pools(manifest: pd.DataFrame, split: str = "own") -> tuple[pd.DataFrame, pd.DataFrame]:
    """(test pool, training pool) of one language.

    `own`: the tool draws its own speaker-disjoint test set from every clip of the language.
    `official`: the corpus's own split decides: test speakers and clips come from split `test`,
    training clips from `train` and `dev` (Common Voice's train/dev/test.tsv are speaker-disjoint);
    clips in no split are not used.
    """
    if split == "own":
        return manifest, manifest
    if split != "official":
        raise SelectionError(f"config key 'data.split' must be 'own' or 'official', not '{split}'")
    lang = manifest["language"].iloc[0]
    test = manifest[manifest["split"] == "test"]
    train = manifest[manifest["split"].isin(OFFICIAL_TRAIN_SPLITS)]
    if test.empty or train.empty:
        counts = manifest["split"].replace("", "(none)").value_counts().to_dict()
        raise SelectionError(
            f"language '{lang}': data.split is 'official' but the corpus has {len(test)} clips in split 'test' and "
            f"{len(train)} in 'train'/'dev' (splits found: {counts}). For Common Voice the release folder needs "
            "train.tsv, dev.tsv and test.tsv; for a manifest, fill its 'split' column; or set data.split: own"
        )
    return test, train


def language_test_speakers(config: dict, manifest: pd.DataFrame, rules: SpeakerRules | None = None) -> list[str]:
    """The test speakers `select_language` picks for this language (they depend on no other language)."""
    data, rules = config["data"], rules or SpeakerRules()
    test_pool, _ = split_pools(manifest, data.get("split", "own"))
    return split_test_speakers(test_pool, speakers_per_gender=data["test"]["speakers_per_gender"],
                               min_clips=data["test"]["min_clips_per_speaker"], seed=data["seed"],
                               exclude=rules.no_test | rules.no_gender)


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
    out = {}
    for task, cfg in config["tasks"].items():
        if lang not in task_languages(config, task) or cfg.get("subsets_from"):  # a twin reuses another's
            continue
        task_test, subsets = task_kind(task, cfg).select(manifest, train_pool, test_spk, test, rules, seed)
        sel = {"task": task, "language": lang, "data_seed": seed, "test_speakers": test_spk, "test": task_test,
               **subsets}
        if checks:
            sel["speaker_checks"] = checks
        out[task] = sel
    return out


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
    return [t for t in tasks_of(config).values()
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
    """Every clip a language's selections use (test, single, extra), over all tasks."""
    return {u for sel in selections.values() for u in sel["test"] + sel["single"] + sel["extra"]}


def selection_config(config: dict, lang: str | None = None) -> dict:
    """The part of the config that selection reads: training hyper-parameters left out, so editing them
    does not redo selection or audio preparation. With `lang`, only what that language's selection
    reads (adding another language to the matrix then leaves its audio preparation alone). A task's
    `mode` and `probe` head settings are training settings too."""
    tasks = {t: {k: v for k, v in c.items() if k not in ("training", "mode", "probe")}
             for t, c in config["tasks"].items() if not c.get("subsets_from")}  # a twin reuses another's
    if lang is None:
        return {"languages": list(config["languages"]), "data": config["data"], "tasks": tasks}
    tasks = {t: {k: v for k, v in c.items() if k != "languages"} for t, c in tasks.items()
             if lang in task_languages(config, t)}
    return {"languages": [lang], "data": config["data"], "tasks": tasks}


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


def data_summary(manifests: dict[str, pd.DataFrame], selections: dict[str, dict[str, dict]]) -> pd.DataFrame:
    """Per language: speakers and clips per gender, hours, and the selected sizes per task."""
    rows = []
    for lang, m in manifests.items():
        row = {"language": lang, "speakers": m["speaker"].nunique(), "clips": len(m),
               "hours": round(float(m["duration"].sum(skipna=True)) / 3600, 3)}
        for g in GENDERS + ("",):
            name = g or "unlabelled"
            sub = m[m["gender"] == g]
            row[f"speakers_{name}"] = sub["speaker"].nunique()
            row[f"clips_{name}"] = len(sub)
        for task, sel in selections.get(lang, {}).items():
            row[f"{task}_test_clips"] = len(sel["test"])
            row[f"{task}_single_clips"] = len(sel["single"])
            row[f"{task}_extra_clips"] = len(sel["extra"])
            if "trials" in sel:
                row[f"{task}_trials"] = len(sel["trials"])
        row.update(checks_columns(selections.get(lang, {})))
        rows.append(row)
    return pd.DataFrame(rows)


def checks_columns(selections: dict[str, dict]) -> dict:
    """Per language: speakers shared with other languages, test speakers of other languages excluded from
    training (and their clips), speakers with conflicting gender labels (and their training clips)."""
    checks = next((sel.get("speaker_checks") or {} for sel in selections.values()), {})
    return {"shared_speakers": len(checks.get("shared_speakers", ())),
            "excluded_speakers": len(checks.get("excluded_speakers", ())),
            "excluded_clips": checks.get("excluded_clips", 0),
            "mixed_gender_speakers": len(checks.get("mixed_gender_speakers", ())),
            "mixed_gender_clips": checks.get("mixed_gender_clips", 0)}


def nested_subset(selection: dict, index: pd.DataFrame, task, size: int, seed: int) -> dict:
    """A learning-curve rung: `single` and `extra` cut to `size` (per class for a classification task,
    utterances for speaker verification), nested in the ordinary subsets, so single and extra stay
    speaker-disjoint and every rung is a prefix of the next. Clips are taken speaker by speaker in a
    keyed order (all of a speaker's clips before the next speaker's), as the ordinary selection fills
    its blocks. `task` is a task object (or a task name with default settings); `index` (the prepared
    audio's TSV) gives each clip's speaker and label columns."""
    if isinstance(task, str):
        task = task_kind(task, {})
    per_class = task.kind == "classification"
    lang = selection["language"]
    meta = index.set_index("utt_id") if "utt_id" in index.columns else index
    out = dict(selection)
    for part in ("single", "extra"):
        clips = pd.DataFrame({"utt_id": selection[part]})
        clips["speaker"] = meta.loc[clips["utt_id"], "speaker"].astype(str).to_numpy()
        if per_class:
            clips["label"] = task.labelled(meta.loc[clips["utt_id"]]).to_numpy()
        groups = [clips[clips["label"] == c] for c in task.classes] if per_class else [clips]
        chosen = []
        for g in groups:
            if len(g) < size:
                raise SelectionError(
                    f"language '{lang}', task {task.name}: a learning-curve rung of {size} needs {size} clips"
                    f"{' per class' if per_class else ''} in '{part}', which has {len(g)}; the rungs "
                    "must not exceed N (analysis.learning_curve.factors at most 1)")
            by_speaker = g.groupby("speaker")["utt_id"].apply(list).to_dict()
            taken = []
            for spk in keyed_order(by_speaker, seed, lang, task.name, "learning-curve", part):
                taken += keyed_order(by_speaker[spk], seed, lang, task.name, "learning-curve", part, "clips")
                if len(taken) >= size:
                    break
            chosen += taken[:size]
        out[part] = sorted(chosen)
    out["learning_curve_size"] = int(size)
    return out
