"""Selection on metadata, before any audio is decoded: the pure steps (test speakers and clips, nested
training subsets, trials, learning-curve rungs), deterministic from the data seed.

Per language: a speaker-disjoint, gender-balanced test set; training subsets nested so that only the added
data differs between conditions (single = N, dual = single + extra, bilingual = single of the target +
single of the donor); trials from the test speakers. What a language's selection must know about the
rest of the corpus is `cltm.data.speakers`; the whole selection of a language is `cltm.data.plan`.
"""

from __future__ import annotations

import hashlib
import itertools
import math
import zlib

import numpy as np
import pandas as pd


from cltm.errors import CltmError
from cltm.paths import DUAL, SINGLE, donor_of
from cltm.tasks import make_task
from cltm.tasks.labels import GENDERS, unrecognised_genders


class SelectionError(CltmError):
    """A language cannot supply what the config asks; the message names language, need and counts."""


def min_speakers(n: int, fraction: float) -> int:
    """At least ceil(fraction * n) speakers, and never fewer than 2 (a classifier needs two classes)."""
    return max(2, math.ceil(fraction * n - 1e-9))


def usable_clips(pool: pd.DataFrame, cap: int) -> int:
    """Training clips a pool can give when each speaker contributes at most `cap` (what selection can take,
    what preflight reports and what a shortfall's message counts)."""
    return int(pool.groupby("speaker").size().clip(upper=cap).sum()) if len(pool) else 0


def training_items(target: str, condition: str, selections: dict[str, dict]) -> list[tuple[str, str]]:
    """(language, utt_id) pairs of a condition's training set: the target's `single`, plus its `extra`
    (dual) or the donor's `single` (donor-<j>)."""
    items = [(target, u) for u in selections[target]["single"]]
    donor = donor_of(condition)
    if condition == DUAL:
        items += [(target, u) for u in selections[target]["extra"]]
    elif donor is not None:
        if donor == target:
            raise ValueError(f"condition '{condition}' names the target itself; use 'dual'")
        items += [(donor, u) for u in selections[donor]["single"]]
    elif condition != SINGLE:
        raise ValueError(f"unknown condition '{condition}' (use single, dual or donor-<language>)")
    return items


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


def fill_blocks(pool: pd.DataFrame, *, n: int, per_speaker: int, n_blocks: int, seed: int,
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
        (s, e), spk = fill_blocks(pool, n=n_per_class, per_speaker=max_clips_per_speaker, n_blocks=2, seed=seed,
                              keys=(*keys, cls), avoid=None if used is None else [used[1], used[0]])
        if len(e) < n_per_class:
            usable = usable_clips(pool, max_clips_per_speaker)
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
    (s, e), (s_spk, e_spk) = fill_blocks(pool, n=n_utterances, per_speaker=max_utterances_per_speaker, n_blocks=2,
                                     seed=seed, keys=(lang, "speaker"))
    need_spk = min_speakers(n_utterances, min_speaker_fraction)
    if len(e) < n_utterances or len(s_spk) < need_spk or len(e_spk) < need_spk:
        usable = usable_clips(pool, max_utterances_per_speaker)
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


def nested_subset(selection: dict, index: pd.DataFrame, task, size: int, seed: int) -> dict:
    """A learning-curve rung: `single` and `extra` cut to `size` (per class for a classification task,
    utterances for speaker verification), nested in the ordinary subsets, so single and extra stay
    speaker-disjoint and every rung is a prefix of the next. Clips are taken speaker by speaker in a
    keyed order (all of a speaker's clips before the next speaker's), as the ordinary selection fills
    its blocks. `task` is a task object (or a task name with default settings); `index` (the prepared
    audio's TSV) gives each clip's speaker and label columns."""
    if isinstance(task, str):
        task = make_task(task, {})
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
