"""Synthetic feature stores for probe mode: the shapes of real ones, for tests and benchmarks.

`synthetic_language` writes one language's store (`cltm.train.features` layout: float16 [rows, layers,
dim * len(stats)] + index) and its selections for a gender and a speaker task, with the subset structure
of `cltm.data.selection` (single, extra, test, test_speakers, trials from `make_trials`). Each clip's features
are Gaussian noise plus a gender direction and a speaker direction (in a subspace of rank `speaker_rank`
shared by all languages) whose strength varies over the layers
(gender peaks in middle layers, speaker identity in early ones), plus a language offset: separable, so a
probe learns them, and the learned layer weights have something to find.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from cltm.data.selection import make_trials
from cltm.io import atomic_path, write_table
from cltm.train.features import FeatureStore, trim_key


def _profile(layers: int, peak: float, width: float = 0.25) -> np.ndarray:
    pos = np.linspace(0, 1, layers)
    return np.exp(-((pos - peak) / width) ** 2).astype(np.float32)


def synthetic_language(lang: str, out_dir: str | Path, *, n_per_class: int = 6, n_utterances: int = 24,
                       utterances_per_speaker: int = 4, test_speakers_per_gender: int = 3,
                       test_clips_per_speaker: int = 4, max_positives_per_speaker: int = 200, layers: int = 5,
                       dim: int = 16, stats=("mean", "std"), trim_db: float | None = 20.0, signal: float = 1.0,
                       speaker_rank: int = 6, tta_speeds=(), seed: int = 0) -> tuple["FeatureStore", dict]:
    """(FeatureStore of `lang`, {"gender": subsets, "speaker": subsets}) written under `out_dir`.

    The store holds every clip untrimmed, each test clip trimmed at `trim_db` (if not None), and each test
    clip (trimmed at `trim_db`) at each speed of `tta_speeds` other than 1, as `feature_plan` asks of a
    speaker-verification task with those `trim_db` and `tta_speeds`."""
    rng = np.random.default_rng([seed, sum(map(ord, lang))])
    rows = []  # (utt_id, speaker, gender)

    def speakers(prefix: str, n_clips: int, per_speaker: int, genders=("male", "female")):
        out, k = [], 0
        while len(out) < n_clips:
            gender = genders[k % len(genders)]
            spk = f"{lang}-{prefix}{k}"
            out += [(f"{lang}_{prefix}{k}_{c:03d}", spk, gender) for c in range(min(per_speaker, n_clips - len(out)))]
            k += 1
        return out

    gender_single = speakers("gs", 2 * n_per_class, 1)
    gender_extra = speakers("ge", 2 * n_per_class, 1)
    sv_single = speakers("ss", n_utterances, utterances_per_speaker)
    sv_extra = speakers("se", n_utterances, utterances_per_speaker)
    test = [(f"{lang}_t{g}{s}_{c:03d}", f"{lang}-t{g}{s}", g) for g in ("male", "female")
            for s in range(test_speakers_per_gender) for c in range(test_clips_per_speaker)]
    rows = gender_single + gender_extra + sv_single + sv_extra + test
    meta = pd.DataFrame(rows, columns=["utt_id", "speaker", "gender"]).drop_duplicates("utt_id")

    width = dim * len(stats)
    gender_dir = rng.standard_normal(width).astype(np.float32)
    gender_dir /= np.linalg.norm(gender_dir) / np.sqrt(width)
    lang_offset = 0.5 * rng.standard_normal(width).astype(np.float32)
    g_prof, s_prof = _profile(layers, 0.5) * signal, _profile(layers, 0.2) * signal
    # speakers differ within a low-dimensional subspace shared by every language (as voices do), so that
    # what a speaker classifier learns on its training speakers carries over to unseen test speakers
    basis = np.random.default_rng([seed, 1]).standard_normal((speaker_rank, width)).astype(np.float32)
    spk_dirs = {s: 1.5 * rng.standard_normal(speaker_rank).astype(np.float32) @ basis / np.sqrt(speaker_rank)
                for s in sorted(meta["speaker"].unique())}

    jobs = [(u, None, 1.0) for u in meta["utt_id"]] + ([(u, trim_db, 1.0) for u, _, _ in test]
                                                       if trim_db is not None else [])
    jobs += [(u, trim_db, float(speed)) for speed in tta_speeds if float(speed) != 1.0 for u, _, _ in test]
    info = meta.set_index("utt_id")
    out_dir = Path(out_dir)
    with atomic_path(out_dir / f"{lang}.npy") as tmp:
        array = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.float16, shape=(len(jobs), layers, width))
        for start in range(0, len(jobs), 512):
            part = jobs[start:start + 512]
            x = rng.standard_normal((len(part), layers, width), dtype=np.float32) + lang_offset
            for i, (u, db, _) in enumerate(part):
                spk, gender = info.at[u, "speaker"], info.at[u, "gender"]
                x[i] += (1.0 if gender == "female" else -1.0) * g_prof[:, None] * gender_dir
                x[i] += s_prof[:, None] * spk_dirs[spk] * (0.8 if db is not None else 1.0)
            array[start:start + len(part)] = x
        array.flush()
        del array
    index = pd.DataFrame({"utt_id": [u for u, _, _ in jobs], "trim_db": [trim_key(d, sp) for _, d, sp in jobs],
                          "n_samples": rng.integers(32000, 160000, len(jobs)), "stats": "+".join(stats)})
    index = pd.concat([index, info.loc[index["utt_id"]].reset_index(drop=True)], axis=1)
    write_table(out_dir / f"{lang}.tsv", index, index=False)

    test_ids = [u for u, _, _ in test]
    test_speakers = sorted({s for _, s, _ in test})
    trial_rows = pd.DataFrame(test, columns=["utt_id", "speaker", "gender"]).assign(language=lang)
    trials = make_trials(trial_rows, max_positives_per_speaker=max_positives_per_speaker, seed=seed)
    base = {"language": lang, "test_speakers": test_speakers, "test": test_ids}
    selections = {
        "gender": {**base, "task": "gender", "single": [u for u, _, _ in gender_single],
                   "extra": [u for u, _, _ in gender_extra]},
        "speaker": {**base, "task": "speaker", "single": [u for u, _, _ in sv_single],
                    "extra": [u for u, _, _ in sv_extra], "trials": trials.values.tolist()},
    }
    return FeatureStore(out_dir / f"{lang}.npy", out_dir / f"{lang}.tsv"), selections
