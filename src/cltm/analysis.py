"""Reading a CLTM: families, typology (Mantel tests), a language map, top pairs, seed planning and
the learning curve that chooses N.

All functions take plain DataFrames (the matrix with targets as rows and donors as columns, its
standard errors, the baselines table, a family table from `cltm.families.language_table`) so that
each can be checked by hand on a small matrix. Off-diagonal cells only, unless said otherwise;
NaN cells are left out; flagged rows are kept (and marked where a table has room for it).
"""

from __future__ import annotations

import itertools
import math
import warnings

import numpy as np
import pandas as pd

__all__ = [
    "DEFAULTS", "analysis_settings", "ladder_sizes", "family_positive_mass", "family_means", "family_summary",
    "mantel_test", "typology_table", "top_pairs", "cluster_order", "linkage_matrix",
    "seed_plan", "learning_curve_table", "recommend_n",
]


DEFAULTS = {
    "language_names": False,
    "languages_info": {},
    "top_k": 5,
    "cluster_method": "average",
    "typology": {"distances": ["genetic", "geographic", "syntactic", "phonological", "inventory", "featural"],
                 "permutations": 9999, "seed": 0, "alternative": "less"},
    "seed_planning": {"cell_se": 0.1},
    "learning_curve": {"factors": [0.25, 0.5, 1.0], "seeds": [1, 2, 3]},
}


def analysis_settings(config: dict) -> dict:
    """The config's `analysis` section with `DEFAULTS` filled in (every key is optional)."""
    given = config.get("analysis") or {}
    out = {}
    for key, default in DEFAULTS.items():
        value = given.get(key, default)
        out[key] = {**default, **value} if isinstance(default, dict) and key != "languages_info" else value
    return out


def task_size(config: dict, task: str) -> int:
    """N of a task: clips per class (gender) or utterances (speaker)."""
    cfg = config["tasks"][task]
    return int(cfg["n_per_class"] if "n_per_class" in cfg else cfg["n_utterances"])


def ladder_sizes(config: dict, task: str) -> list[int]:
    """The learning curve's rungs n = round(factor * N), distinct, ascending, at least 1."""
    n = task_size(config, task)
    factors = analysis_settings(config)["learning_curve"]["factors"]
    return sorted({max(1, int(round(f * n))) for f in factors})


def _square(m: pd.DataFrame) -> tuple[list[str], np.ndarray]:
    langs = [str(x) for x in m.index]
    if list(map(str, m.columns)) != langs:
        raise ValueError("the matrix must have the same languages, in the same order, as rows and columns")
    return langs, m.to_numpy(dtype=float)


# ------------------------------------------------------------------ strengths and families


def family_positive_mass(m: pd.DataFrame, families: pd.Series) -> float:
    """Share of the off-diagonal positive mass that falls within families (the reference's measure):
    sum over families with at least two members of the in-family off-diagonal positive part, over the
    total off-diagonal positive part. NaN when there is no positive mass."""
    langs, a = _square(m)
    fam = families.reindex(langs).fillna("unknown").to_numpy()
    n = len(langs)
    pos = np.clip(np.nan_to_num(a, nan=0.0), 0.0, None)
    off = ~np.eye(n, dtype=bool)
    sizes = pd.Series(fam).value_counts()
    same = (fam[:, None] == fam[None, :]) & np.isin(fam, sizes[sizes >= 2].index)[:, None] & (fam[:, None] != "unknown")
    total = pos[off].sum()
    return float(pos[off & same].sum() / total) if total > 0 else float("nan")


def _mean_se(values: np.ndarray) -> tuple[float, float, int]:
    v = values[np.isfinite(values)]
    if v.size == 0:
        return float("nan"), float("nan"), 0
    se = float(v.std(ddof=1) / math.sqrt(v.size)) if v.size > 1 else float("nan")
    return float(v.mean()), se, int(v.size)


def family_means(m: pd.DataFrame, families: pd.Series) -> pd.DataFrame:
    """Per family: mean in-family and mean cross-family CLTM over off-diagonal cells with a target in
    the family, with standard errors (sd / sqrt(cells): the spread across cells, not across seeds).
    Cross-family = the family's targets with donors from other families. Columns family, n_languages,
    in_family_mean, in_family_se, in_family_cells, cross_family_mean, cross_family_se, cross_family_cells."""
    langs, a = _square(m)
    fam = families.reindex(langs).fillna("unknown").to_numpy()
    off = ~np.eye(len(langs), dtype=bool)
    rows = []
    for f in dict.fromkeys(fam):
        tgt = (fam == f)[:, None]
        same = tgt & (fam == f)[None, :] & off
        cross = tgt & (fam != f)[None, :]
        im, ise, ic = _mean_se(a[same])
        cm, cse, cc = _mean_se(a[cross])
        rows.append({"family": f, "n_languages": int((fam == f).sum()), "in_family_mean": im, "in_family_se": ise,
                     "in_family_cells": ic, "cross_family_mean": cm, "cross_family_se": cse, "cross_family_cells": cc})
    return pd.DataFrame(rows)


def family_summary(m: pd.DataFrame, families: pd.Series) -> dict:
    """The `summary.json` fields on families (the strengths are in `cltm.matrix.matrix_summary`)."""
    means = family_means(m, families)

    def plain(v):  # JSON has no NaN: an undefined mean (a one-language family) is null
        if isinstance(v, (float, np.floating)):
            return None if not np.isfinite(v) else float(v)
        return int(v) if isinstance(v, (np.integer,)) else v

    return {
        "family_positive_mass": plain(family_positive_mass(m, families)),
        "families": {str(k): str(v) for k, v in families.reindex(m.index).fillna("unknown").items()},
        "family_means": {r["family"]: {k: plain(r[k]) for k in means.columns if k != "family"}
                         for r in means.to_dict(orient="records")},
    }


# ------------------------------------------------------------------ Mantel test


def _spearman(x: np.ndarray, y: np.ndarray) -> float:
    """Spearman's rho: Pearson's r of the average ranks (ties share their mean rank)."""
    from scipy.stats import rankdata

    rx, ry = rankdata(x) - (x.size + 1) / 2, rankdata(y) - (y.size + 1) / 2
    den = np.sqrt((rx @ rx) * (ry @ ry))
    return float(rx @ ry / den) if den > 0 else float("nan")


def _null_distribution(x, d, iu, ju, perms, batch: int = 2000) -> np.ndarray:
    """Spearman's rho for every permutation, vectorised over batches of permutations. A pair that is NaN
    (an unknown distance under that permutation, or a NaN cell) is left out of that permutation's
    ranks: NaN become +inf, so the finite values keep their ranks 1..k, and the rest is zeroed."""
    from scipy.stats import rankdata

    out = []
    perms = iter(perms)
    while chunk := list(itertools.islice(perms, batch)):
        p = np.array(chunk)
        y = d[p[:, iu], p[:, ju]]  # (batch, pairs): the permuted distances of each pair
        valid = np.isfinite(x)[None, :] & np.isfinite(y)
        k = valid.sum(axis=1)
        centre = ((k + 1) / 2)[:, None]
        rx = np.where(valid, rankdata(np.where(valid, x[None, :], np.inf), axis=1) - centre, 0.0)
        ry = np.where(valid, rankdata(np.where(valid, y, np.inf), axis=1) - centre, 0.0)
        den = np.sqrt(np.einsum("ij,ij->i", rx, rx) * np.einsum("ij,ij->i", ry, ry))
        with np.errstate(invalid="ignore", divide="ignore"):
            rho = np.einsum("ij,ij->i", rx, ry) / den
        out += list(np.where((k >= 3) & (den > 0), rho, np.nan))
    return np.array(out, dtype=float)


def mantel_test(m: np.ndarray, d: np.ndarray, *, permutations: int = 9999, seed: int = 0,
                symmetric: bool = False, alternative: str = "less", exact_max: int = 5040) -> dict:
    """Mantel test of a transfer matrix `m` against a distance matrix `d` (both n x n, same order).

    The statistic is Spearman's rho between the off-diagonal cells of `m` and of `d`: ordered pairs
    (i, j), i != j, for the raw matrix; unordered pairs with (M_ij + M_ji) / 2 when `symmetric`.
    Pairs where either is NaN are skipped in the observed statistic and in every permutation (the
    NaN travel with their languages). The null permutes the languages of `d` (rows and columns
    together). With n! <= `exact_max` every permutation is enumerated and the p-value is exact
    (4 languages: 24); otherwise `permutations` random ones (seeded) and p = (1 + k) / (1 + P),
    the observed counted as one of the permutations.

    `alternative`: "less" (the default: transfer falls as distance grows, rho < 0), "greater" or
    "two-sided" (|rho|). Returns rho, p_value, n_languages, n_pairs, permutations, exact.
    """
    m, d = np.asarray(m, dtype=float), np.asarray(d, dtype=float)
    n = m.shape[0]
    if m.shape != (n, n) or d.shape != (n, n):
        raise ValueError(f"matrix {m.shape} and distances {d.shape} must both be square and of one size")
    if symmetric:
        m = (m + m.T) / 2
        iu, ju = np.triu_indices(n, k=1)
    else:
        iu, ju = np.nonzero(~np.eye(n, dtype=bool))
    x = m[iu, ju]

    def stat(perm):
        y = d[perm][:, perm][iu, ju]
        ok = np.isfinite(x) & np.isfinite(y)
        return (_spearman(x[ok], y[ok]) if ok.sum() >= 3 else float("nan")), int(ok.sum())

    observed, n_pairs = stat(np.arange(n))
    out = {"rho": observed, "n_languages": n, "n_pairs": n_pairs, "alternative": alternative}
    if not np.isfinite(observed):
        return {**out, "p_value": float("nan"), "permutations": 0, "exact": False}
    exact = math.factorial(n) <= exact_max
    if exact:
        perms = (np.array(p) for p in itertools.permutations(range(n)))
        count = math.factorial(n)
    else:
        rng = np.random.default_rng(seed)
        perms = (rng.permutation(n) for _ in range(permutations))
        count = permutations
    null = _null_distribution(x, d, iu, ju, perms)
    null = null[np.isfinite(null)]
    tol = 1e-12  # ties with the observed value count as at least as extreme
    if alternative == "less":
        k = (null <= observed + tol).sum()
    elif alternative == "greater":
        k = (null >= observed - tol).sum()
    elif alternative == "two-sided":
        k = (np.abs(null) >= abs(observed) - tol).sum()
    else:
        raise ValueError(f"alternative must be less, greater or two-sided, not {alternative!r}")
    # exact: the identity is one of the n! permutations, so p = k / n!; sampled: (1 + k) / (1 + P)
    p = k / null.size if exact else (1 + k) / (1 + null.size)
    return {**out, "p_value": float(p), "permutations": int(count), "exact": bool(exact)}


def typology_table(m: pd.DataFrame, distances: dict[str, pd.DataFrame], *, permutations: int = 9999,
                   seed: int = 0, alternative: str = "less") -> pd.DataFrame:
    """One row per distance type and matrix part (raw, symmetric): Spearman's rho, the Mantel p-value,
    the pairs used and the languages without that distance (their pairs skipped)."""
    langs, a = _square(m)
    rows = []
    for kind, dist in distances.items():
        dd = dist.reindex(index=langs, columns=langs).to_numpy(dtype=float)
        off = ~np.eye(len(langs), dtype=bool)
        missing_pairs = [(langs[i], langs[j]) for i, j in zip(*np.nonzero(off & ~np.isfinite(dd))) if i < j]
        lacking = sorted({x for pair in missing_pairs for x in pair
                          if sum(x in p for p in missing_pairs) == len(langs) - 1})
        for part, sym in (("raw", False), ("symmetric", True)):
            res = mantel_test(a, dd, permutations=permutations, seed=seed, symmetric=sym, alternative=alternative)
            rows.append({"distance": kind, "matrix": part, "rho": res["rho"], "p_value": res["p_value"],
                         "alternative": alternative, "exact": res["exact"], "permutations": res["permutations"],
                         "n_pairs": res["n_pairs"], "languages_missing": " ".join(lacking),
                         "pairs_missing": " ".join(f"{x}-{y}" for x, y in missing_pairs)})
    return pd.DataFrame(rows)


# ------------------------------------------------------------------ language map and top pairs


def top_pairs(m: pd.DataFrame, se: pd.DataFrame, flagged=(), k: int = 5) -> pd.DataFrame:
    """The k strongest positive and k strongest negative off-diagonal cells (target <- donor), with SE,
    z = value / SE and whether the target row is flagged. NaN cells are left out; a positive list holds
    only cells > 0 and a negative one only cells < 0 (so it may be shorter than k)."""
    langs, a = _square(m)
    s = se.reindex(index=langs, columns=langs).to_numpy(dtype=float)
    flagged = {str(x) for x in flagged}
    cells = [(langs[i], langs[j], a[i, j], s[i, j]) for i in range(len(langs)) for j in range(len(langs))
             if i != j and np.isfinite(a[i, j])]
    df = pd.DataFrame(cells, columns=["target", "donor", "cltm", "cltm_se"])
    with np.errstate(divide="ignore", invalid="ignore"):
        df["z"] = df["cltm"] / df["cltm_se"]
    df["flagged"] = df["target"].isin(flagged)
    pos = df[df["cltm"] > 0].sort_values("cltm", ascending=False).head(k).assign(sign="positive")
    neg = df[df["cltm"] < 0].sort_values("cltm", ascending=True).head(k).assign(sign="negative")
    out = pd.concat([pos, neg], ignore_index=True)
    out.insert(0, "rank", list(range(1, len(pos) + 1)) + list(range(1, len(neg) + 1)))
    return out[["sign", "rank", "target", "donor", "cltm", "cltm_se", "z", "flagged"]]


def transfer_profiles(m: pd.DataFrame) -> np.ndarray:
    """Each language's profile: its off-diagonal row (as target) then its column (as donor); the
    diagonal and the cells that are not finite (NaN, or infinite where a row's denominator is zero) are
    filled with the mean of the finite off-diagonal cells."""
    langs, a = _square(m)
    a = a.copy()
    off = ~np.eye(len(langs), dtype=bool)
    finite = off & np.isfinite(a)
    fill = float(a[finite].mean()) if finite.any() else 0.0
    a[~finite] = fill
    return np.hstack([a, a.T])


def linkage_matrix(m: pd.DataFrame, method: str = "average"):
    """Hierarchical clustering (scipy, Euclidean distance between transfer profiles)."""
    from scipy.cluster.hierarchy import linkage

    profiles = transfer_profiles(m)
    if len(profiles) < 2:
        raise ValueError("clustering needs at least two languages")
    return linkage(profiles, method=method, metric="euclidean")


def cluster_order(m: pd.DataFrame, method: str = "average") -> list[str]:
    """Languages in dendrogram leaf order."""
    from scipy.cluster.hierarchy import leaves_list

    langs = [str(x) for x in m.index]
    if len(langs) < 2:
        return langs
    return [langs[i] for i in leaves_list(linkage_matrix(m, method))]


# ------------------------------------------------------------------ seeds and N


def seed_plan(cells: pd.DataFrame, baselines: pd.DataFrame, target_se: float, *, seeds_now: int | None = None,
              min_seeds: int = 2) -> pd.DataFrame:
    """How many seeds each target needs for a cell SE of `target_se`, from the observed seed spread.

    The delta-method SE of a cell with n seeds in each of the three conditions is sqrt(V / n) with
    V = sd_B^2/den^2 + sd_D^2 num^2/den^4 + sd_A^2 (num - den)^2/den^4 (num = B - A, den = D - A),
    so n = ceil(V / target_se^2). `cells` and `baselines` are the assembled tables (`cells.csv`,
    `baselines.csv`). Per target: seeds for its median cell and for its worst cell; NaN (with a note)
    where the row's denominator is zero or the spreads are unknown (fewer than two seeds).
    """
    if target_se <= 0:
        raise ValueError("the wanted cell SE must be positive")
    base = baselines.copy()
    if "target" in base.columns:
        base = base.set_index("target")
    rows = []
    for target, row in base.iterrows():
        a, d = row["perf_single"], row["perf_dual"]
        sd_a = row["perf_single_se"] * math.sqrt(row["n_single"])
        sd_d = row["perf_dual_se"] * math.sqrt(row["n_dual"])
        c = cells[(cells["target"].astype(str) == str(target)) & (cells["donor"].astype(str) != str(target))]
        sd_b = c["perf_bilingual_se"].to_numpy(dtype=float) * np.sqrt(c["n_bilingual"].to_numpy(dtype=float))
        num, den = c["perf_bilingual"].to_numpy(dtype=float) - a, d - a
        with np.errstate(divide="ignore", invalid="ignore"):
            v = sd_b**2 / den**2 + sd_d**2 * num**2 / den**4 + sd_a**2 * (num - den) ** 2 / den**4
            need = np.ceil(v / target_se**2 - 1e-9)  # an exact fit needs no extra seed for rounding
        need = need[np.isfinite(need)]
        note = ""
        if not np.isfinite(den) or den == 0:
            note = "denominator is zero: no number of seeds gives a finite SE"
        elif need.size == 0:
            note = "seed spread unknown (fewer than two seeds)"
        med = int(max(min_seeds, np.ceil(np.median(need)))) if need.size else None
        worst = int(max(min_seeds, need.max())) if need.size else None
        rows.append({"target": str(target), "seeds_now": seeds_now if seeds_now is not None else int(row["n_single"]),
                     "wanted_cell_se": target_se, "seeds_median_cell": med, "seeds_worst_cell": worst,
                     "flagged": bool(row.get("flagged", False)), "note": note})
    out = pd.DataFrame(rows)
    for col in ("seeds_median_cell", "seeds_worst_cell"):
        out[col] = out[col].astype("Int64")  # whole seeds; <NA> where no number of seeds will do
    return out


def learning_curve_table(runs: pd.DataFrame, flag_z: float = 2.0) -> pd.DataFrame:
    """Per target and rung n: Perf(n) (`single` at size n), Perf(2n) (`dual` at size n), the denominator
    Perf(2n) - Perf(n), its SE (independent seed means) and whether it clears `flag_z` SEs.
    `runs` has columns target, size, condition (single | dual), seed, value."""
    need = {"target", "size", "condition", "value"}
    if not need <= set(runs.columns):
        raise ValueError(f"learning-curve runs lack columns {sorted(need - set(runs.columns))}")
    g = runs.groupby(["target", "size", "condition"])["value"]
    stats = g.agg(["mean", "count", lambda x: x.std(ddof=1)]).reset_index()
    stats.columns = ["target", "size", "condition", "mean", "n", "sd"]
    wide = stats.pivot_table(index=["target", "size"], columns="condition", values=["mean", "n", "sd"], dropna=False)
    rows = []
    for (target, size), r in wide.iterrows():
        a, d = r.get(("mean", "single"), np.nan), r.get(("mean", "dual"), np.nan)
        na, nd = r.get(("n", "single"), 0), r.get(("n", "dual"), 0)
        se_a = r.get(("sd", "single"), np.nan) / math.sqrt(na) if na and na > 1 else np.nan
        se_d = r.get(("sd", "dual"), np.nan) / math.sqrt(nd) if nd and nd > 1 else np.nan
        den, se = d - a, math.sqrt(se_a**2 + se_d**2)
        rows.append({"target": target, "size": int(size), "perf_single": a, "perf_single_se": se_a,
                     "perf_dual": d, "perf_dual_se": se_d, "n_single": int(na or 0), "n_dual": int(nd or 0),
                     "denominator": den, "denominator_se": se,
                     "clears": bool(np.isfinite(se) and den > flag_z * se)})
    return pd.DataFrame(rows).sort_values(["target", "size"]).reset_index(drop=True)


def recommend_n(curve: pd.DataFrame) -> dict:
    """The rungs at which every target's denominator clears, and the largest of them (the design point:
    the most target data at which doubling it still gives a reliable gain). None when no rung clears."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ok = curve.groupby("size")["clears"].all()
    clearing = [int(s) for s, v in ok.items() if v]
    failing = {int(s): sorted(curve.loc[(curve["size"] == s) & ~curve["clears"], "target"].astype(str))
               for s, v in ok.items() if not v}
    return {"every_target_clears": clearing, "recommended_n": max(clearing) if clearing else None,
            "targets_failing": failing}


# ------------------------------------------------------------------ what the workflow asks (analysis.smk)

ANALYSIS_TABLES = ["languages.tsv", "family_means.csv", "typology.csv", "distances.csv", "top_pairs.csv",
                   "seed_plan.csv"]
ANALYSIS_FIGURES = ["typology", "language_map"]


def task_info(config: dict, task: str) -> list[dict]:
    """Code, name, family and genus of a task's languages (config `analysis.languages_info` wins)."""
    from cltm.config import task_languages
    from cltm.families import language_table

    table = language_table(task_languages(config, task), analysis_settings(config)["languages_info"])
    return table.reset_index().to_dict(orient="records")


def task_families(config: dict, task: str) -> dict:
    return {r["code"]: r["family"] for r in task_info(config, task)}


def task_labels(config: dict, task: str) -> dict:
    """Axis labels "Name (code)" when `analysis.language_names` is true, else none (the codes are shown)."""
    if not analysis_settings(config)["language_names"]:
        return {}
    return {r["code"]: f"{r['name']} ({r['code']})" for r in task_info(config, task)}


def analysis_targets(config: dict) -> list[str]:
    tasks = list(config["tasks"])
    return ([f"results/{t}/analysis/{name}" for t in tasks for name in ANALYSIS_TABLES]
            + [f"results/{t}/analysis/{fig}.{ext}" for t in tasks for fig in ANALYSIS_FIGURES
               for ext in ("png", "svg")])


def learning_curve_runs(config: dict, task: str) -> dict:
    """{run JSON: rung size} for every target x rung x single/dual x learning-curve seed. The rung n = N
    is the ordinary grid's single and dual: its runs are reused for the seeds the grid has."""
    from cltm.config import task_languages
    from cltm.runs import DUAL, SINGLE, run_path

    n, seeds = task_size(config, task), list(config["seeds"])
    out = {}
    for target in task_languages(config, task):
        for size in ladder_sizes(config, task):
            for condition in (SINGLE, DUAL):
                for seed in analysis_settings(config)["learning_curve"]["seeds"]:
                    if size == n and seed in seeds:
                        path = run_path(task, target, condition, seed)  # the grid's own run
                    else:
                        path = f"results/{task}/learning_curve/runs/{target}/n{size}/{condition}/seed{seed}.json"
                    out[path] = size
    return out
