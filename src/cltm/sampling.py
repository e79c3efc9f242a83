"""Selection on metadata, before any audio is decoded: test split, nested training subsets, trials.

Per language: a speaker-disjoint, gender-balanced test set; training subsets nested so that only
the added data differs between conditions (single = N, dual = single + extra, bilingual = single of
the target + single of the donor); trials from the test speakers. Deterministic from the data seed.
"""

from __future__ import annotations

import hashlib
import itertools
import zlib

import numpy as np
import pandas as pd

from cltm.config import min_speakers, task_languages

GENDERS = ("male", "female")


class SelectionError(ValueError):
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


def split_test_speakers(manifest: pd.DataFrame, *, speakers_per_gender: int, min_clips: int, seed: int) -> list[str]:
    """Pick `speakers_per_gender` test speakers of each gender among speakers with >= min_clips clips."""
    lang = manifest["language"].iloc[0]
    labelled = manifest[manifest["gender"].isin(GENDERS)]
    clips = labelled.groupby(["speaker", "gender"]).size().reset_index(name="n")
    chosen = []
    for gender in GENDERS:
        pool = clips[(clips["gender"] == gender) & (clips["n"] >= min_clips)]["speaker"]
        if len(pool) < speakers_per_gender:
            raise SelectionError(
                f"language '{lang}': the test set needs {speakers_per_gender} {gender} speakers with at least "
                f"{min_clips} clips each, but only {len(pool)} exist (of {int((clips['gender'] == gender).sum())} "
                f"{gender} speakers); lower data.test.speakers_per_gender or data.test.min_clips_per_speaker"
            )
        chosen += keyed_order(pool, seed, lang, "test-speakers")[:speakers_per_gender]
    return sorted(chosen)


def test_clips(manifest: pd.DataFrame, speakers: list[str], *, max_per_speaker: int, seed: int) -> list[str]:
    lang = manifest["language"].iloc[0]
    out = []
    for spk in speakers:
        out += keyed_order(manifest.loc[manifest["speaker"] == spk, "utt_id"], seed, lang, "test-clips")[:max_per_speaker]
    return sorted(out)


def _blocks(pool: pd.DataFrame, *, n: int, per_speaker: int, n_blocks: int, seed: int,
            keys: tuple[str, ...]) -> tuple[list[list[str]], list[set]]:
    """Fill `n_blocks` blocks of n clips by walking speakers in keyed order, at most `per_speaker` clips each.

    A speaker belongs to one block only, so `single` and its `extra` never share a voice.
    """
    blocks, speakers = [[] for _ in range(n_blocks)], [set() for _ in range(n_blocks)]
    clips_of = pool.groupby("speaker")["utt_id"].apply(list).to_dict()
    b = 0
    for spk in keyed_order(clips_of, seed, *keys, "speakers"):
        if b == n_blocks:
            break
        take = min(per_speaker, n - len(blocks[b]))
        blocks[b] += keyed_order(clips_of[spk], seed, *keys, "clips")[:take]
        speakers[b].add(spk)
        if len(blocks[b]) == n:
            b += 1
    return blocks, speakers


def select_gender(manifest, test_speakers, *, n_per_class: int, max_clips_per_speaker: int, seed: int) -> dict:
    """single = N clips per gender; extra = N more per gender from other speakers (dual = single + extra)."""
    lang = manifest["language"].iloc[0]
    train = manifest[~manifest["speaker"].isin(test_speakers)]
    single, extra = [], []
    for gender in GENDERS:
        pool = train[train["gender"] == gender]
        (s, e), _ = _blocks(pool, n=n_per_class, per_speaker=max_clips_per_speaker, n_blocks=2, seed=seed,
                            keys=(lang, "gender", gender))
        if len(e) < n_per_class:
            usable = int(pool.groupby("speaker").size().clip(upper=max_clips_per_speaker).sum())
            raise SelectionError(
                f"language '{lang}', task gender: single + dual need 2 x {n_per_class} {gender} training clips "
                f"(at most {max_clips_per_speaker} per speaker, speakers not in the test set), but only {usable} are "
                f"usable from {pool['speaker'].nunique()} {gender} speakers ({len(pool)} clips); lower "
                "tasks.gender.n_per_class or raise tasks.gender.max_clips_per_speaker"
            )
        single += s
        extra += e
    return {"single": sorted(single), "extra": sorted(extra)}


def select_speaker(manifest, test_speakers, *, n_utterances: int, max_utterances_per_speaker: int,
                   min_speaker_fraction: float, seed: int) -> dict:
    """single = N utterances from >= ceil(fraction * N) speakers; extra = N more from other speakers."""
    lang = manifest["language"].iloc[0]
    pool = manifest[~manifest["speaker"].isin(test_speakers)]
    (s, e), (s_spk, e_spk) = _blocks(pool, n=n_utterances, per_speaker=max_utterances_per_speaker, n_blocks=2,
                                     seed=seed, keys=(lang, "speaker"))
    need_spk = min_speakers(n_utterances, min_speaker_fraction)
    if len(e) < n_utterances or len(s_spk) < need_spk or len(e_spk) < need_spk:
        usable = int(pool.groupby("speaker").size().clip(upper=max_utterances_per_speaker).sum())
        raise SelectionError(
            f"language '{lang}', task speaker: single + dual need 2 x {n_utterances} training utterances, each "
            f"subset from at least {need_spk} speakers (at most {max_utterances_per_speaker} per speaker), but only "
            f"{usable} are usable from {pool['speaker'].nunique()} speakers outside the test set; lower "
            "tasks.speaker.n_utterances or raise tasks.speaker.max_utterances_per_speaker"
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


def select_language(config: dict, manifest: pd.DataFrame, lang: str) -> dict[str, dict]:
    """All selections of one language, per task that uses it: {task: selection}."""
    data = config["data"]
    seed = data["seed"]
    test_pool, train_pool = split_pools(manifest, data.get("split", "own"))
    test_spk = split_test_speakers(
        test_pool, speakers_per_gender=data["test"]["speakers_per_gender"],
        min_clips=data["test"]["min_clips_per_speaker"], seed=seed,
    )
    test = test_clips(test_pool, test_spk, max_per_speaker=data["test"]["max_clips_per_speaker"], seed=seed)
    out = {}
    for task, cfg in config["tasks"].items():
        if lang not in task_languages(config, task):
            continue
        if task == "gender":
            subsets = select_gender(train_pool, test_spk, n_per_class=cfg["n_per_class"],
                                    max_clips_per_speaker=cfg["max_clips_per_speaker"], seed=seed)
        elif task == "speaker":
            subsets = select_speaker(train_pool, test_spk, n_utterances=cfg["n_utterances"],
                                     max_utterances_per_speaker=cfg["max_utterances_per_speaker"],
                                     min_speaker_fraction=cfg["min_speaker_fraction"], seed=seed)
        else:  # pragma: no cover - the schema admits only known tasks
            raise SelectionError(f"unknown task '{task}'")
        sel = {"task": task, "language": lang, "data_seed": seed, "test_speakers": test_spk, "test": test, **subsets}
        if task == "speaker":
            rows = manifest[manifest["utt_id"].isin(test)]
            trials = make_trials(rows, max_positives_per_speaker=cfg["max_positives_per_speaker"], seed=seed)
            sel["trials"] = trials.values.tolist()
        out[task] = sel
    return out


def selected_clips(selections: dict[str, dict]) -> set[str]:
    """Every clip a language's selections use (test, single, extra), over all tasks."""
    return {u for sel in selections.values() for u in sel["test"] + sel["single"] + sel["extra"]}


def selection_config(config: dict, lang: str | None = None) -> dict:
    """The part of the config that selection reads: training hyper-parameters left out, so editing them
    does not redo selection or audio preparation. With `lang`, only what that language's selection
    reads (adding another language to the matrix then leaves its audio preparation alone)."""
    tasks = {t: {k: v for k, v in c.items() if k != "training"} for t, c in config["tasks"].items()}
    if lang is None:
        return {"languages": list(config["languages"]), "data": config["data"], "tasks": tasks}
    tasks = {t: {k: v for k, v in c.items() if k != "languages"} for t, c in tasks.items()
             if lang in task_languages(config, t)}
    return {"languages": [lang], "data": config["data"], "tasks": tasks}


def select_all(config: dict, manifests: dict[str, pd.DataFrame]) -> dict[str, dict[str, dict]]:
    """Selections for every language; every language that falls short is reported at once."""
    selections, problems = {}, []
    for lang, manifest in manifests.items():
        try:
            selections[lang] = select_language(config, manifest, lang)
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
        rows.append(row)
    return pd.DataFrame(rows)


def nested_subset(selection: dict, index: pd.DataFrame, task: str, size: int, seed: int) -> dict:
    """A learning-curve rung: `single` and `extra` cut to `size` (per class for gender, utterances for
    speaker), nested in the ordinary subsets, so single and extra stay speaker-disjoint and every rung
    is a prefix of the next. Clips are taken speaker by speaker in a keyed order (all of a speaker's
    clips before the next speaker's), as the ordinary selection fills its blocks.
    `index` (the prepared audio's TSV) gives each clip's speaker and gender."""
    lang = selection["language"]
    meta = index.set_index("utt_id") if "utt_id" in index.columns else index
    out = dict(selection)
    for part in ("single", "extra"):
        clips = pd.DataFrame({"utt_id": selection[part]})
        clips["speaker"] = meta.loc[clips["utt_id"], "speaker"].astype(str).to_numpy()
        clips["gender"] = meta.loc[clips["utt_id"], "gender"].astype(str).to_numpy()
        groups = [clips[clips["gender"] == g] for g in GENDERS] if task == "gender" else [clips]
        chosen = []
        for g in groups:
            if len(g) < size:
                raise SelectionError(
                    f"language '{lang}', task {task}: a learning-curve rung of {size} needs {size} clips"
                    f"{' per class' if task == 'gender' else ''} in '{part}', which has {len(g)}; the rungs "
                    "must not exceed N (analysis.learning_curve.factors at most 1)")
            by_speaker = g.groupby("speaker")["utt_id"].apply(list).to_dict()
            taken = []
            for spk in keyed_order(by_speaker, seed, lang, task, "learning-curve", part):
                taken += keyed_order(by_speaker[spk], seed, lang, task, "learning-curve", part, "clips")
                if len(taken) >= size:
                    break
            chosen += taken[:size]
        out[part] = sorted(chosen)
    out["learning_curve_size"] = int(size)
    return out
