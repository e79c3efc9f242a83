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
import warnings

import numpy as np
import pandas as pd


def _square(m: pd.DataFrame) -> tuple[list[str], np.ndarray]:
    langs = [str(x) for x in m.index]
    if list(map(str, m.columns)) != langs:
        raise ValueError("the matrix must have the same languages, in the same order, as rows and columns")
    return langs, m.to_numpy(dtype=float)


ALL_FLAGGED = "not computed: every row flagged"


def _families(langs, families: pd.Series) -> np.ndarray:
    return families.reindex(langs).fillna("unknown").to_numpy()


def _same_family(fam: np.ndarray) -> np.ndarray:
    """[n, n]: both languages in one family of two or more members (never `unknown`)."""
    sizes = pd.Series(fam).value_counts()
    shared = np.isin(fam, sizes[sizes >= 2].index) & (fam != "unknown")
    return (fam[:, None] == fam[None, :]) & shared[:, None]


def _mass(pos: np.ndarray, keep: np.ndarray, same: np.ndarray) -> float:
    total = pos[keep].sum()
    return float(pos[keep & same].sum() / total) if total > 0 else float("nan")


def family_positive_mass(m: pd.DataFrame, families: pd.Series, flagged=()) -> float:
    """Share of the off-diagonal positive mass that falls within families (the reference's measure):
    sum over families with at least two members of the in-family off-diagonal positive part, over the
    total off-diagonal positive part, rows of `flagged` targets left out (one exploding cell in a flagged
    row would decide it). NaN when there is no positive mass."""
    langs, a = _square(m)
    n = len(langs)
    pos = np.clip(np.nan_to_num(a, nan=0.0, posinf=0.0, neginf=0.0), 0.0, None)
    keep = ~np.eye(n, dtype=bool) & ~np.isin(langs, [str(x) for x in flagged])[:, None]
    return _mass(pos, keep, _same_family(_families(langs, families)))


def family_mass_test(m: pd.DataFrame, families: pd.Series, flagged=(), *, permutations: int = 9999,
                     seed: int = 0, exact_max: int = 40320) -> dict:
    """The family positive mass beside what chance gives: `chance` is the share of the (kept) ordered
    off-diagonal pairs that are within a family (1/6 on the demo's four languages in three families), the
    mass a matrix with no family structure has in expectation; `ratio` = mass / chance; `p_value` the
    share of relabellings (family labels permuted over the languages: every one where n! <= exact_max, else
    `permutations` random ones, p = (1 + k) / (1 + P)) whose mass is at least the observed one. Flagged rows
    are left out; with every row flagged nothing is computed."""
    langs, a = _square(m)
    n = len(langs)
    flagged = {str(x) for x in flagged}
    if n and all(x in flagged for x in langs):
        return {"family_positive_mass": None, "note": ALL_FLAGGED}
    fam = _families(langs, families)
    pos = np.clip(np.nan_to_num(a, nan=0.0, posinf=0.0, neginf=0.0), 0.0, None)
    keep = ~np.eye(n, dtype=bool) & ~np.isin(langs, list(flagged))[:, None]
    same = _same_family(fam)
    observed = _mass(pos, keep, same)
    chance = float((keep & same).sum() / keep.sum()) if keep.sum() else float("nan")
    out = {"family_positive_mass": observed, "chance": chance,
           "ratio_to_chance": observed / chance if chance > 0 and np.isfinite(observed) else float("nan"),
           "rows_left_out": sorted(flagged & set(langs)), "note": ""}
    if not np.isfinite(observed) or chance == 0:
        return {**out, "p_value": float("nan"), "permutations": 0, "exact": False}
    exact = math.factorial(n) <= exact_max
    if exact:
        labellings = {tuple(fam[list(p)]) for p in itertools.permutations(range(n))}
        perms = [np.array(x) for x in labellings]
        null = np.array([_mass(pos, keep, _same_family(f)) for f in perms])
        k = int((null >= observed - 1e-12).sum())
        p = k / len(null)
    else:
        rng = np.random.default_rng(seed)
        null = np.array([_mass(pos, keep, _same_family(rng.permutation(fam))) for _ in range(permutations)])
        k = int((null >= observed - 1e-12).sum())
        p = (1 + k) / (1 + len(null))
    return {**out, "p_value": float(p), "permutations": int(len(null)), "exact": bool(exact)}


def _mean_se(values: np.ndarray) -> tuple[float, float, int]:
    v = values[np.isfinite(values)]
    if v.size == 0:
        return float("nan"), float("nan"), 0
    se = float(v.std(ddof=1) / math.sqrt(v.size)) if v.size > 1 else float("nan")
    return float(v.mean()), se, int(v.size)


def family_means(m: pd.DataFrame, families: pd.Series) -> pd.DataFrame:
    """Per family: mean in-family and mean cross-family CLTM. The unit is the target language (the cells
    of one row share its single and dual runs, so they are not independent): each target of the family
    gives its mean over in-family donors and over donors of other families, and the family's mean and SE
    are taken over its targets (sd / sqrt(targets); NaN, i.e. n/a, with one target). Columns family,
    n_languages, in_family_mean, in_family_se, in_family_targets, cross_family_mean, cross_family_se,
    cross_family_targets."""
    langs, a = _square(m)
    fam = _families(langs, families)
    n = len(langs)
    rows = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # a row without a finite cell of a kind: NaN
        for f in dict.fromkeys(fam):
            ins, cross = [], []
            for i in np.flatnonzero(fam == f):
                row = np.where(np.isfinite(a[i]), a[i], np.nan)
                same = (fam == f) & (np.arange(n) != i)
                if same.any():
                    ins.append(np.nanmean(row[same]))
                if (fam != f).any():
                    cross.append(np.nanmean(row[fam != f]))
            im, ise, ic = _mean_se(np.array(ins, dtype=float))
            cm, cse, cc = _mean_se(np.array(cross, dtype=float))
            rows.append({"family": f, "n_languages": int((fam == f).sum()), "in_family_mean": im,
                         "in_family_se": ise, "in_family_targets": ic, "cross_family_mean": cm,
                         "cross_family_se": cse, "cross_family_targets": cc})
    return pd.DataFrame(rows)


def family_summary(m: pd.DataFrame, families: pd.Series, flagged=()) -> dict:
    """The `summary.json` fields on families (the strengths are in `cltm.analysis.matrix.matrix_summary`):
    the family positive mass with its chance baseline and permutation p-value (flagged rows left out),
    and the per-family means over targets. With every row flagged: "not computed"."""
    langs = [str(x) for x in m.index]
    families_of = {str(k): str(v) for k, v in families.reindex(m.index).fillna("unknown").items()}
    if langs and all(x in {str(f) for f in flagged} for x in langs):
        return {"family_positive_mass": ALL_FLAGGED, "families": families_of, "family_means": ALL_FLAGGED}
    means = family_means(m, families)

    def plain(v):  # JSON has no NaN: an undefined mean (a one-language family) is null
        if isinstance(v, (float, np.floating)):
            return None if not np.isfinite(v) else float(v)
        return int(v) if isinstance(v, (np.integer,)) else v

    test = family_mass_test(m, families, flagged)
    return {
        "family_positive_mass": plain(test["family_positive_mass"]),
        "family_positive_mass_test": {k: (plain(v) if not isinstance(v, list) else v) for k, v in test.items()},
        "families": families_of,
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
    # the smallest p the design can reach: ties in the distances (the demo's genetic distances have few
    # values) make many permutations give the most extreme statistic, so even a perfect match cannot go
    # below their share
    if exact:
        ext = {"less": null.min(), "greater": null.max(), "two-sided": np.abs(null).max()}[alternative]
        hit = {"less": null <= ext + tol, "greater": null >= ext - tol,
               "two-sided": np.abs(null) >= ext - tol}[alternative]
        min_p = float(hit.sum() / null.size)
    else:
        min_p = 1 / (1 + null.size)
    return {**out, "p_value": float(p), "min_p": min_p, "permutations": int(count), "exact": bool(exact)}


def double_centred(m: np.ndarray, iterations: int = 50) -> np.ndarray:
    """The off-diagonal cells with row and column effects removed: m_ij - r_i - c_j - g, fitted additively
    on the finite off-diagonal cells (alternating means; the diagonal is left out). A language that is a
    weak donor and a weak recipient moves every cell of its row and column; here it no longer does."""
    m = np.asarray(m, dtype=float)
    n = m.shape[0]
    ok = ~np.eye(n, dtype=bool) & np.isfinite(m)
    res = np.where(ok, m, np.nan)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # a row or column without a finite cell
        res = res - np.nanmean(res)
        for _ in range(iterations):
            r = np.nan_to_num(np.nanmean(res, axis=1))
            res = res - r[:, None]
            c = np.nan_to_num(np.nanmean(res, axis=0))
            res = res - c[None, :]
            if np.nanmax(np.abs(r)) < 1e-12 and np.nanmax(np.abs(c)) < 1e-12:
                break
    return np.where(ok, res, np.nan)


def holm(p_values) -> np.ndarray:
    """Holm's step-down adjustment of a family of p-values (NaN left out and kept NaN)."""
    p = np.asarray(p_values, dtype=float)
    out = np.full(p.shape, np.nan)
    idx = np.flatnonzero(np.isfinite(p))
    order = idx[np.argsort(p[idx], kind="stable")]
    k = len(order)
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (k - rank) * p[i]))
        out[i] = running
    return out


MATRIX_PARTS = ("raw", "symmetric", "double_centred")


def typology_table(m: pd.DataFrame, distances: dict[str, pd.DataFrame], *, permutations: int = 9999,
                   seed: int = 0, alternative: str = "less", flagged=()) -> pd.DataFrame:
    """One row per distance type and matrix part: `raw` (ordered pairs), `symmetric` ((M + M^T)/2,
    unordered pairs) and `double_centred` (row and column effects removed, `double_centred`): Spearman's
    rho, the Mantel p-value, the smallest p-value the design can reach (`min_p`), Holm's adjustment over
    every row of the table (`p_holm`: the family of tests of this task; docs/statistics.md), the pairs used
    and the languages without that distance (their pairs skipped). With every row flagged: one row saying
    so (no numbers that look like findings)."""
    langs, a = _square(m)
    if langs and all(x in {str(f) for f in flagged} for x in langs):
        return pd.DataFrame([{"distance": "", "matrix": "", "rho": float("nan"), "p_value": float("nan"),
                              "note": ALL_FLAGGED}])
    rows = []
    for kind, dist in distances.items():
        dd = dist.reindex(index=langs, columns=langs).to_numpy(dtype=float)
        off = ~np.eye(len(langs), dtype=bool)
        missing_pairs = [(langs[i], langs[j]) for i, j in zip(*np.nonzero(off & ~np.isfinite(dd))) if i < j]
        lacking = sorted({x for pair in missing_pairs for x in pair
                          if sum(x in p for p in missing_pairs) == len(langs) - 1})
        for part in MATRIX_PARTS:
            mat = double_centred(a) if part == "double_centred" else a
            res = mantel_test(mat, dd, permutations=permutations, seed=seed, symmetric=part == "symmetric",
                              alternative=alternative)
            rows.append({"distance": kind, "matrix": part, "rho": res["rho"], "p_value": res["p_value"],
                         "min_p": res.get("min_p", float("nan")), "alternative": alternative, "exact": res["exact"],
                         "permutations": res["permutations"], "n_pairs": res["n_pairs"],
                         "languages_missing": " ".join(lacking),
                         "pairs_missing": " ".join(f"{x}-{y}" for x, y in missing_pairs), "note": ""})
    table = pd.DataFrame(rows)
    table.insert(table.columns.get_loc("min_p") + 1, "p_holm", holm(table["p_value"]))
    return table


def top_pairs(m: pd.DataFrame, se: pd.DataFrame, flagged=(), k: int = 5, ci_low: pd.DataFrame | None = None,
              ci_high: pd.DataFrame | None = None) -> pd.DataFrame:
    """The k strongest positive and k strongest negative off-diagonal cells (target <- donor), with SE,
    z = value / SE, the cell's interval and whether the target row is flagged. Ranked by the end of the
    interval nearer zero (positives by `ci_low`, negatives by `ci_high`) where intervals are given: a cell
    whose interval is wide (an exploding cell of a shaky row) does not top the list on its point estimate.
    A positive list holds only cells > 0 (a negative one: < 0), so it may be shorter than k; `sign_certain`
    says whether the interval excludes 0. Without intervals, the point estimates rank. With every row
    flagged: no pairs, a note."""
    langs, a = _square(m)
    flagged = {str(x) for x in flagged}
    columns = ["sign", "rank", "target", "donor", "cltm", "cltm_se", "ci_low", "ci_high", "sign_certain", "z", "flagged",
               "note"]
    if langs and all(x in flagged for x in langs):
        return pd.DataFrame([{c: (ALL_FLAGGED if c == "note" else None) for c in columns}])
    s_ = se.reindex(index=langs, columns=langs).to_numpy(dtype=float)
    lo = (ci_low.reindex(index=langs, columns=langs).to_numpy(dtype=float) if ci_low is not None else a)
    hi = (ci_high.reindex(index=langs, columns=langs).to_numpy(dtype=float) if ci_high is not None else a)
    cells = [(langs[i], langs[j], a[i, j], s_[i, j], lo[i, j], hi[i, j]) for i in range(len(langs))
             for j in range(len(langs)) if i != j and np.isfinite(a[i, j])]
    df = pd.DataFrame(cells, columns=["target", "donor", "cltm", "cltm_se", "ci_low", "ci_high"])
    with np.errstate(divide="ignore", invalid="ignore"):
        df["z"] = df["cltm"] / df["cltm_se"]
    df["sign_certain"] = (df["ci_low"] > 0) | (df["ci_high"] < 0)
    df["flagged"] = df["target"].isin(flagged)
    df["note"] = ""
    pos = df[df["cltm"] > 0].sort_values(["ci_low", "cltm"], ascending=False).head(k).assign(sign="positive")
    neg = df[df["cltm"] < 0].sort_values(["ci_high", "cltm"], ascending=True).head(k).assign(sign="negative")
    out = pd.concat([pos, neg], ignore_index=True)
    out.insert(0, "rank", list(range(1, len(pos) + 1)) + list(range(1, len(neg) + 1)))
    return out[columns]


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


def partition(m: np.ndarray, langs: list[str], method: str = "average", k: int = 2) -> frozenset:
    """The k-cluster partition of the dendrogram of a matrix (as a set of frozensets of languages)."""
    from scipy.cluster.hierarchy import fcluster

    labels = fcluster(linkage_matrix(pd.DataFrame(m, index=langs, columns=langs), method), k, criterion="maxclust")
    return frozenset(frozenset(x for x, lab in zip(langs, labels) if lab == c) for c in set(labels))


def map_stability(m: pd.DataFrame, draws: np.ndarray, method: str = "average", k: int = 2) -> dict:
    """How stable the language map is: the share of bootstrap matrices (`draws`, [B, n, n], seeds resampled:
    `cltm.analysis.statistics.bootstrap_matrices`) whose dendrogram splits the languages into the same k
    groups as the matrix itself. Below 0.5 the map is called unstable: its groups are not to be read."""
    langs = [str(x) for x in m.index]
    if len(langs) <= k:
        return {"groups": None, "share_same_groups": None, "draws": 0, "stable": None,
                "note": f"{len(langs)} languages: no grouping into {k} to test"}
    observed = partition(m.to_numpy(dtype=float), langs, method, k)
    same = [partition(d, langs, method, k) == observed for d in draws]
    share = float(np.mean(same)) if same else float("nan")
    stable = bool(share >= 0.5)
    return {"groups": sorted(sorted(g) for g in observed), "share_same_groups": share, "draws": int(len(draws)),
            "stable": stable, "note": "" if stable else "unstable: fewer than half of the resampled matrices give "
                                                           "these groups; do not read the map's groups"}
