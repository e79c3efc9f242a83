"""Benchmark: how well the demo's tiny encoder hears the planted cues, and how the planted label's learning
curve looks to a linear read-out of its frozen features. A diagnosis of the known answer's power
(docs/demo.md, "The planted task"), in 2-4 minutes on 2 cores, without Snakemake.

    .venv/bin/python benchmarks/plant_cues.py [--cue-db 16] [--speakers 24] [--clips 5] [--seed 7]

1. **Readability.** One language's voices (`--speakers` per gender, `--clips` each, with the plant's cues at
   `--cue-db`) through the frozen encoder (`cltm.train.features.encode_clips`: every layer, time mean and std),
   and a ridge read-out of each voice parameter (within gender) and of each cue, cross-validated by speaker
   (5 folds): the correlation of the predicted with the true value. A cue the encoder normalises away reads
   near 0.
2. **Learning curve.** For each planted language of config/config.yaml (its angle, its test split of
   `data.test.speakers_per_gender`), the ridge read-out's macro-F1 on the test voices when it learns the
   planted label from 1, 2, 3, 6 and all of its training voices per class (2 clips each, mean of 10 draws).
   The CLTM's denominator is the gain from N to 2N voices (the task's `n_per_class` / `max_clips_per_speaker`);
   where the curve is already flat there, the denominator is small and noisy, and rows are flagged.

A linear read-out of frozen features is probe mode's kind of model, not fine-tuning; the figures say what the
features hold, not what a run reaches. SYNTHETIC voices with a planted effect.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

import numpy as np
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

import soxr  # noqa: E402

from machine import machine  # noqa: E402 - benchmarks/machine.py

from cltm.demo.plant import PlantSpec  # noqa: E402
from cltm.demo.synth import _F0_HZ, _TRACT, SAMPLE_RATE, load_sentences, make_speakers, synthesize  # noqa: E402
from cltm.model.encoder import load_encoder  # noqa: E402
from cltm.train.features import encode_clips  # noqa: E402

ENCODER = ROOT / "models" / "tiny-hubert-synth"


def voices(lang: str, n_per_gender: int, clips: int, seed: int, cue_db: float, encoder):
    """Features [clips, layers * dim * 2] of `lang`'s voices and a row of parameters per clip."""
    speakers = make_speakers(lang, n_per_gender, seed, cue_db)
    sentences = load_sentences(lang)
    rng = np.random.default_rng([seed, 99])
    waves, rows = [], []
    for spk in speakers:
        v = spk.voice
        lo, hi = _F0_HZ[v.gender]
        tl, th = _TRACT[v.gender]
        for _ in range(clips):
            wave = synthesize(sentences[rng.integers(len(sentences))], v.jittered(rng), rng=rng)
            waves.append(soxr.resample(wave, SAMPLE_RATE, 16000).astype(np.float32))
            rows.append({"speaker": spk.index, "male": float(v.gender == "male"), "z1": v.cues[0], "z2": v.cues[1],
                         "f0": (math.log(v.f0_hz) - math.log(lo)) / (math.log(hi) - math.log(lo)),
                         "rate": v.rate, "pitch_range": v.pitch_range, "tract": (v.tract_factor - tl) / (th - tl),
                         "snr_db": v.snr_db})
    x = encode_clips(encoder, waves, stats=("mean", "std"))
    return x.reshape(len(x), -1), rows


def ridge(x_train, y_train, x_test, lam: float = 10.0):
    """A ridge read-out (dual form: fewer clips than features), fitted to centred targets."""
    mu = y_train.mean()
    alpha = np.linalg.solve(x_train @ x_train.T + lam * np.eye(len(x_train)), y_train - mu)
    return x_test @ (x_train.T @ alpha) + mu


def readability(x, rows) -> None:
    x = (x - x.mean(0)) / (x.std(0) + 1e-6)
    speaker = np.array([r["speaker"] for r in rows])
    male = np.array([r["male"] for r in rows])
    print("\n1. readability: ridge read-out of frozen features, 5-fold by speaker (r: predicted vs true)")
    print("parameter     r      what")
    what = {"male": "gender", "z1": "planted cue 1 (spectral tilt)", "z2": "planted cue 2 (mid-band resonance)",
            "f0": "median F0 within gender", "rate": "speaking rate", "pitch_range": "intonation range",
            "tract": "vocal-tract length within gender", "snr_db": "channel noise floor"}
    for name, label in what.items():
        y = np.array([r[name] for r in rows], dtype=float)
        if name != "male":  # within gender
            for g in (0.0, 1.0):
                y[male == g] -= y[male == g].mean()
        pred = np.zeros_like(y)
        for fold in range(5):
            test = speaker % 5 == fold
            pred[test] = ridge(x[~test], y[~test], x[test])
        print(f"{name:12s} {np.corrcoef(pred, y)[0, 1]:+.2f}   {label}")


def macro_f1(pred, y) -> float:
    f1 = []
    for c in (0, 1):
        tp = np.sum((pred == c) & (y == c))
        f1.append(2 * tp / max(np.sum(pred == c) + np.sum(y == c), 1))
    return float(np.mean(f1))


def learning_curve(cfg: dict, n_per_gender: int, clips: int, seed: int, cue_db: float, encoder) -> None:
    plant = PlantSpec.from_config({**cfg["corpus"]["demo"]["plant"], "cue_db": cue_db})
    n_test = cfg["data"]["test"]["speakers_per_gender"]
    task = cfg["tasks"]["planted"]
    n_voices = task["n_per_class"] // task["max_clips_per_speaker"]
    print(f"\n2. learning curve of the planted label (ridge read-out, {n_test} test voices per gender, "
          f"2 clips per training voice, macro-F1, mean of 10 draws);\n   the planted task's single condition has "
          f"{n_voices} voices per class, dual {2 * n_voices}")
    steps = (1, 2, 3, 6)
    print("language angle  " + "  ".join(f"{n:>4d}/cl" for n in steps) + "     all   gain N->2N")
    for lang, angle in plant.angles.items():
        x, rows = voices(lang, n_per_gender, clips, seed, cue_db, encoder)
        x = (x - x.mean(0)) / (x.std(0) + 1e-6)
        speaker = np.array([r["speaker"] for r in rows])
        male = np.array([r["male"] for r in rows])
        theta = math.radians(plant.rule_angle(lang))
        score = {r["speaker"]: math.cos(theta) * r["z1"] + math.sin(theta) * r["z2"] for r in rows}
        gender = {r["speaker"]: r["male"] for r in rows}
        label = {}
        for g in (0.0, 1.0):  # the upper half within each gender, as cltm.demo.plant.assign_labels
            group = sorted((s for s in score if gender[s] == g), key=lambda s: (score[s], s))
            for rank, s in enumerate(group):
                label[s] = int(rank >= len(group) - len(group) // 2)
        rng = np.random.default_rng([seed, 5])
        test_voices = set()
        for g in (0.0, 1.0):
            test_voices |= set(rng.choice(sorted(s for s in gender if gender[s] == g), n_test, replace=False).tolist())
        y = np.array([label[s] for s in speaker])
        is_test = np.isin(speaker, sorted(test_voices))
        pool = {c: sorted(s for s in label if label[s] == c and s not in test_voices) for c in (0, 1)}

        def f1_of(voices_per_class: int, draw: int) -> float:
            r = np.random.default_rng([seed, draw, voices_per_class])
            chosen = [s for c in (0, 1) for s in r.choice(pool[c], min(voices_per_class, len(pool[c])), replace=False)]
            train = np.concatenate([np.flatnonzero(speaker == s)[:2] for s in chosen])
            pred = ridge(x[train], 2.0 * y[train] - 1, x[is_test]) > 0
            return macro_f1(pred.astype(int), y[is_test])

        curve = [np.mean([f1_of(n, d) for d in range(10)]) for n in steps]
        full = f1_of(len(pool[0]) + len(pool[1]), 0)
        gain = np.mean([f1_of(2 * n_voices, d) - f1_of(n_voices, d) for d in range(10)])
        print(f"{lang:8s} {angle:5.0f}  " + "  ".join(f"{v:7.3f}" for v in curve) + f"  {full:6.3f}   {gain:+.3f}")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cue-db", type=float, default=None, help="default: config/config.yaml's plant")
    ap.add_argument("--speakers", type=int, default=None, help="per gender; default: the demo corpus's")
    ap.add_argument("--clips", type=int, default=5)
    ap.add_argument("--seed", type=int, default=None, help="corpus seed; default: the demo corpus's")
    a = ap.parse_args(argv)
    import torch

    torch.set_num_threads(2)
    cfg = yaml.safe_load((ROOT / "config" / "config.yaml").read_text())
    demo = cfg["corpus"]["demo"]
    cue_db = a.cue_db if a.cue_db is not None else float(demo["plant"]["cue_db"])
    n = a.speakers or demo["n_speakers_per_gender"]
    seed = demo["seed"] if a.seed is None else a.seed
    print(f"{machine()}; cue_db {cue_db:g}, {n} voices per gender, {a.clips} clips each, corpus seed {seed}")
    t0 = time.perf_counter()
    encoder = load_encoder(ENCODER)
    x, rows = voices("en", n, a.clips, seed, cue_db, encoder)
    readability(x, rows)
    learning_curve(cfg, n, a.clips, seed, cue_db, encoder)
    print(f"\n{time.perf_counter() - t0:.0f} s. SYNTHETIC voices with a planted effect: figures of the instrument.")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
