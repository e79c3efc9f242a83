"""Reading a CLTM against language families and typology: family positive mass and family means, Mantel
tests against URIEL+ distances, a language map (clustering of transfer profiles) and the top pairs.

All functions take plain DataFrames (the matrix with targets as rows and donors as columns, its
standard errors, a family table from `cltm.analysis.families.language_table`) so that each can be
checked by hand on a small matrix. Off-diagonal cells only, unless said otherwise; NaN cells are left
out; flagged rows are kept (and marked where a table has room for it).
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import pandas as pd


def _square(m: pd.DataFrame) -> tuple[list[str], np.ndarray]:
    langs = [str(x) for x in m.index]
    if list(map(str, m.columns)) != langs:
        raise ValueError("the matrix must have the same languages, in the same order, as rows and columns")
    return langs, m.to_numpy(dtype=float)


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
    """The `summary.json` fields on families (the strengths are in `cltm.analysis.matrix.matrix_summary`)."""
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
