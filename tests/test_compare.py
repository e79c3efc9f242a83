"""cltm.analysis.compare: probe against fine-tuning, with intervals from the seeds and a noise ceiling."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from cltm.analysis.compare import compare_matrices, split_half
from cltm.analysis.matrix import seed_values, transfer_matrices

LANGS = ["a", "b", "c", "d", "e"]


def runs_of(true: np.ndarray, noise: float, seeds: int, rng) -> pd.DataFrame:
    """Runs of a grid whose CLTM is `true` (single 0.6, dual 0.7, donor j of target i at 0.6 + 0.1 x true),
    each seed with a shared per-target effect and noise of its own."""
    rows = []
    for i, t in enumerate(LANGS):
        shared = rng.normal(0, noise, seeds)
        means = {"single": 0.6, "dual": 0.7, **{f"donor-{d}": 0.6 + 0.1 * true[i, j] for j, d in enumerate(LANGS) if d != t}}
        for condition, mean in means.items():
            for s, v in enumerate(mean + shared + rng.normal(0, noise, seeds)):
                rows.append({"task": "x", "target": t, "condition": condition, "seed": s + 1, "metric": "f1",
                             "value": v, "f1": v})
    return pd.DataFrame(rows)


def test_agreeing_matrices_agree_within_their_noise_ceiling():
    rng = np.random.default_rng(0)
    true = rng.normal(0.5, 0.6, (5, 5))
    probe, tune = runs_of(true, 0.004, 5, rng), runs_of(true, 0.004, 5, rng)
    pc, fc = (transfer_matrices(r, "f1", LANGS).cells for r in (probe, tune))
    out = compare_matrices(pc, fc, probe, tune, draws=300)
    rho = out["all_cells"]["cltm"]
    assert rho["rho"] > 0.8 and rho["ci95"][0] > 0.5
    assert out["noise_ceiling"]["cltm"] > 0.8  # each matrix agrees with itself: the ceiling is high
    stats = out["all_cells"]
    p1, p2 = (pc.loc[pc.target != pc.donor, "relative_change"] > 0).mean(), \
        (fc.loc[fc.target != fc.donor, "relative_change"] > 0).mean()
    assert stats["sign_agreement_chance"] == pytest.approx(p1 * p2 + (1 - p1) * (1 - p2), abs=1e-4)


def test_noise_alone_gives_a_low_ceiling_and_an_interval_that_keeps_zero():
    """Two matrices of pure seed noise (no transfer structure at all): the split-half agreement of each with
    itself is near zero, so no agreement between them could be told from noise, and the interval from the
    seeds keeps 0."""
    rng = np.random.default_rng(1)
    flat = np.zeros((5, 5))
    probe, tune = runs_of(flat, 0.02, 4, rng), runs_of(flat, 0.02, 4, rng)
    pc, fc = (transfer_matrices(r, "f1", LANGS).cells for r in (probe, tune))
    out = compare_matrices(pc, fc, probe, tune, draws=300)
    lo, hi = out["all_cells"]["relative_change"]["ci95"]
    assert lo < 0 < hi
    half = split_half(seed_values(probe, "f1"), LANGS, splits=100)
    assert abs(half["relative_change"]) < 0.3
