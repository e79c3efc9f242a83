"""The known answer: a transfer effect planted in the synthetic demo corpus, and how well a task's CLTM
recovers it (docs/statistics.md, "The known answer (planted transfer)").

The demo corpus can label each clip by a rule whose direction differs per language (an angle; the
plant, `corpus.demo.plant`). Two languages whose rules are d degrees apart should transfer about
cos(d): donors with a near rule help (> 0), donors with an opposite rule hurt (< 0). The corpus side
writes what it planted to `results/demo_corpus/plant.json` (`cltm.paths.PLANT`, the contract in the
issue); this module reads that file and the planted task's matrix, and says whether the matrix
recovered the plant:

- `read_plant(path)`: the plant file, checked for the fields read here. This small reader lives here
  (and not in `cltm.demo`, above the analysis layer) so that the analysis depends on the file's
  contract only, not on the code that wrote it.
- `pair_table(...)`: one row per off-diagonal cell: layout and planted distance, expected sign and CLTM,
  the measured CLTM with its SE and Fieller interval, the row's flag, whether the signs agree.
- `recovery_summary(pairs)`: Spearman's rho and the exact Mantel test against the layout distance, sign
  agreement beside its chance level, the adjacent and opposite cells, the flagged rows.
- `donor_spread(cells)`, `pooled_spread(rows)`: per target row, the one-way F of its donor cells against
  their seed SEs (how much spread between donors the seeds do not explain), and over all rows.
- `verdict(summary, thresholds, null=...)`: pass/fail lines against `analysis.known_answer`.
- `plot_known_answer(...)`: the figure.

Pure functions of DataFrames and dicts; NaN cells are left out where a statistic cannot use them.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.lines import Line2D
from scipy import stats

from cltm.analysis.figures import FLAG_MARK, add_footnote, new_figure, wrap_title
from cltm.analysis.typology import mantel_test
from cltm.errors import CltmError, ConfigError
from cltm.io import read_json

__all__ = ["PlantFileError", "read_plant", "pair_table", "distance_matrix", "sign_agreement", "one_way_f",
           "donor_spread", "pooled_spread", "recovery_summary", "check_thresholds", "verdict",
           "plot_known_answer", "known_answer", "PAIR_COLUMNS"]

# what the analysis reads of each pair of plant.json (the contract: /work/plan/plant-contract.md, issue 19)
PAIR_KEYS = ("target", "donor", "distance_deg", "planted_distance_deg", "expected_cltm", "expected_sign")
PAIR_COLUMNS = ("target", "donor", "distance_deg", "planted_distance_deg", "expected_sign", "expected_cltm",
                "cltm", "cltm_se", "cltm_ci_low", "cltm_ci_high", "target_flagged", "measured_sign",
                "sign_agrees", "adjacent", "opposite")
TOL = 1e-9  # degrees: distances equal up to float noise are one distance


class PlantFileError(CltmError):
    """plant.json is missing, damaged, or does not describe the planted task's languages."""


# ------------------------------------------------------------------------------------------ the plant file


def read_plant(path: str | Path) -> dict:
    """The plant file (`results/demo_corpus/plant.json`) as a dict, checked for what the analysis reads:
    `synthetic`, `label_column`, `null`, `languages` and `pairs` (each with PAIR_KEYS). The file is the
    corpus side's (`cltm.demo.plant` writes it); a damaged or old one is named with what to do."""
    path = Path(path)
    redo = (f"; the demo corpus's rule writes it (corpus.demo.plant): run `snakemake -f {path}` with your "
            f"config, or remove it and run snakemake again")
    if not path.is_file():
        raise PlantFileError(f"{path} does not exist{redo}")
    try:
        plant = read_json(path)
    except ValueError as err:
        raise PlantFileError(f"{path} is not valid JSON ({err}){redo}") from None
    if not isinstance(plant, dict):
        raise PlantFileError(f"{path} must hold a JSON object{redo}")
    missing = [k for k in ("synthetic", "label_column", "null", "languages", "pairs") if k not in plant]
    if missing:
        raise PlantFileError(f"{path} lacks the key(s) {missing}{redo}")
    if not isinstance(plant["pairs"], list) or not plant["pairs"]:
        raise PlantFileError(f"{path}: 'pairs' must be a non-empty list of ordered language pairs{redo}")
    for k, pair in enumerate(plant["pairs"]):
        lacking = [key for key in PAIR_KEYS if not isinstance(pair, dict) or key not in pair]
        if lacking:
            raise PlantFileError(f"{path}: pairs[{k}] lacks {lacking}{redo}")
    return plant


def _pairs_frame(plant: dict) -> pd.DataFrame:
    frame = pd.DataFrame([{k: p[k] for k in PAIR_KEYS} for p in plant["pairs"]])
    frame["target"], frame["donor"] = frame["target"].astype(str), frame["donor"].astype(str)
    return frame.set_index(["target", "donor"])


# ------------------------------------------------------------------------------------------ the pair table


def _square(frame: pd.DataFrame, langs: list[str], name: str) -> pd.DataFrame:
    frame = frame.copy()
    frame.index, frame.columns = frame.index.astype(str), frame.columns.astype(str)
    lacking = [x for x in langs if x not in frame.index or x not in frame.columns]
    if lacking:
        raise ValueError(f"{name} lacks the language(s) {lacking} of the matrix")
    return frame.loc[langs, langs].astype(float)


def pair_table(plant: dict, cltm: pd.DataFrame, se: pd.DataFrame, ci_low: pd.DataFrame, ci_high: pd.DataFrame,
               flagged=()) -> pd.DataFrame:
    """One row per off-diagonal cell (target, donor) of the planted task's matrix, in the matrix's order:
    PAIR_COLUMNS. `distance_deg` is the layout distance (what the Mantel test is run against),
    `planted_distance_deg` the distance of the rules the labels were made with (0 under the null
    control), `expected_sign` and `expected_cltm` = cos(planted distance) as the plant file gives them.
    `measured_sign` is the sign of the measured CLTM (0 for NaN); `sign_agrees` is NaN where the expected
    sign is 0 or the cell is NaN. `adjacent`: the smallest non-zero layout distance; `opposite`: expected
    sign -1. A cell whose pair the plant file lacks is an error (the task's languages must be planted)."""
    langs = [str(x) for x in cltm.index]
    m, s = _square(cltm, langs, "cltm"), _square(se, langs, "cltm_se")
    lo, hi = _square(ci_low, langs, "cltm_ci_low"), _square(ci_high, langs, "cltm_ci_high")
    plant_pairs = _pairs_frame(plant)
    absent = [(i, j) for i in langs for j in langs if i != j and (i, j) not in plant_pairs.index]
    if absent:
        planted = sorted(set(plant_pairs.index.get_level_values(0)) | set(plant_pairs.index.get_level_values(1)))
        raise PlantFileError(
            f"the plant file has no pair for {len(absent)} cell(s) of the matrix, e.g. {absent[0][0]} <- "
            f"{absent[0][1]}: the planted languages are {planted}. Give the planted task (tasks.<task>.languages) "
            f"only languages of corpus.demo.plant.angles, or add them to the angles")
    flagged = {str(x) for x in flagged}
    rows = []
    for i in langs:
        for j in langs:
            if i == j:
                continue
            p = plant_pairs.loc[(i, j)]
            value = float(m.loc[i, j])
            measured = 0 if not np.isfinite(value) else int(np.sign(value))
            expected = int(p["expected_sign"])
            agrees = (float("nan") if expected == 0 or not np.isfinite(value) or value == 0
                      else float(measured == expected))
            rows.append({"target": i, "donor": j, "distance_deg": float(p["distance_deg"]),
                         "planted_distance_deg": float(p["planted_distance_deg"]), "expected_sign": expected,
                         "expected_cltm": float(p["expected_cltm"]), "cltm": value, "cltm_se": float(s.loc[i, j]),
                         "cltm_ci_low": float(lo.loc[i, j]), "cltm_ci_high": float(hi.loc[i, j]),
                         "target_flagged": i in flagged, "measured_sign": measured, "sign_agrees": agrees})
    table = pd.DataFrame(rows, columns=[c for c in PAIR_COLUMNS if c not in ("adjacent", "opposite")])
    positive = table["distance_deg"][table["distance_deg"] > TOL]
    nearest = positive.min() if len(positive) else float("nan")
    table["adjacent"] = np.isfinite(nearest) & (np.abs(table["distance_deg"] - nearest) <= TOL)
    table["opposite"] = table["expected_sign"] == -1
    return table[list(PAIR_COLUMNS)]


def distance_matrix(pairs: pd.DataFrame, languages, column: str = "distance_deg") -> np.ndarray:
    """[n, n] of `column` from the pair table (0 on the diagonal, NaN where a pair is absent)."""
    langs = [str(x) for x in languages]
    wide = pairs.pivot(index="target", columns="donor", values=column).reindex(index=langs, columns=langs)
    out = wide.to_numpy(dtype=float, copy=True)
    np.fill_diagonal(out, 0.0)
    return out


# ------------------------------------------------------------------------------------------ statistics


def sign_agreement(pairs: pd.DataFrame) -> dict:
    """The share of cells whose measured sign is the expected one, over the cells with a non-zero expected
    sign and a finite, non-zero measured CLTM; its chance level p_meas+ p_exp+ + p_meas- p_exp- (signs
    independent with the same marginals); and the one-sided p of the observed agreement under that
    independence: the measured signs permuted over the cells, which makes the count of (+, +) cells
    hypergeometric (Fisher's exact test). The cells of one row share their runs, so they are not quite
    exchangeable: read this p as a guide, the Mantel test (which permutes languages) as the test."""
    ok = (pairs["expected_sign"] != 0) & np.isfinite(pairs["cltm"]) & (pairs["cltm"] != 0)
    cells = int(ok.sum())
    if cells == 0:
        return {"share": float("nan"), "chance": float("nan"), "p_value": float("nan"), "cells": 0, "agree": 0}
    exp_pos = (pairs.loc[ok, "expected_sign"] > 0).to_numpy()
    meas_pos = (pairs.loc[ok, "cltm"] > 0).to_numpy()
    agree = int((exp_pos == meas_pos).sum())
    p_exp, p_meas = exp_pos.mean(), meas_pos.mean()
    chance = float(p_meas * p_exp + (1 - p_meas) * (1 - p_exp))
    # agreement = 2 X + N - a - b with X = #(+, +), a = #expected +, b = #measured +: monotone in X
    a, b, x = int(exp_pos.sum()), int(meas_pos.sum()), int((exp_pos & meas_pos).sum())
    p = float(stats.hypergeom.sf(x - 1, cells, a, b))
    return {"share": agree / cells, "chance": chance, "p_value": p, "cells": cells, "agree": agree,
            "expected_positive": a, "measured_positive": b}


def one_way_f(means, ses, n) -> dict:
    """The one-way F of k group means against their standard errors, each from n_j seeds:

        F = [sum_j n_j (m_j - m_w)^2 / (k - 1)] / [sum_j (n_j - 1) n_j se_j^2 / sum_j (n_j - 1)],

    m_w the n-weighted mean; with equal n it is var(m, ddof=1) / mean(se^2). It is the classical one-way
    ANOVA F of the seeds' values (n_j se_j^2 is group j's seed variance), so under "all groups equal,
    normal, equal seed variances, independent seeds" it follows F(k - 1, sum_j (n_j - 1)), whose mean is
    df2 / (df2 - 2), about 1. `n=None`: the SEs are known (not estimated), reference F(k - 1, inf) =
    chi2(k - 1) / (k - 1). Returns f, df_between, df_within (inf when known), p_value (upper tail),
    expected_under_null, groups."""
    m, s = np.asarray(means, dtype=float), np.asarray(ses, dtype=float)
    known = n is None
    w = np.ones_like(m) if known else np.broadcast_to(np.asarray(n, dtype=float), m.shape).copy()
    ok = np.isfinite(m) & np.isfinite(s) & (s > 0)
    if not known:
        ok &= np.isfinite(w) & (w >= 2)
    m, s, w = m[ok], s[ok], w[ok]
    k = int(m.size)
    out = {"f": float("nan"), "df_between": k - 1, "df_within": float("nan"), "p_value": float("nan"),
           "expected_under_null": float("nan"), "groups": k}
    if k < 2:
        return out
    mw = float((w * m).sum() / w.sum())
    between = float((w * (m - mw) ** 2).sum() / (k - 1))
    if known:
        within, df2 = float((s ** 2).mean()), math.inf
        f = between / within
        p = float(stats.chi2.sf(f * (k - 1), k - 1))
        expected = 1.0
    else:
        df2 = float((w - 1).sum())
        within = float(((w - 1) * w * s ** 2).sum() / df2)
        f = between / within
        p = float(stats.f.sf(f, k - 1, df2))
        expected = df2 / (df2 - 2) if df2 > 2 else float("nan")
    return {**out, "f": f, "df_within": df2, "p_value": p, "expected_under_null": expected}


def donor_spread(cells: pd.DataFrame) -> pd.DataFrame:
    """Per target row of a `cells.csv` table: the one-way F (`one_way_f`) of its donor cells' CLTM against
    their donor-part seed SEs, se(B_j) / |Perf(i+i) - Perf(i)|.

    Why not the cell's own SE: the cells of a row share the row's single and dual runs, so the noise of
    those moves every cell of the row together and makes no spread between donors; the cells differ only
    through their bilingual runs B_j: CLTM_j - CLTM_k = (B_j - B_k) / (D - A). The F is therefore the
    one-way ANOVA of the row's bilingual runs, independent of the denominator (a flagged row has one too),
    with reference F(k - 1, sum_j (n_j - 1)). The seeds of a row are shared across donors (seed s draws the
    same head in every condition); a seed effect common to the donors lowers the spread between their
    means but not the seed variance, so with such an effect the F is conservative (below 1 on average).

    Columns: target, donors, f, df_between, df_within, p_value, expected_under_null, flagged."""
    need = {"target", "donor", "cltm", "perf_bilingual_se", "n_bilingual", "denominator"}
    lacking = sorted(need - set(cells.columns))
    if lacking:
        raise ValueError(f"cells table lacks column(s) {lacking} (written by the assemble rule, cells.csv)")
    off = cells[cells["target"].astype(str) != cells["donor"].astype(str)]
    rows = []
    for target, row in off.groupby(off["target"].astype(str), sort=False):
        den = np.abs(row["denominator"].to_numpy(dtype=float))
        with np.errstate(divide="ignore", invalid="ignore"):
            se = row["perf_bilingual_se"].to_numpy(dtype=float) / den
        res = one_way_f(row["cltm"].to_numpy(dtype=float), se, row["n_bilingual"].to_numpy(dtype=float))
        flagged = bool(row["flagged"].astype(str).str.lower().isin(["true", "1"]).any()) if "flagged" in row else False
        rows.append({"target": target, "donors": res["groups"], "f": res["f"], "df_between": res["df_between"],
                     "df_within": res["df_within"], "p_value": res["p_value"],
                     "expected_under_null": res["expected_under_null"], "flagged": flagged})
    return pd.DataFrame(rows, columns=["target", "donors", "f", "df_between", "df_within", "p_value",
                                       "expected_under_null", "flagged"])


def pooled_spread(rows: pd.DataFrame, draws: int = 100_000, seed: int = 0) -> dict:
    """The rows' F pooled: F_pooled = sum_i df1_i F_i / sum_i df1_i over the rows with a finite F, and its
    upper-tail p under the rows' null (independent F(df1_i, df2_i), one per row: the rows share no runs),
    by simulation with `draws` draws (seeded): p = (1 + #{F* >= F}) / (1 + draws). Its mean under that
    null is the df1-weighted mean of df2_i / (df2_i - 2)."""
    ok = rows[np.isfinite(rows["f"].astype(float)) & np.isfinite(rows["df_within"].astype(float))]
    if ok.empty:
        return {"f": float("nan"), "p_value": float("nan"), "rows": 0, "expected_under_null": float("nan"),
                "draws": 0}
    d1, d2 = ok["df_between"].to_numpy(dtype=float), ok["df_within"].to_numpy(dtype=float)
    f = ok["f"].to_numpy(dtype=float)
    observed = float((d1 * f).sum() / d1.sum())
    rng = np.random.default_rng(seed)
    null = sum(d1[r] * stats.f.rvs(d1[r], d2[r], size=draws, random_state=rng) for r in range(len(f))) / d1.sum()
    p = float((1 + (null >= observed).sum()) / (1 + draws))
    with np.errstate(divide="ignore", invalid="ignore"):
        mean = float((d1 * np.where(d2 > 2, d2 / (d2 - 2), np.nan)).sum() / d1.sum())
    return {"f": observed, "p_value": p, "rows": int(len(f)), "expected_under_null": mean, "draws": int(draws),
            "method": "F pooled over rows (df_between-weighted mean), p by simulating each row's F(df1, df2)"}


def recovery_summary(pairs: pd.DataFrame, *, alternative: str = "less") -> dict:
    """What the matrix says about the plant, from the pair table:

    - `spearman_rho`: Spearman's rho between the layout distance and the measured CLTM over the cells;
    - `mantel`: the Mantel test of the matrix against the layout distances (`cltm.analysis.typology.
      mantel_test`: languages permuted, every permutation up to 7 languages, so p is exact; `alternative`
      less: transfer falls with distance), with `min_p`, the smallest p the design can reach;
    - `sign_agreement` (`sign_agreement`);
    - `adjacent`: the cells at the smallest non-zero layout distance, and how many are > 0;
    - `opposite`: the cells with expected sign -1, and how many are < 0 (their share);
    - `flagged_rows`: the targets whose row is flagged."""
    langs = list(dict.fromkeys(pairs["target"].tolist() + pairs["donor"].tolist()))
    m = pairs.pivot(index="target", columns="donor", values="cltm").reindex(index=langs, columns=langs)
    m = m.to_numpy(dtype=float, copy=True)
    np.fill_diagonal(m, 1.0)
    d = distance_matrix(pairs, langs)
    mantel = mantel_test(m, d, alternative=alternative)
    adjacent = pairs[pairs["adjacent"]]
    opposite = pairs[pairs["opposite"]]
    n_opp = int(len(opposite))
    negative = int((opposite["cltm"] < 0).sum())
    flagged = sorted(set(pairs.loc[pairs["target_flagged"].astype(bool), "target"]))
    nearest = float(adjacent["distance_deg"].iloc[0]) if len(adjacent) else float("nan")
    return {
        "languages": langs,
        "cells": int(len(pairs)),
        "cells_not_finite": int((~np.isfinite(pairs["cltm"])).sum()),
        "spearman_rho": mantel["rho"],
        "mantel": {k: mantel.get(k) for k in ("rho", "p_value", "min_p", "permutations", "exact", "alternative",
                                               "n_pairs", "n_languages")},
        "sign_agreement": sign_agreement(pairs),
        "adjacent": {"distance_deg": nearest, "cells": int(len(adjacent)),
                     "positive": int((adjacent["cltm"] > 0).sum()),
                     "share_positive": float((adjacent["cltm"] > 0).mean()) if len(adjacent) else float("nan")},
        "opposite": {"cells": n_opp, "negative": negative,
                     "share_negative": negative / n_opp if n_opp else float("nan")},
        "flagged_rows": flagged,
        "n_flagged_rows": len(flagged),
    }


# ------------------------------------------------------------------------------------------ the verdict


def check_thresholds(thresholds: dict) -> dict:
    """`analysis.known_answer` with its values checked: max_mantel_p in (0, 1], adjacent_positive `all` or
    a share in [0, 1] (the share of adjacent cells that must be > 0), min_opposite_negative in [0, 1) (the
    share of opposite cells < 0 must be strictly above it), max_flagged_rows >= 0."""
    key = "config key 'analysis.known_answer"
    t = dict(thresholds)
    p = t.get("max_mantel_p")
    if not isinstance(p, (int, float)) or isinstance(p, bool) or not 0 < p <= 1:
        raise ConfigError(f"{key}.max_mantel_p': {p!r} must be a number in (0, 1], e.g. 0.01")
    a = t.get("adjacent_positive")
    if a != "all" and (not isinstance(a, (int, float)) or isinstance(a, bool) or not 0 <= a <= 1):
        raise ConfigError(f"{key}.adjacent_positive': {a!r} must be `all` or the share of adjacent cells "
                          f"that must be > 0, a number in [0, 1]")
    o = t.get("min_opposite_negative")
    if not isinstance(o, (int, float)) or isinstance(o, bool) or not 0 <= o < 1:
        raise ConfigError(f"{key}.min_opposite_negative': {o!r} must be a number in [0, 1): the share of "
                          f"opposite cells below 0 must be strictly above it (0.5: a strict majority)")
    f = t.get("max_flagged_rows")
    if not isinstance(f, int) or isinstance(f, bool) or f < 0:
        raise ConfigError(f"{key}.max_flagged_rows': {f!r} must be a whole number >= 0")
    return t


def _line(check: str, passed: bool, text: str, value, threshold) -> dict:
    return {"check": check, "passed": bool(passed), "value": value, "threshold": threshold,
            "text": f"{'PASS' if passed else 'FAIL'}: {text}"}


def verdict(summary: dict, thresholds: dict, *, null: bool) -> dict:
    """Pass/fail lines against `analysis.known_answer` (`check_thresholds`).

    A planted effect (`null` false) passes when all hold: the Mantel p <= max_mantel_p (transfer falls with
    the layout distance); every adjacent cell > 0 (`adjacent_positive: all`, or at least that share); the
    share of opposite cells < 0 is strictly above min_opposite_negative; at most max_flagged_rows rows
    flagged. The null control (`null` true: one rule everywhere, true CLTM 1 in every cell) passes when the
    Mantel test does NOT reject at max_mantel_p and at most max_flagged_rows rows are flagged (a null that
    holds only because the rows are noise would say nothing). Returns passed, null_control, lines."""
    t = check_thresholds(thresholds)
    mantel, lines = summary["mantel"], []
    p = mantel["p_value"]
    p_ok = p is not None and np.isfinite(p)
    p_text = f"{p:.4g}" if p_ok else "n/a"
    exact = "exact, " if mantel.get("exact") else ""
    min_p = mantel.get("min_p")
    reach = f", smallest reachable {min_p:.3g}" if min_p is not None and np.isfinite(min_p) else ""
    if null:
        lines.append(_line("mantel_not_rejected", p_ok and p > t["max_mantel_p"],
                           f"null control: the Mantel test against the layout distance does not reject "
                           f"(p = {p_text}, {exact}{mantel.get('permutations')} permutations; must be > "
                           f"{t['max_mantel_p']:g})", p, t["max_mantel_p"]))
    else:
        lines.append(_line("mantel", p_ok and p <= t["max_mantel_p"],
                           f"transfer falls with the layout distance: Mantel rho = {_num(mantel['rho'])}, p = "
                           f"{p_text} ({exact}{mantel.get('permutations')} permutations{reach}; must be <= "
                           f"{t['max_mantel_p']:g})", p, t["max_mantel_p"]))
        adj = summary["adjacent"]
        need = 1.0 if t["adjacent_positive"] == "all" else float(t["adjacent_positive"])
        share = adj["share_positive"]
        ok = adj["cells"] > 0 and np.isfinite(share) and share >= need - 1e-12
        lines.append(_line("adjacent_positive", ok,
                           f"adjacent cells (layout distance {_num(adj['distance_deg'], 0)} deg) > 0: "
                           f"{adj['positive']} of {adj['cells']} (must be "
                           f"{'all' if t['adjacent_positive'] == 'all' else f'at least {need:.0%}'})",
                           share, t["adjacent_positive"]))
        opp = summary["opposite"]
        share = opp["share_negative"]
        ok = opp["cells"] > 0 and np.isfinite(share) and share > t["min_opposite_negative"]
        lines.append(_line("opposite_negative", ok,
                           f"opposite cells (expected sign -1) < 0: {opp['negative']} of {opp['cells']} "
                           f"({_pct(share)}; must be above {t['min_opposite_negative']:.0%})",
                           share, t["min_opposite_negative"]))
    n_flag = summary["n_flagged_rows"]
    named = f": {', '.join(summary['flagged_rows'])}" if n_flag else ""
    lines.append(_line("flagged_rows", n_flag <= t["max_flagged_rows"],
                       f"{n_flag} flagged row(s){named} (at most {t['max_flagged_rows']})", n_flag,
                       t["max_flagged_rows"]))
    passed = all(line["passed"] for line in lines)
    return {"passed": passed, "null_control": bool(null),
            "headline": ("PASS" if passed else "FAIL") + (" (null control)" if null else ""),
            "lines": lines, "thresholds": t}


def _num(x, digits: int = 2) -> str:
    return "n/a" if x is None or not np.isfinite(x) else f"{x:.{digits}f}"


def _pct(x) -> str:
    return "n/a" if x is None or not np.isfinite(x) else f"{x:.0%}"


# ------------------------------------------------------------------------------------------ the figure

SIGN_COLOURS = {1: "#2166ac", -1: "#b2182b", 0: "#777777"}  # blue helps, red hurts (the heatmaps' RdBu)
SIGN_LABELS = {1: "expected > 0", -1: "expected < 0", 0: "expected 0 (90 deg)"}


def plot_known_answer(pairs: pd.DataFrame, summary: dict, result: dict, *, task: str, null: bool, note: str = ""):
    """Layout distance (x) against the measured CLTM with its interval (y) for every off-diagonal cell,
    coloured by the expected sign, flagged rows as open markers; the expected curve (cos of the planted
    distance: cos of the layout distance when planted, 1 under the null control); a box with rho, the
    Mantel p, sign agreement beside chance, and the verdict (with the checks that failed). The axis covers
    [-1.1, 1.1] and the unflagged cells; a cell beyond it is a triangle at the edge."""
    fig = new_figure(7.2, 5.2)
    ax = fig.add_subplot(1, 1, 1)
    x = pairs["distance_deg"].to_numpy(dtype=float)
    y = pairs["cltm"].to_numpy(dtype=float)
    finite = np.isfinite(y)
    # cells at one distance side by side, in a fixed order, so their intervals do not hide each other
    offsets = np.zeros(len(pairs))
    for _, idx in pairs.groupby(pairs["distance_deg"].round(6)).groups.items():
        idx = list(idx)
        offsets[idx] = (np.arange(len(idx)) - (len(idx) - 1) / 2) * min(2.0, 12.0 / max(len(idx), 1))
    xs = x + offsets
    lo, hi = pairs["cltm_ci_low"].to_numpy(dtype=float), pairs["cltm_ci_high"].to_numpy(dtype=float)
    flagged = pairs["target_flagged"].astype(bool).to_numpy()
    # the axis shows the unflagged cells and the planted range [-1, 1]; what lies beyond (a flagged row's
    # exploding cell, an unbounded interval) is drawn at the edge, so that one row cannot squash the rest
    base = np.concatenate([y[finite & ~flagged], [-1.1, 1.1]])
    margin = 0.08 * (base.max() - base.min())
    ymin, ymax = base.min() - margin, base.max() + margin
    beyond = finite & ((y < ymin) | (y > ymax))
    curve = np.linspace(0, max(180.0, np.nanmax(x) if x.size else 180.0), 200)
    expected_label = "expected: 1 (null control)" if null else "expected: cos(layout distance)"
    ax.plot(curve, np.ones_like(curve) if null else np.cos(np.radians(curve)), color="0.35", lw=1.2, ls="--")
    ax.axhline(0, color="0.6", lw=0.8)
    for sign, colour in SIGN_COLOURS.items():
        sel = (pairs["expected_sign"].to_numpy() == sign) & finite
        if not sel.any():
            continue
        for rows, face in ((sel & ~flagged, colour), (sel & flagged, "none")):
            if not rows.any():
                continue
            low = np.clip(np.where(np.isfinite(lo[rows]), lo[rows], ymin), ymin, ymax)
            high = np.clip(np.where(np.isfinite(hi[rows]), hi[rows], ymax), ymin, ymax)
            yy = np.clip(y[rows], ymin, ymax)
            ax.errorbar(xs[rows], yy, yerr=[np.maximum(yy - low, 0), np.maximum(high - yy, 0)], fmt="none",
                        ecolor=colour, elinewidth=0.9, alpha=0.6 if face != "none" else 0.25)
            inside = ~beyond[rows]
            ax.scatter(xs[rows][inside], yy[inside], s=30, facecolors=face, edgecolors=colour, linewidths=1.2,
                       zorder=3)
            for marker, side in (("^", yy >= ymax), ("v", yy <= ymin)):
                out = ~inside & side
                if out.any():
                    ax.scatter(xs[rows][out], yy[out], s=42, marker=marker, facecolors=face, edgecolors=colour,
                               linewidths=1.2, zorder=3, clip_on=False)
    ax.set_ylim(ymin, ymax)
    ax.set_xlabel("layout distance |angle(target) - angle(donor)| (degrees)")
    ax.set_ylabel("measured CLTM[target, donor] (95 % interval)")
    ax.grid(color="0.92")
    ax.set_axisbelow(True)
    handles = [Line2D([], [], color="0.35", ls="--", label=expected_label)]
    handles += [Line2D([], [], marker="o", ls="none", color=c, label=SIGN_LABELS[s])
                for s, c in SIGN_COLOURS.items() if (pairs["expected_sign"] == s).any()]
    if flagged.any():
        handles.append(Line2D([], [], marker="o", ls="none", markerfacecolor="none", markeredgecolor="0.3",
                              label=f"flagged target row {FLAG_MARK}"))
    ax.legend(handles=handles, fontsize=8, loc="lower left")
    sa = summary["sign_agreement"]
    mantel = summary["mantel"]
    box = [f"Spearman rho (distance, CLTM) = {_num(summary['spearman_rho'])}",
           f"Mantel p = {_num(mantel['p_value'], 4)}{' (exact)' if mantel.get('exact') else ''}",
           f"sign agreement {_pct(sa['share'])} (chance {_pct(sa['chance'])})",
           f"verdict: {result['headline']}"]
    failed = [line["check"] for line in result["lines"] if not line["passed"]]
    if failed:
        box[-1] += f" ({', '.join(failed)})"
    ax.text(0.98, 0.98, "\n".join(box), transform=ax.transAxes, ha="right", va="top", fontsize=8.5,
            bbox={"boxstyle": "round", "facecolor": "white", "edgecolor": "0.5", "alpha": 0.9})
    what = ("null control: one rule in every language, no transfer effect planted" if null
            else "transfer should fall as cos(distance)")
    title = f"SYNTHETIC corpus, planted effect. Task {task}: planted vs recovered\n{what}"
    ax.set_title(wrap_title(title, 7.2), fontsize=10)
    notes = [note] if note else []
    if beyond.any() or (np.isfinite(lo) & (lo < ymin)).any() or (np.isfinite(hi) & (hi > ymax)).any() \
            or (~np.isfinite(lo) | ~np.isfinite(hi))[finite].any():
        notes.append("\u25b2/\u25bc: a cell beyond the axis, drawn at its edge; intervals are cut at the edge")
    if notes:
        add_footnote(fig, ax, "\n".join(notes))
    return fig


# ------------------------------------------------------------------------------------------ one task


def known_answer(plant: dict, cltm: pd.DataFrame, se: pd.DataFrame, ci_low: pd.DataFrame, ci_high: pd.DataFrame,
                 baselines: pd.DataFrame, cells: pd.DataFrame, thresholds: dict, *, task: str,
                 label_column: str | None = None, plant_path: str = "plant.json") -> tuple[pd.DataFrame, dict]:
    """A planted task's matrix read against the plant: (the pair table, the summary with its verdict).

    `baselines` (baselines.csv) gives the flagged rows, `cells` (cells.csv) the donor spread; `label_column`,
    when given, must be the plant's (the task must read the planted labels)."""
    if not plant.get("synthetic"):
        raise PlantFileError(f"{plant_path} does not say `synthetic: true`: a plant exists only in the synthetic "
                             f"demo corpus; rewrite it with the demo corpus (corpus.type: demo, corpus.demo.plant)")
    if label_column is not None and plant["label_column"] != label_column:
        raise PlantFileError(
            f"task '{task}' reads the label column '{label_column}' but {plant_path} planted '{plant['label_column']}': "
            f"set tasks.{task}.label_column to corpus.demo.plant.label_column, or rewrite the plant file")
    flagged = baselines.loc[baselines["flagged"].astype(str).str.lower().isin(["true", "1"]),
                            "target"].astype(str).tolist()
    pairs = pair_table(plant, cltm, se, ci_low, ci_high, flagged)
    summary = recovery_summary(pairs)
    rows = donor_spread(cells)
    null = bool(plant["null"])
    result = verdict(summary, thresholds, null=null)
    languages = plant.get("languages") or {}
    out = {
        "task": task,
        "synthetic": True,
        "what": ("SYNTHETIC corpus with a planted effect: the labels follow a rule whose direction differs per "
                 "language, so transfer should fall as cos(distance between the rules)"
                 + ("; NULL CONTROL: every language has the same rule, the true CLTM is 1 in every cell" if null
                    else "")),
        "plant": {"label_column": plant["label_column"], "classes": plant.get("classes"),
                  "cue_db": plant.get("cue_db"), "null": null, "seed": plant.get("seed"),
                  "angles_deg": {k: (v.get("angle_deg") if isinstance(v, dict) else None)
                                 for k, v in languages.items()}},
        **summary,
        "donor_spread": {
            "rows": rows.to_dict(orient="records"),
            "pooled": pooled_spread(rows),
            "definition": ("per target row, F = between-donor variance of the cells / mean squared donor-part "
                           "SE (se of the bilingual runs / |Perf(i+i) - Perf(i)|): the one-way ANOVA of the row's "
                           "bilingual runs, reference F(donors - 1, sum of (seeds - 1)); about 1 when all donors "
                           "are equal and the seed SEs explain the spread (docs/statistics.md)"),
        },
        "verdict": result,
    }
    return pairs, out
