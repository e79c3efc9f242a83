"""The learning curve that chooses N: Perf(i) and Perf(i+i) of each target at rungs n < N, and the
smallest rung where dual is clearly above single for every target."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pandas as pd


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
