"""Cross-Lingual Transfer Matrix (CLTM) from per-run results.

For a target language i (the language tested) and a donor language j::

    A = mean Perf(i)      condition "single"      (N clips of i)
    D = mean Perf(i+i)    condition "dual"        (2N clips of i)
    B = mean Perf(i+j)    condition "donor-<j>"   (N clips of i + N of j)

    CLTM[i, j]            = (B - A) / (D - A)     diagonal (j = i, B = D) is 1
    relative_change[i, j] = (B - A) / A           diagonal uses B = D

Rows are targets, columns donors.  Uncertainty comes from the seed-to-seed
spread, using the pairing of the design where the seeds match (seed s of
single, dual and donor-j share their randomness): the paired delta method for
the standard errors and Fieller's interval for each cell (`cltm.analysis.statistics`).

Every run counts: no seed is ever dropped.  A target row whose denominator
D - A is not clearly positive (D - A <= t(1 - flag_alpha/2, n - 1) * SE(D - A),
paired) is *flagged*: its CLTM values are still reported, only marked as unreliable.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from cltm.analysis.statistics import cell_stats, denominator_stats, row_flagged
from cltm.paths import DUAL, SINGLE, conditions_of, donor_condition, donor_of

__all__ = ["condition_table", "TransferResult", "transfer_matrices", "matrix_summary"]



# --------------------------------------------------------------------------
# per-condition statistics
# --------------------------------------------------------------------------


def _check_columns(runs: pd.DataFrame, metric: str) -> None:
    """Raise a ValueError naming what is missing from the runs table."""
    if not isinstance(runs, pd.DataFrame):
        raise ValueError(f"runs must be a pandas DataFrame, got {type(runs).__name__}")
    missing = [c for c in ("target", "condition") if c not in runs.columns]
    if missing:
        raise ValueError(
            f"runs table lacks column(s) {missing}; available columns: {list(runs.columns)}"
        )
    if metric not in runs.columns:
        raise ValueError(
            f"metric column {metric!r} not in runs table; available columns: {list(runs.columns)}"
        )


def _validated_values(runs: pd.DataFrame, metric: str) -> pd.DataFrame:
    """Checked copy of the columns needed: target, condition, numeric metric."""
    _check_columns(runs, metric)
    df = runs.copy()
    df["target"] = df["target"].astype(str)
    df["condition"] = df["condition"].astype(str)
    values = pd.to_numeric(df[metric], errors="coerce")
    bad = df.loc[~np.isfinite(values.to_numpy(dtype=float)), ["target", "condition"]]
    if len(bad):
        # a failed run must be fixed or removed deliberately; silently skipping it
        # would be the seed filtering this project promises never to do
        where = bad.assign(seed=runs.loc[bad.index, "seed"]) if "seed" in runs else bad
        raise ValueError(
            f"{len(bad)} run(s) have a missing or non-numeric {metric!r}: "
            + "; ".join(str(tuple(r)) for r in where.itertuples(index=False))
        )
    df[metric] = values.astype(float)

    # the donor column, when present and filled, must agree with the condition name
    if "donor" in df.columns:
        implied = df["condition"].map(donor_of)
        given = df["donor"].map(lambda d: None if pd.isna(d) or str(d).strip() == "" else str(d))
        clash = implied.notna() & given.notna() & (implied != given)
        if clash.any():
            rows = df.loc[clash, ["target", "condition", "donor"]]
            raise ValueError(
                "donor column disagrees with condition for: "
                + "; ".join(str(tuple(r)) for r in rows.itertuples(index=False))
            )
    return df


def condition_table(runs: pd.DataFrame, metric: str) -> pd.DataFrame:
    """Seed statistics of ``metric`` per (target, condition).

    Returns one row per (target, condition) with columns ``target``,
    ``condition``, ``donor`` (missing/NaN unless a donor condition), ``n_seeds``,
    ``mean``, ``sd`` (ddof=1) and ``se`` = sd / sqrt(n); sd and se are NaN
    when fewer than two seeds exist.  Every run enters: nothing is filtered.
    """
    df = _validated_values(runs, metric)
    grouped = df.groupby(["target", "condition"], sort=True)[metric]
    table = grouped.agg(n_seeds="count", mean="mean", sd=lambda x: x.std(ddof=1))
    table = table.reset_index()
    table["n_seeds"] = table["n_seeds"].astype(int)
    table.loc[table["n_seeds"] < 2, "sd"] = np.nan
    table["se"] = table["sd"] / np.sqrt(table["n_seeds"])
    table.insert(2, "donor", table["condition"].map(donor_of))
    return table


# --------------------------------------------------------------------------
# transfer matrices
# --------------------------------------------------------------------------


@dataclass
class TransferResult:
    """All outputs of :func:`transfer_matrices` for one task and metric.

    ``cltm``, ``cltm_se``, ``relative_change`` and ``relative_change_se`` are
    square DataFrames: index = targets (name ``"target"``), columns = donors
    (name ``"donor"``), in the language order given.  ``baselines`` has one
    row per target (index ``"target"``); ``cells`` is the long form with one
    row per (target, donor), diagonal included.
    """

    cltm: pd.DataFrame
    cltm_se: pd.DataFrame
    relative_change: pd.DataFrame
    relative_change_se: pd.DataFrame
    baselines: pd.DataFrame
    cells: pd.DataFrame
    cltm_ci_low: pd.DataFrame | None = None
    cltm_ci_high: pd.DataFrame | None = None
    metric: str = ""
    languages: list = field(default_factory=list)
    flag_alpha: float = 0.05
    ci_level: float = 0.95


def seed_values(runs: pd.DataFrame, metric: str) -> dict[tuple[str, str], dict]:
    """{(target, condition): {seed: value}}; a seed that occurs twice in a condition (or runs without seeds)
    get keys of their own, so that such a condition is never paired."""
    out: dict[tuple[str, str], dict] = {}
    seeds = runs["seed"] if "seed" in runs.columns else pd.Series([None] * len(runs), index=runs.index)
    for (target, condition, seed, value) in zip(runs["target"], runs["condition"], seeds, runs[metric]):
        cell = out.setdefault((str(target), str(condition)), {})
        key = int(seed) if seed is not None and not pd.isna(seed) else ("run", len(cell))
        if key in cell:
            key = ("repeat", key, len(cell))
        cell[key] = float(value)
    return out


def transfer_matrices(
    runs: pd.DataFrame, metric: str, languages, flag_alpha: float = 0.05, ci_level: float = 0.95
) -> TransferResult:
    """Build the CLTM, the relative-change matrix and their standard errors.

    Parameters
    ----------
    runs
        One row per fine-tuning run with columns ``target``, ``condition``
        (``single``, ``dual`` or ``donor-<lang>``), optionally ``task``,
        ``donor``, ``seed``, and the metric column.  Must hold one task only.
        Runs of targets/donors outside ``languages`` are ignored.
    metric
        Name of the metric column (higher = better, e.g. ``macro_f1``).
    languages
        Language codes, in the order of the matrix rows and columns.
    flag_alpha
        A target row is flagged when ``D - A <= t(1 - flag_alpha/2, n - 1) * SE(D - A)``
        (paired over the seeds of single and dual) or that SE is NaN (fewer than two seeds).
    ci_level
        The level of every cell's interval (Fieller's, from the paired seeds).

    Raises
    ------
    ValueError
        Metric column missing (names the available columns), more than one
        task, non-finite metric values, or missing runs (names every missing
        (target, condition) pair).
    """
    languages = [str(x) for x in languages]
    if not languages:
        raise ValueError("languages is empty")
    dupes = sorted({x for x in languages if languages.count(x) > 1})
    if dupes:
        raise ValueError(f"languages listed more than once: {dupes}")
    if "task" in getattr(runs, "columns", []) and runs["task"].nunique(dropna=False) > 1:
        raise ValueError(
            f"runs mix several tasks {sorted(map(str, runs['task'].unique()))}; "
            "select one task before building its matrix"
        )

    _check_columns(runs, metric)
    in_matrix = runs[runs["target"].astype(str).isin(languages)]
    stats = condition_table(in_matrix, metric).set_index(["target", "condition"])
    needed = [
        (i, c)
        for i in languages
        for c in conditions_of(i, languages)
    ]
    missing = [pair for pair in needed if pair not in stats.index]
    if missing:
        raise ValueError(
            f"{len(missing)} (target, condition) pair(s) have no runs for {metric!r}: "
            + ", ".join(f"({t}, {c})" for t, c in missing)
        )

    values = seed_values(in_matrix.assign(**{metric: pd.to_numeric(in_matrix[metric])}), metric)

    def stat(target: str, condition: str) -> tuple[np.float64, np.float64, int]:
        # numpy scalars: a zero denominator gives inf/NaN (flagged) instead of raising
        row = stats.loc[(target, condition)]
        return np.float64(row["mean"]), np.float64(row["se"]), int(row["n_seeds"])

    baseline_rows, cell_rows = [], []
    for i in languages:
        a, se_a, n_a = stat(i, SINGLE)
        d, se_d, n_d = stat(i, DUAL)
        den, se_den, df_den, den_method = denominator_stats(values[(i, SINGLE)], values[(i, DUAL)])
        flagged = row_flagged(den, se_den, df_den, flag_alpha)
        baseline_rows.append(
            {
                "target": i,
                "perf_single": float(a),
                "perf_single_se": float(se_a),
                "n_single": n_a,
                "perf_dual": float(d),
                "perf_dual_se": float(se_d),
                "n_dual": n_d,
                "denominator": float(den),
                "denominator_se": float(se_den),
                "denominator_df": int(df_den),
                "se_method": den_method,
                "flagged": flagged,
            }
        )
        for j in languages:
            condition = DUAL if j == i else donor_condition(j)
            b, se_b, n_b = stat(i, condition)
            with np.errstate(divide="ignore", invalid="ignore"):
                cell = cell_stats(values[(i, SINGLE)], values[(i, condition)], values[(i, DUAL)], ci_level)
            m, se_m, (lo, hi) = cell.cltm, cell.cltm_se, cell.cltm_ci
            if j == i:
                m, se_m, lo, hi = 1.0, 0.0, 1.0, 1.0  # by construction, whatever the seeds did
            cell_rows.append(
                {
                    "target": i,
                    "donor": j,
                    "condition": condition,
                    "perf_single": float(a),
                    "perf_bilingual": float(b),
                    "perf_bilingual_se": float(se_b),
                    "n_bilingual": n_b,
                    "cltm": float(m),
                    "cltm_se": float(se_m),
                    "cltm_ci_low": float(lo),
                    "cltm_ci_high": float(hi),
                    "relative_change": float(cell.relative_change),
                    "relative_change_se": float(cell.relative_change_se),
                    "relative_change_ci_low": float(cell.relative_change_ci[0]),
                    "relative_change_ci_high": float(cell.relative_change_ci[1]),
                    "se_method": cell.method,
                    "n_paired": cell.n if cell.method == "paired" else 0,
                    "denominator": float(den),
                    "denominator_se": float(se_den),
                    "flagged": flagged,
                }
            )

    baselines = pd.DataFrame(baseline_rows).set_index("target")
    cells = pd.DataFrame(cell_rows)

    def square(column: str) -> pd.DataFrame:
        wide = cells.pivot(index="target", columns="donor", values=column)
        wide = wide.loc[languages, languages].astype(float)
        wide.index.name, wide.columns.name = "target", "donor"
        return wide

    return TransferResult(
        cltm=square("cltm"),
        cltm_se=square("cltm_se"),
        relative_change=square("relative_change"),
        relative_change_se=square("relative_change_se"),
        baselines=baselines,
        cells=cells,
        cltm_ci_low=square("cltm_ci_low"),
        cltm_ci_high=square("cltm_ci_high"),
        metric=metric,
        languages=list(languages),
        flag_alpha=float(flag_alpha),
        ci_level=float(ci_level),
    )


# --------------------------------------------------------------------------
# matrix-level analyses
# --------------------------------------------------------------------------


def _share(mask: np.ndarray, valid: np.ndarray) -> float:
    """Fraction of valid entries where mask holds (NaN when nothing is valid)."""
    n = int(valid.sum())
    return float((mask & valid).sum() / n) if n else float("nan")


def gini(values) -> float:
    """Gini coefficient of non-negative values (0: spread evenly, 1: all in one); NaN without mass."""
    v = np.sort(np.asarray(values, dtype=float))
    n, total = v.size, v.sum()
    if n == 0 or total <= 0:
        return float("nan")
    return float((2 * np.arange(1, n + 1) - n - 1) @ v / (n * total))


def entropy(values) -> float:
    """Shannon entropy (bits) of non-negative values normalised to sum 1; NaN without mass."""
    v = np.asarray(values, dtype=float)
    total = v.sum()
    if v.size == 0 or total <= 0:
        return float("nan")
    p = v[v > 0] / total
    return float(-(p * np.log2(p)).sum())


def matrix_figures(result: TransferResult) -> dict:
    """The reference's matrix figures we compute beside the summary (docs/statistics.md):

    share_sign_certain   share of off-diagonal cells whose interval excludes 0 (the sign is known at the
                         interval's level); share_sign_certain_unflagged the same over unflagged rows
    spectral_radius      the largest |eigenvalue| of the CLTM (NaN if a cell is not finite)
    condition_number     its 2-norm condition number (large: nearly singular, rows nearly dependent)
    row_gini, column_gini, row_entropy, column_entropy
                         per target (row) and donor (column): how concentrated the positive part
                         max(M, 0) of its off-diagonal cells is (Gini 0 = spread evenly over the other
                         languages, 1 = all on one), and its entropy in bits (log2(n - 1) = even)
    """
    m = result.cltm.to_numpy(dtype=float)
    langs = list(result.cltm.index)
    n = m.shape[0]
    off = ~np.eye(n, dtype=bool)
    out = {}
    if result.cltm_ci_low is not None:
        lo, hi = result.cltm_ci_low.to_numpy(dtype=float), result.cltm_ci_high.to_numpy(dtype=float)
        certain = (lo > 0) | (hi < 0)
        flagged = result.baselines["flagged"].reindex(langs).fillna(True).to_numpy(dtype=bool)
        out["share_sign_certain"] = _share(certain, off)
        out["share_sign_certain_unflagged"] = _share(certain, off & ~flagged[:, None])
        out["ci_level"] = result.ci_level
    finite = bool(np.isfinite(m).all())
    out["spectral_radius"] = float(np.abs(np.linalg.eigvals(m)).max()) if finite else float("nan")
    out["condition_number"] = float(np.linalg.cond(m)) if finite else float("nan")
    pos = np.where(off & np.isfinite(m), np.clip(m, 0.0, None), 0.0)
    out["row_gini"] = {lang: gini(pos[i, off[i]]) for i, lang in enumerate(langs)}
    out["column_gini"] = {lang: gini(pos[off[:, j], j]) for j, lang in enumerate(langs)}
    out["row_entropy"] = {lang: entropy(pos[i, off[i]]) for i, lang in enumerate(langs)}
    out["column_entropy"] = {lang: entropy(pos[off[:, j], j]) for j, lang in enumerate(langs)}
    return out


def matrix_summary(result: TransferResult) -> dict:
    """The paper's matrix analyses, computed over the off-diagonal cells.

    Keys
    ----
    n_languages, n_offdiagonal
    asymmetry            ||M - M^T||_F / ||M||_F, off-diagonal cells only
    distance_from_ones   ||M - 1||_F / ||1||_F, off-diagonal cells only
    asymmetry_full, distance_from_ones_full
                         the same with the diagonal included (the reference
                         code's definition; numerators are identical)
    share_positive, share_negative, share_above_one
                         shares of off-diagonal cells > 0, < 0, > 1
    reciprocity          share of unordered pairs {i, j} with both
                         M[i, j] > 0 and M[j, i] > 0
    reciprocity_mass     sum min(M+_ij, M+_ji) / sum max(...) over pairs,
                         M+ = positive part (the reference code's measure)
    donor_strength_mean, recipient_strength_mean
                         {donor: mean of its off-diagonal column} / {target: mean of its
                         off-diagonal row}, raw values (negative cells pull it down)
    donor_strength_positive_sum, recipient_strength_positive_sum
                         column / row sums of the positive part max(M, 0) off the diagonal:
                         the reference code's donor / recipient strength
    strength_definitions a sentence per name, so the two are not mistaken for each other
    n_flagged_rows
    share_positive_unflagged, share_negative_unflagged, share_above_one_unflagged
                         the three shares over unflagged rows (NaN if none)

    Cells that are NaN (e.g. a zero denominator) are left out of the shares
    and strengths but propagate into the norms.
    """
    m_df = result.cltm
    langs = list(m_df.index)
    m = m_df.to_numpy(dtype=float)
    n = m.shape[0]
    off = ~np.eye(n, dtype=bool)
    valid = off & ~np.isnan(m)
    flagged = result.baselines["flagged"].reindex(langs).fillna(True).to_numpy(dtype=bool)
    unflagged_rows = np.broadcast_to(~flagged[:, None], m.shape)

    m_off = np.where(off, m, 0.0)  # diagonal zeroed: it is 1 by construction
    with np.errstate(divide="ignore", invalid="ignore"):
        norm_off = np.linalg.norm(m_off)
        asym_num = np.linalg.norm(m - m.T)  # diagonal cancels anyway
        ones_num = np.linalg.norm(np.where(off, m - 1.0, 0.0))
        summary = {
            "n_languages": n,
            "n_offdiagonal": int(off.sum()),
            "asymmetry": float(asym_num / norm_off) if n > 1 else float("nan"),
            "distance_from_ones": float(ones_num / np.sqrt(off.sum())) if n > 1 else float("nan"),
            "asymmetry_full": float(asym_num / np.linalg.norm(m)),
            "distance_from_ones_full": float(np.linalg.norm(m - 1.0) / n),
        }

    summary["share_positive"] = _share(m > 0, valid)
    summary["share_negative"] = _share(m < 0, valid)
    summary["share_above_one"] = _share(m > 1, valid)

    iu, ju = np.triu_indices(n, k=1)
    both_positive = (m[iu, ju] > 0) & (m[ju, iu] > 0)
    summary["reciprocity"] = float(both_positive.mean()) if iu.size else float("nan")
    pos = np.clip(np.nan_to_num(m, nan=0.0), 0.0, None)
    lo = np.minimum(pos[iu, ju], pos[ju, iu]).sum()
    hi = np.maximum(pos[iu, ju], pos[ju, iu]).sum()
    summary["reciprocity_mass"] = float(lo / hi) if hi > 0 else float("nan")

    masked = np.where(valid, m, np.nan)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN column -> NaN, intended
        col_means = np.nanmean(masked, axis=0)
        row_means = np.nanmean(masked, axis=1)
    summary["donor_strength_mean"] = {lang: float(v) for lang, v in zip(langs, col_means)}
    summary["recipient_strength_mean"] = {lang: float(v) for lang, v in zip(langs, row_means)}
    pos_off = np.where(valid, np.clip(m, 0.0, None), 0.0)
    summary["donor_strength_positive_sum"] = {lang: float(v) for lang, v in zip(langs, pos_off.sum(axis=0))}
    summary["recipient_strength_positive_sum"] = {lang: float(v) for lang, v in zip(langs, pos_off.sum(axis=1))}
    summary["strength_definitions"] = {
        "donor_strength_mean": "mean of the donor's off-diagonal column, raw values (NaN cells left out)",
        "donor_strength_positive_sum": "sum of max(M, 0) over the donor's off-diagonal column: "
                                       "the reference code's donor strength",
        "recipient_strength_mean": "mean of the target's off-diagonal row, raw values",
        "recipient_strength_positive_sum": "sum of max(M, 0) over the target's off-diagonal row: "
                                           "the reference code's recipient strength",
    }

    summary.update(matrix_figures(result))
    summary["n_flagged_rows"] = int(flagged.sum())
    valid_unflagged = valid & unflagged_rows
    summary["share_positive_unflagged"] = _share(m > 0, valid_unflagged)
    summary["share_negative_unflagged"] = _share(m < 0, valid_unflagged)
    summary["share_above_one_unflagged"] = _share(m > 1, valid_unflagged)
    return summary

