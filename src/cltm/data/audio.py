"""Audio: decoding and checking one clip, and a language's prepared clips (one int16 array plus an index).

A language's prepared audio is one int16 array (`<lang>.npy`, memory-mapped at training time) plus an
index (`<lang>.tsv`: utt_id, offset, n_samples, speaker, gender and the label columns tasks read), so no
training job ever decodes MP3. Preparing it (only the selected clips, bad ones replaced) is
`cltm.data.prepare`.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import soundfile as sf
import soxr

from cltm.errors import CltmError
from cltm.io import atomic_path, write_table
from cltm.tasks import STANDARD_COLUMNS


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


def change_speed(wave: np.ndarray, speed: float, sample_rate: int = 16000) -> np.ndarray:
    """The clip played `speed` times as fast (pitch with it, as resampling does; Kaldi's speed perturbation):
    resampled from sample_rate x speed to sample_rate, so it lasts 1/speed as long. Speed 1 is the clip."""
    if speed == 1.0:
        return wave
    return np.ascontiguousarray(soxr.resample(wave, sample_rate * speed, sample_rate, quality="HQ"), dtype=np.float32)


def trim_silence(wave: np.ndarray, top_db: float | None = 20.0, frame: int = 400, hop: int = 160) -> np.ndarray:
    """Cut leading and trailing frames whose energy is more than `top_db` below the loudest frame."""
    if top_db is None or wave.size <= frame:
        return wave
    n = 1 + (wave.size - frame) // hop
    frames = np.lib.stride_tricks.sliding_window_view(wave, frame)[::hop][:n]
    energy = 10 * np.log10(np.mean(frames.astype(np.float64) ** 2, axis=1) + 1e-12)
    loud = np.flatnonzero(energy >= energy.max() - top_db)
    return wave[loud[0] * hop: loud[-1] * hop + frame]
