"""Audio preparation: only selected clips are decoded, once, to mono 16 kHz, stored for fast reading.

Every clip is checked when it is first decoded (missing, empty, undecodable, truncated, too short,
silent); a bad clip is logged and replaced deterministically (`prepare_selection`).

A language's prepared audio is one int16 array (`<lang>.npy`, memory-mapped at training time)
plus an index (`<lang>.tsv`: utt_id, offset, n_samples, speaker, gender), so no training job
ever decodes MP3.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import soundfile as sf
import soxr

from cltm.corpora import CorpusError
from cltm.errors import CltmError
from cltm.io import atomic_path, write_table
from cltm.sampling import SelectionError, SpeakerRules, select_language, selected_clips


class AudioError(CltmError):
    """A clip that cannot be decoded; the message names the file."""


def load_audio(path: str | Path, sample_rate: int = 16000) -> np.ndarray:
    """Decode any soundfile-readable clip (WAV, FLAC, OGG, MP3) to mono float32 at `sample_rate`."""
    try:
        data, sr = sf.read(str(path), dtype="float32", always_2d=True)
    except Exception as err:  # soundfile raises LibsndfileError, RuntimeError or OSError by format
        raise AudioError(f"cannot decode audio file {path}: {err}") from err
    wave = data.mean(axis=1)
    if sr != sample_rate:
        wave = soxr.resample(wave, sr, sample_rate, quality="HQ")
    return np.ascontiguousarray(wave, dtype=np.float32)


# Why a clip is dropped; the data report counts drops per reason.
DROP_REASONS = ("missing", "empty", "undecodable", "truncated", "too_short", "silent")

DEFAULT_CHECKS = {"min_seconds": 1.0, "silence_dbfs": -50.0, "max_shortfall": 0.2}

# Beyond this many bad clips, and more than half of those checked, the corpus itself is wrong
# (wrong clips folder, unmounted disk): stop with one message instead of replacing clip after clip.
GIVE_UP_AFTER = 20


def check_clip(path: str | Path, sample_rate: int = 16000, *, listed_seconds: float = float("nan"),
               min_seconds: float = 1.0, silence_dbfs: float = -50.0,
               max_shortfall: float = 0.2) -> tuple[np.ndarray | None, str, str]:
    """Decode one clip and check it: (wave, "", "") if usable, else (None, reason, detail).

    Reasons: missing, empty (0 bytes or no samples), undecodable, truncated (decodes to less than
    (1 - max_shortfall) of the duration the corpus lists, or, when it lists none, of the duration the
    file's own header announces), too_short (under min_seconds), silent (peak below silence_dbfs).
    """
    path = Path(path)
    if not path.is_file():
        return None, "missing", "no such file"
    if path.stat().st_size == 0:
        return None, "empty", "0 bytes"
    try:
        info = sf.info(str(path))
        data, sr = sf.read(str(path), dtype="float32", always_2d=True)
    except Exception as err:  # soundfile raises LibsndfileError, RuntimeError or OSError by format
        return None, "undecodable", " ".join(str(err).split())
    if data.shape[0] == 0:
        return None, "empty", "decodes to 0 samples"
    seconds = data.shape[0] / sr
    expected = float(listed_seconds) if np.isfinite(listed_seconds) and listed_seconds > 0 else (
        info.frames / info.samplerate if info.frames > 0 else float("nan"))
    if np.isfinite(expected) and seconds < (1.0 - max_shortfall) * expected:
        return None, "truncated", f"decodes to {seconds:.2f} s of {expected:.2f} s"
    if seconds < min_seconds:
        return None, "too_short", f"{seconds:.2f} s < data.clip_checks.min_seconds {min_seconds:g} s"
    wave = data.mean(axis=1)
    peak = float(np.abs(wave).max())
    peak_db = 20 * np.log10(peak) if peak > 0 else float("-inf")
    if peak_db < silence_dbfs:
        return None, "silent", f"peak {peak_db:.1f} dBFS < data.clip_checks.silence_dbfs {silence_dbfs:g}"
    if sr != sample_rate:
        wave = soxr.resample(wave, sr, sample_rate, quality="HQ")
    return np.ascontiguousarray(wave, dtype=np.float32), "", ""


def to_pcm(wave: np.ndarray) -> np.ndarray:
    return np.round(np.clip(wave, -1.0, 1.0) * 32767).astype(np.int16)


def write_store(pcm: dict[str, np.ndarray], meta: pd.DataFrame, out_npy: str | Path, out_index: str | Path) -> pd.DataFrame:
    """One int16 array of the clips `pcm` (in utt_id order) and its index; `meta` is indexed by utt_id."""
    from cltm.tasks import STANDARD_COLUMNS

    # the label columns tasks read beyond gender (age, emotion): in the manifest only when a task needs them
    extra = [c for c in meta.columns if c not in STANDARD_COLUMNS]
    index, offset = [], 0
    for utt in sorted(pcm):
        index.append({"utt_id": utt, "offset": offset, "n_samples": pcm[utt].size,
                      "speaker": meta.at[utt, "speaker"], "gender": meta.at[utt, "gender"],
                      **{c: meta.at[utt, c] for c in extra}})
        offset += pcm[utt].size
    with atomic_path(out_npy) as tmp:
        with open(tmp, "wb") as fh:
            np.save(fh, np.concatenate([pcm[u] for u in sorted(pcm)]) if pcm else np.zeros(0, np.int16))
    index = pd.DataFrame(index, columns=["utt_id", "offset", "n_samples", "speaker", "gender", *extra])
    write_table(out_index, index, index=False)
    return index


def prepare_language(manifest: pd.DataFrame, utt_ids, out_npy: str | Path, out_index: str | Path,
                     sample_rate: int = 16000, log=print, checks: dict | None = None) -> pd.DataFrame:
    """Decode exactly the clips `utt_ids` into one int16 array and its index; a bad clip is an AudioError.

    The workflow uses `prepare_selection`, which replaces bad clips instead.
    """
    checks = {**DEFAULT_CHECKS, **(checks or {})}
    meta = manifest.set_index("utt_id")
    pcm = {}
    for i, utt in enumerate(sorted(set(utt_ids)), 1):
        wave, reason, detail = check_clip(meta.at[utt, "path"], sample_rate,
                                          listed_seconds=_listed(meta, utt), **checks)
        if wave is None:
            raise AudioError(f"audio file {meta.at[utt, 'path']} (utterance {utt}): {reason}, {detail}")
        pcm[utt] = to_pcm(wave)
        if i % 200 == 0:
            log(f"decoded {i} clips")
    return write_store(pcm, meta, out_npy, out_index)


def _listed(meta: pd.DataFrame, utt: str) -> float:
    value = meta.at[utt, "duration"] if "duration" in meta.columns else float("nan")
    try:
        return float(value)
    except (TypeError, ValueError):
        return float("nan")


@dataclass
class PreparedLanguage:
    """The outcome of `prepare_selection`: final selections, their audio, and every dropped clip."""

    selections: dict[str, dict]
    pcm: dict[str, np.ndarray]
    dropped: pd.DataFrame  # utt_id, path, speaker, gender, reason, detail (in the order found)
    checked: int  # clips decoded and checked, good or bad


def prepare_selection(config: dict, manifest: pd.DataFrame, lang: str, planned: dict[str, dict], *,
                      sample_rate: int = 16000, log=print) -> PreparedLanguage:
    """Decode the planned selection of one language; replace every bad clip deterministically.

    Each clip is decoded and checked when it is first needed. A bad clip is logged with its path and
    reason and removed from the language's pool, and the selection is made again on the remaining
    clips. Selection orders clips and speakers by a keyed hash (`sampling.keyed_order`), so the
    new selection takes the next clip of the same speaker (or, when a speaker runs short, the next
    speaker) and leaves the rest unchanged. It keeps every rule of the original one: sizes, gender
    balance, caps per speaker, speaker-disjoint test set, nested subsets, and the corpus-wide speaker
    rules the plan was made under (`SpeakerRules.from_selection`): test speakers of other languages stay
    out of training, mixed-gender speakers out of gender sets, and a new test speaker is never one that
    another language may train on. Newly selected clips are checked in turn, until the selection holds
    only good clips. A language that can no longer supply the config's sizes raises SelectionError with
    the drop counts.
    """
    checks = {**DEFAULT_CHECKS, **(config["data"].get("clip_checks") or {})}
    meta = manifest.set_index("utt_id")
    pcm, dropped, selections = {}, [], planned
    rules = SpeakerRules.from_selection(next(iter(planned.values())), planned) if planned else None
    bad: set[str] = set()
    while True:
        needed = sorted(selected_clips(selections) - pcm.keys())
        if not needed:
            break
        found_bad = False
        for utt in needed:
            wave, reason, detail = check_clip(meta.at[utt, "path"], sample_rate,
                                              listed_seconds=_listed(meta, utt), **checks)
            if wave is not None:
                pcm[utt] = to_pcm(wave)
                continue
            found_bad = True
            bad.add(utt)
            dropped.append({"utt_id": utt, "path": meta.at[utt, "path"], "speaker": meta.at[utt, "speaker"],
                            "gender": meta.at[utt, "gender"], "reason": reason, "detail": detail})
            log(f"{lang}: dropped {meta.at[utt, 'path']}: {reason} ({detail}); replacing it from the pool")
            checked = len(pcm) + len(bad)
            if len(bad) >= GIVE_UP_AFTER and len(bad) > checked / 2:
                raise CorpusError(
                    f"language '{lang}': {len(bad)} of the {checked} clips checked so far are bad "
                    f"({_counts(dropped)}; first: {dropped[0]['path']}: {dropped[0]['detail']}). The corpus "
                    "itself looks wrong: check that the clip paths exist and decode (corpus.common_voice.root "
                    "or the manifest's path column)"
                )
        log(f"{lang}: {len(pcm)} clips good, {len(bad)} dropped so far")
        if found_bad:
            try:
                selections = select_language(config, manifest[~manifest["utt_id"].isin(bad)], lang, rules)
            except SelectionError as err:
                raise SelectionError(
                    f"language '{lang}': after dropping {len(bad)} bad clip(s) ({_counts(dropped)}; each is "
                    f"logged with its path) it cannot supply what the config asks: {err}"
                ) from None
    final = selected_clips(selections)
    dropped = pd.DataFrame(dropped, columns=["utt_id", "path", "speaker", "gender", "reason", "detail"])
    return PreparedLanguage(selections, {u: pcm[u] for u in final}, dropped, len(pcm) + len(bad))


def _counts(dropped: list[dict]) -> str:
    counts = pd.Series([d["reason"] for d in dropped]).value_counts()
    return ", ".join(f"{n} {reason}" for reason, n in counts.items())


class AudioStore:
    """Read access to a prepared language: `store[utt_id]` gives float32 samples."""

    def __init__(self, npy: str | Path, index: str | Path):
        self.samples = np.load(npy, mmap_mode="r")
        header = pd.read_csv(index, sep="\t", nrows=0).columns
        self.index = pd.read_csv(index, sep="\t", dtype={c: str for c in header if c not in ("offset", "n_samples")},
                                 keep_default_na=False).set_index("utt_id")

    def __getitem__(self, utt_id: str) -> np.ndarray:
        row = self.index.loc[utt_id]
        start = int(row["offset"])
        return np.asarray(self.samples[start:start + int(row["n_samples"])], dtype=np.float32) / 32767.0

    def meta(self, utt_id: str) -> pd.Series:
        return self.index.loc[utt_id]


def trim_silence(wave: np.ndarray, top_db: float | None = 20.0, frame: int = 400, hop: int = 160) -> np.ndarray:
    """Cut leading and trailing frames whose energy is more than `top_db` below the loudest frame."""
    if top_db is None or wave.size <= frame:
        return wave
    n = 1 + (wave.size - frame) // hop
    frames = np.lib.stride_tricks.sliding_window_view(wave, frame)[::hop][:n]
    energy = 10 * np.log10(np.mean(frames.astype(np.float64) ** 2, axis=1) + 1e-12)
    loud = np.flatnonzero(energy >= energy.max() - top_db)
    return wave[loud[0] * hop: loud[-1] * hop + frame]
