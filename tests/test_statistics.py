"""cltm.analysis.statistics: the paired delta method, Fieller's interval and the t flag, against hand
computations and brute-force simulations with fixed seeds (their figures are quoted in docs/statistics.md)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from cltm.analysis.statistics import (INDEPENDENT, PAIRED, RatioMoments, alpha_of_z, cell_stats, denominator_stats,
                                      paired_ratio, paired_se, row_flagged, t_quantile)


def seeds(values) -> dict:
    return {s: float(v) for s, v in enumerate(values)}


def test_fieller_against_the_quadratic_solved_by_hand():
    # x = 0.5, y = 1.0, vxx = 0.01, vyy = 0.04, vxy = 0.01, df 4: t = t(0.975, 4) = 2.7764
    t = stats.t.ppf(0.975, 4)
    a = 1.0 - t**2 * 0.04
    b = -2 * (0.5 - t**2 * 0.01)
    c = 0.25 - t**2 * 0.01
    lo = (-b - math.sqrt(b * b - 4 * a * c)) / (2 * a)
    hi = (-b + math.sqrt(b * b - 4 * a * c)) / (2 * a)
    got = RatioMoments(0.5, 1.0, 0.01, 0.04, 0.01, 4).fieller(0.95)
    assert got == pytest.approx((lo, hi))
    assert lo < 0.5 < hi


def test_fieller_is_unbounded_when_the_denominator_is_not_clearly_away_from_zero():
    assert RatioMoments(0.5, 0.05, 0.01, 0.04, 0.0, 2).fieller(0.95) == (-math.inf, math.inf)
    assert all(math.isnan(v) for v in RatioMoments(0.5, 1.0, 0.01, 0.04, 0.0, 0).fieller(0.95))


def test_paired_se_is_the_gradient_through_the_seed_covariance():
    rng = np.random.default_rng(3)
    cols = rng.normal(size=(3, 6)) + np.array([[0.7], [0.75], [0.8]])
    g = np.array([-2.0, 10.0, -8.0])
    cov = np.cov(cols, ddof=1)
    assert paired_se(g, cols) == pytest.approx(math.sqrt(g @ cov @ g / 6))


def test_a_cell_by_hand_paired_and_independent():
    a, b, d = seeds([0.70, 0.72, 0.74]), seeds([0.76, 0.79, 0.75]), seeds([0.81, 0.80, 0.85])
    cell = cell_stats(a, b, d)
    A, B, D = (np.array(list(x.values())) for x in (a, b, d))
    num, den = B.mean() - A.mean(), D.mean() - A.mean()
    assert cell.method == PAIRED and cell.n == 3
    assert cell.cltm == pytest.approx(num / den)
    lin = (B.mean() - D.mean()) / den**2 * A + B / den - num / den**2 * D
    assert cell.cltm_se == pytest.approx(lin.std(ddof=1) / math.sqrt(3))
    assert cell.cltm_ci == pytest.approx(paired_ratio(B - A, D - A).fieller(0.95))
    assert cell.relative_change == pytest.approx(B.mean() / A.mean() - 1)
    # a seed missing in one condition: independent means, every run still counted
    del d[2]
    fallback = cell_stats(a, b, d)
    assert fallback.method == INDEPENDENT and fallback.n == 2
    assert fallback.cltm == pytest.approx((B.mean() - A.mean()) / (np.mean(D[:2]) - A.mean()))
    den, se, df, method = denominator_stats(a, d)
    assert method == INDEPENDENT and df == 1
    assert se == pytest.approx(math.sqrt(A.var(ddof=1) / 3 + D[:2].var(ddof=1) / 2))


def test_the_t_flag_and_a_deprecated_z():
    assert t_quantile(0.95, 2) == pytest.approx(4.302652729911275)
    assert alpha_of_z(2.0) == pytest.approx(0.0455, abs=1e-4)
    assert not row_flagged(0.10, 0.02, 2, 0.05)  # 5 SE > 4.30
    assert row_flagged(0.10, 0.02, 2, 0.01)  # 5 SE < 9.92
    assert row_flagged(0.10, float("nan"), 2, 0.05) and row_flagged(0.10, 0.01, 0, 0.05)


# ------------------------------------------------------------------ simulations (fixed seeds)


def simulate(n_seeds: int, rho: float, means=(0.70, 0.50, 0.80), sd=0.03, sims=4000, seed=0):
    """Seed values of single (A), donor (B) and dual (D) with a shared seed effect of correlation `rho`
    across the three conditions (the design's pairing): arrays [sims, 3, n_seeds]."""
    rng = np.random.default_rng(seed)
    shared = rng.normal(0, sd * math.sqrt(rho), (sims, 1, n_seeds))
    own = rng.normal(0, sd * math.sqrt(1 - rho), (sims, 3, n_seeds))
    return np.array(means)[None, :, None] + shared + own


def test_the_paired_se_matches_the_spread_of_the_estimate_where_the_independent_one_does_not():
    """Correlation 0.5 across conditions, 10 seeds: the paired SE's root mean square is the estimate's
    spread over repeated experiments (within 10 %); treating the means as independent overstates it by
    about 1.4x (the review's figure)."""
    x = simulate(10, 0.5, means=(0.70, 0.76, 0.80))
    estimates, paired, independent = [], [], []
    for A, B, D in x:
        cell = cell_stats(seeds(A), seeds(B), seeds(D))
        estimates.append(cell.cltm)
        paired.append(cell.cltm_se)
        b = {s + 100: v for s, v in seeds(B).items()}  # other seed numbers: no pairing
        independent.append(cell_stats(seeds(A), b, seeds(D)).cltm_se)
    spread = np.std(estimates)
    assert math.sqrt(np.mean(np.square(paired))) / spread == pytest.approx(1.0, abs=0.1)
    assert math.sqrt(np.mean(np.square(independent))) / spread > 1.3


def test_fieller_covers_a_cell_far_from_zero_and_one_with_three_seeds():
    """M = -2 (the donor hurts twice as much as more target data helps), 3 seeds, correlation 0.5: Fieller's
    95 % interval covers the true value 95 % of the time (95.0 % here); a delta interval M ± 1.96 SE, what a
    reader makes of a cell shown as M ± SE, covers it 82 % of the time (81.7 % here)."""
    x = simulate(3, 0.5, means=(0.70, 0.50, 0.80))
    fieller, delta = [], []
    for A, B, D in x:
        cell = cell_stats(seeds(A), seeds(B), seeds(D))
        lo, hi = cell.cltm_ci
        fieller.append(lo <= -2 <= hi)
        half = 1.96 * cell.cltm_se
        delta.append(cell.cltm - half <= -2 <= cell.cltm + half)
    assert np.mean(fieller) == pytest.approx(0.95, abs=0.015)
    assert np.mean(delta) == pytest.approx(0.82, abs=0.03)


def test_a_zero_gain_row_passes_the_t_flag_at_its_nominal_rate():
    """A target whose extra data gains nothing (D = A), 3 seeds: the row passes (is not flagged) in about
    alpha/2 = 2.5 % of experiments with the t flag (2.4 % here); a z = 2 threshold on the same paired SE
    lets it through P(t_2 > 2) = 9.2 % of the time (8.9 % here)."""
    x = simulate(3, 0.5, means=(0.70, 0.70, 0.70), sims=20000, seed=1)
    passed_t, passed_z = [], []
    for A, _, D in x:
        den, se, df, _ = denominator_stats(seeds(A), seeds(D))
        passed_t.append(not row_flagged(den, se, df, 0.05))
        passed_z.append(den > 2 * se)
    assert np.mean(passed_t) == pytest.approx(0.025, abs=0.004)
    assert np.mean(passed_z) == pytest.approx(stats.t.sf(2, 2), abs=0.006)
