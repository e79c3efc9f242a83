"""The learning curve that chooses N: Perf(i) and Perf(i+i) of each target at rungs n < N, and the
smallest rung where dual is clearly above single for every target."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pandas as pd

from cltm.analysis.statistics import denominator_stats, mean_var, row_flagged


def learning_curve_table(runs: pd.DataFrame, flag_alpha: float = 0.05, grid_seeds: int | None = None) -> pd.DataFrame:
    """Per target and rung n: Perf(n) (`single` at size n), Perf(2n) (`dual` at size n), the denominator
    Perf(2n) - Perf(n), its SE (paired over the seeds both have, else independent) and whether it clears
    t(1 - flag_alpha/2, k - 1) x SE with the curve's k seeds (`clears`), the flag of a matrix row. With
    `grid_seeds` (the grid's seed count S), also whether it would clear at S seeds with the same seed-to-seed
    spread (`clears_at_grid_seeds`: SE x sqrt(k / S), t on S - 1 degrees of freedom), since the matrix is
    built with S seeds. A rung that lacks a condition clears neither. `runs` has columns target, size,
    condition (single | dual), seed, value."""
    need = {"target", "size", "condition", "seed", "value"}
    if not need <= set(runs.columns):
        raise ValueError(f"learning-curve runs lack columns {sorted(need - set(runs.columns))}")
    rows = []
    for (target, size), group in runs.groupby(["target", "size"], sort=True):
        by = {c: dict(zip(g["seed"].astype(int), g["value"].astype(float))) for c, g in group.groupby("condition")}
        single, dual = by.get("single", {}), by.get("dual", {})
        (a, va), (d, vd) = mean_var(list(single.values())), mean_var(list(dual.values()))
        if single and dual:
            den, se, df, _ = denominator_stats(single, dual)
        else:
            den, se, df = float("nan"), float("nan"), 0
        k = len(single) if single and set(single) == set(dual) else min(len(single), len(dual))
        at_grid = (bool(single and dual) and grid_seeds is not None and np.isfinite(se)
                   and not row_flagged(den, se * math.sqrt(k / grid_seeds), grid_seeds - 1, flag_alpha))
        rows.append({"target": target, "size": int(size),
                     "perf_single": a, "perf_single_se": math.sqrt(va) if np.isfinite(va) else float("nan"),
                     "perf_dual": d, "perf_dual_se": math.sqrt(vd) if np.isfinite(vd) else float("nan"),
                     "n_single": len(single), "n_dual": len(dual), "denominator": den, "denominator_se": se,
                     "clears": bool(single and dual) and not row_flagged(den, se, df, flag_alpha),
                     **({"clears_at_grid_seeds": bool(at_grid)} if grid_seeds is not None else {})})
    return pd.DataFrame(rows).sort_values(["target", "size"]).reset_index(drop=True)


def recommend_n(curve: pd.DataFrame, column: str = "clears") -> dict:
    """The rungs at which every target's denominator clears (`column`: `clears` at the curve's seeds, or
    `clears_at_grid_seeds`), and the largest of them (the design point: the most target data at which
    doubling it still gives a reliable gain). None when no rung clears. `rule` names the column used."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ok = curve.groupby("size")[column].all()
    clearing = [int(s) for s, v in ok.items() if v]
    failing = {int(s): sorted(curve.loc[(curve["size"] == s) & ~curve[column].astype(bool), "target"].astype(str))
               for s, v in ok.items() if not v}
    return {"rule": column, "every_target_clears": clearing, "recommended_n": max(clearing) if clearing else None,
            "targets_failing": failing}
