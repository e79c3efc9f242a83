"""Audio preparation: only selected clips are decoded, once, to mono 16 kHz, stored for fast reading.

A language's prepared audio is one int16 array (`<lang>.npy`, memory-mapped at training time)
plus an index (`<lang>.tsv`: utt_id, offset, n_samples, speaker, gender), so no training job
ever decodes MP3.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import soundfile as sf
import soxr

from cltm.io import atomic_path, write_table


class AudioError(ValueError):
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


def prepare_language(manifest: pd.DataFrame, utt_ids, out_npy: str | Path, out_index: str | Path,
                     sample_rate: int = 16000, log=print) -> pd.DataFrame:
    """Decode the clips `utt_ids` of one language into one int16 array and its index."""
    wanted = sorted(set(utt_ids))
    rows = manifest.set_index("utt_id").loc[wanted]
    waves, index, offset = [], [], 0
    for i, (utt, row) in enumerate(rows.iterrows(), 1):
        wave = load_audio(row["path"], sample_rate)
        if wave.size == 0:
            raise AudioError(f"audio file {row['path']} (utterance {utt}) is empty")
        pcm = np.round(np.clip(wave, -1.0, 1.0) * 32767).astype(np.int16)
        waves.append(pcm)
        index.append({"utt_id": utt, "offset": offset, "n_samples": pcm.size,
                      "speaker": row["speaker"], "gender": row["gender"]})
        offset += pcm.size
        if i % 200 == 0 or i == len(rows):
            log(f"decoded {i}/{len(rows)} clips")
    with atomic_path(out_npy) as tmp:
        with open(tmp, "wb") as fh:
            np.save(fh, np.concatenate(waves) if waves else np.zeros(0, np.int16))
    index = pd.DataFrame(index)
    write_table(out_index, index, index=False)
    return index


class AudioStore:
    """Read access to a prepared language: `store[utt_id]` gives float32 samples."""

    def __init__(self, npy: str | Path, index: str | Path):
        self.samples = np.load(npy, mmap_mode="r")
        self.index = pd.read_csv(index, sep="\t", dtype={"utt_id": str, "speaker": str, "gender": str},
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
