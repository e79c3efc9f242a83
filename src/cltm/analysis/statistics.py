"""The uncertainty of a cell: paired seeds, t quantiles, Fieller's interval for a ratio.

All conditions of a target share the seed numbers, so seed s of `single` (A), `dual` (D) and `donor-j`
(B) share randomness (the head's initial weights are drawn alike). Where a cell's three conditions have
the same seeds, its errors use that pairing:

- the **paired delta method**: for a smooth function M(A, B, D) of the three means, with gradient g at
  the means, L_s = g_A*A_s + g_B*B_s + g_D*D_s and SE(M) = sd(L_s, ddof 1) / sqrt(n);
- the denominator D - A of a row: SE = sd(D_s - A_s, ddof 1) / sqrt(n);
- **Fieller's interval** for a ratio of means X/Y (CLTM: X = B - A, Y = D - A), from the paired
  differences' variances and covariance, with t on n - 1 degrees of freedom. It is exact for normal
  seed noise and stays valid far from [0, 1], where a delta interval misses; when the denominator is not
  clearly away from zero the set is unbounded, and is written as (-inf, inf).

Where the seeds do not match (a seed missing in one condition), every run still counts: the means are
independent-sample means, their variances add, and the degrees of freedom are the smallest sample's
minus one; the cell table says which method each cell used.

What the intervals cover: optimisation noise (seeds) for one fixed draw of subsets, test set and trials
(`data.seed`). With `data.resample: per_seed` each seed draws its own training subsets, so the same
formulas then cover which clips were drawn too (docs/statistics.md).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import stats

from cltm.paths import DUAL, SINGLE, donor_condition

PAIRED, INDEPENDENT = "paired", "independent (seeds differ)"


def t_quantile(level: float, df: int | float) -> float:
    """The two-sided t critical value: t(1 - (1 - level) / 2, df); NaN without degrees of freedom."""
    if not df or df < 1 or not np.isfinite(df):
        return float("nan")
    return float(stats.t.ppf(1 - (1 - level) / 2, df))


def alpha_of_z(z: float) -> float:
    """The two-sided level of a normal z threshold (z = 2: 0.0455), to read a deprecated `flag_z`."""
    return float(2 * stats.norm.sf(z))


@dataclass(frozen=True)
class RatioMoments:
    """The means of a ratio's numerator and denominator, their variances and covariance (of the means), and
    the degrees of freedom those rest on."""

    x: float
    y: float
    vxx: float
    vyy: float
    vxy: float
    df: float

    @property
    def value(self) -> float:
        with np.errstate(divide="ignore", invalid="ignore"):
            return float(np.float64(self.x) / np.float64(self.y))

    def delta_se(self) -> float:
        """First-order SE of x / y."""
        with np.errstate(divide="ignore", invalid="ignore"):
            y = np.float64(self.y)
            r = np.float64(self.x) / y
            var = (self.vxx - 2 * r * self.vxy + r * r * self.vyy) / (y * y)
            return float(np.sqrt(var)) if var >= 0 else float("nan")

    def fieller(self, level: float = 0.95) -> tuple[float, float]:
        """Fieller's interval for x / y at `level`: the θ with (x - θy)^2 <= t^2 Var(x - θy). Unbounded
        (-inf, inf) when y is not clearly away from zero (the set is then the whole line, or the line
        without an interval); NaN without degrees of freedom."""
        t = t_quantile(level, self.df)
        if not np.isfinite(t) or not all(np.isfinite([self.x, self.y, self.vxx, self.vyy, self.vxy])):
            return float("nan"), float("nan")
        t2 = t * t
        a = self.y * self.y - t2 * self.vyy
        b = -2 * (self.x * self.y - t2 * self.vxy)
        c = self.x * self.x - t2 * self.vxx
        disc = b * b - 4 * a * c
        if a <= 0 or disc < 0:
            return float("-inf"), float("inf")
        root = math.sqrt(disc)
        lo, hi = (-b - root) / (2 * a), (-b + root) / (2 * a)
        return float(lo), float(hi)


def mean_var(values: np.ndarray) -> tuple[float, float]:
    """(mean, variance of the mean) of seed values; the variance is NaN below two seeds."""
    values = np.asarray(values, dtype=float)
    n = len(values)
    if n == 0:
        return float("nan"), float("nan")
    return float(values.mean()), float(values.var(ddof=1) / n) if n > 1 else float("nan")


def paired_ratio(num: np.ndarray, den: np.ndarray) -> RatioMoments:
    """The moments of mean(num) / mean(den) over paired seeds (arrays in the same seed order)."""
    num, den = np.asarray(num, dtype=float), np.asarray(den, dtype=float)
    n = len(num)
    if n > 1:
        cov = np.cov(num, den, ddof=1) / n
        vxx, vyy, vxy = float(cov[0, 0]), float(cov[1, 1]), float(cov[0, 1])
    else:
        vxx = vyy = vxy = float("nan")
    return RatioMoments(float(num.mean()), float(den.mean()), vxx, vyy, vxy, n - 1)


def paired_se(gradient, columns) -> float:
    """The paired delta method: SE of a function of means with `gradient` at the means, from the seed
    columns (one array per mean, in the same seed order): sd(sum_k g_k * column_k, ddof 1) / sqrt(n)."""
    columns = [np.asarray(c, dtype=float) for c in columns]
    n = len(columns[0])
    if n < 2 or not all(np.isfinite(gradient)):
        return float("nan")
    linear = sum(g * c for g, c in zip(gradient, columns))
    return float(linear.std(ddof=1) / math.sqrt(n))


@dataclass(frozen=True)
class CellStats:
    """A cell's CLTM and relative change with their SEs and intervals, and the method that made them."""

    cltm: float
    cltm_se: float
    cltm_ci: tuple[float, float]
    relative_change: float
    relative_change_se: float
    relative_change_ci: tuple[float, float]
    method: str
    n: int


def cell_stats(a: dict, b: dict, d: dict, level: float = 0.95) -> CellStats:
    """One cell from its conditions' runs, each {seed: value}: A = single, B = donor (or dual on the
    diagonal), D = dual. Paired where the three have the same seeds, independent otherwise."""
    seeds = sorted(set(a) & set(b) & set(d))
    paired = len(seeds) > 0 and set(a) == set(b) == set(d)
    if paired:
        A, B, D = (np.array([c[s] for s in seeds], dtype=float) for c in (a, b, d))
        n = len(seeds)
        cltm = paired_ratio(B - A, D - A)
        rel = paired_ratio(B, A)  # (B - A) / A = B / A - 1
        ma, mb, md = A.mean(), B.mean(), D.mean()
        with np.errstate(divide="ignore", invalid="ignore"):
            num, den = np.float64(mb - ma), np.float64(md - ma)
            g = ((mb - md) / den**2, 1 / den, -num / den**2)
            se_m = paired_se(g, (A, B, D))
            se_r = paired_se((-mb / np.float64(ma) ** 2, 1 / np.float64(ma)), (A, B))
        method = PAIRED
    else:
        (ma, va), (mb, vb), (md, vd) = (mean_var(list(c.values())) for c in (a, b, d))
        df = min(len(a), len(b), len(d)) - 1
        n = min(len(a), len(b), len(d))
        cltm = RatioMoments(mb - ma, md - ma, vb + va, vd + va, va, df)
        rel = RatioMoments(mb, ma, vb, va, 0.0, min(len(a), len(b)) - 1)
        se_m, se_r = cltm.delta_se(), rel.delta_se()
        method = INDEPENDENT
    lo, hi = rel.fieller(level)
    return CellStats(cltm.value, se_m, cltm.fieller(level), rel.value - 1, se_r, (lo - 1, hi - 1), method, n)


def denominator_stats(a: dict, d: dict) -> tuple[float, float, float, str]:
    """(D - A, its SE, degrees of freedom, method) of a row: paired over the seeds of both, else
    independent (variances add, the smaller sample's degrees of freedom)."""
    if a and set(a) == set(d):
        seeds = sorted(a)
        diff = np.array([d[s] - a[s] for s in seeds], dtype=float)
        mean, var = mean_var(diff)
        return mean, math.sqrt(var) if np.isfinite(var) else float("nan"), len(seeds) - 1, PAIRED
    (ma, va), (md, vd) = mean_var(list(a.values())), mean_var(list(d.values()))
    se = math.sqrt(va + vd) if np.isfinite(va + vd) else float("nan")
    return md - ma, se, min(len(a), len(d)) - 1, INDEPENDENT


def row_flagged(den: float, se: float, df: float, alpha: float) -> bool:
    """A row is flagged when its denominator is not above t(1 - alpha/2, df) times its SE (or has no SE)."""
    t = t_quantile(1 - alpha, df)
    return bool(not np.isfinite(se) or not np.isfinite(t) or not den > t * se)


# ------------------------------------------------------------------ resampling seeds


def seed_blocks(values: dict, languages) -> dict:
    """Per target, its conditions' seed values as one array [conditions, seeds] when every condition has
    the same seeds (resampled jointly, keeping the pairing), else a list of arrays (resampled apart).
    `values`: {(target, condition): {seed: value}} (`cltm.analysis.matrix.seed_values`). Condition order:
    single, dual, then the donors in `languages` order (the target itself left out)."""
    out = {}
    for i in languages:
        conds = [SINGLE, DUAL] + [donor_condition(j) for j in languages if j != i]
        cells = [values[(i, c)] for c in conds]
        if all(set(c) == set(cells[0]) for c in cells):
            seeds = sorted(cells[0], key=str)
            out[i] = np.array([[c[s] for s in seeds] for c in cells], dtype=float)
        else:
            out[i] = [np.array(list(c.values()), dtype=float) for c in cells]
    return out


def _means(block, rng, draws: int | None) -> np.ndarray:
    """[draws, conditions] means of a target's conditions over seeds resampled with replacement (jointly
    where paired); draws None: the plain means [1, conditions]."""
    if draws is None:
        return np.array([[np.mean(c) for c in block]])
    if isinstance(block, np.ndarray):
        n = block.shape[1]
        idx = rng.integers(0, n, (draws, n))
        return block[:, idx].mean(axis=2).T
    return np.stack([c[rng.integers(0, len(c), (draws, len(c)))].mean(axis=1) for c in block], axis=1)


def bootstrap_matrices(values: dict, languages, draws: int = 1000, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(CLTM, relative change), each [draws, n, n] in `languages` order, from seeds resampled with
    replacement within each target (jointly across its conditions where their seeds are paired)."""
    rng = np.random.default_rng(seed)
    blocks = seed_blocks(values, languages)
    n = len(languages)
    cltm = np.ones((draws, n, n))
    rel = np.zeros((draws, n, n))
    for r, i in enumerate(languages):
        m = _means(blocks[i], rng, draws)  # [draws, conditions]: single, dual, donors
        a, d = m[:, 0], m[:, 1]
        donors = [j for j in languages if j != i]
        with np.errstate(divide="ignore", invalid="ignore"):
            rel[:, r, r] = (d - a) / a
            for k, j in enumerate(donors):
                c = languages.index(j)
                b = m[:, 2 + k]
                cltm[:, r, c] = (b - a) / (d - a)
                rel[:, r, c] = (b - a) / a
    return cltm, rel
