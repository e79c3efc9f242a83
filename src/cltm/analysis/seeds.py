"""How many seeds a cell needs: the seed plan from the seed-to-seed spread of the runs made so far."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
from scipy import stats


def seed_plan(cells: pd.DataFrame, baselines: pd.DataFrame, target_se: float, *, seeds_now: int | None = None,
              min_seeds: int = 2, confidence: float = 0.95) -> pd.DataFrame:
    """How many seeds each target needs for a cell SE of `target_se`, from the observed seed spread.

    A few pilot seeds estimate a variance badly (with 3 seeds a plug-in plan for a true need of 10 seeds
    ranges from 2 to 36), so the plan (a) pools the seed variance over all of a target's conditions
    (single, dual and every donor: one sd with sum(n_c - 1) degrees of freedom, the conditions' spreads
    being alike) and (b) plans from an upper confidence bound on it, sd_ucb^2 = sd^2 df / chi2(1 -
    confidence, df), so that the planned seeds suffice with that confidence. With V = sd^2 (1/den^2 +
    num^2/den^4 + (num - den)^2/den^4) (num = B - A, den = D - A; the three means independent, which
    the pairing of the seeds can only improve), n = ceil(V / target_se^2). Per target: seeds for its median
    and worst cell, from the bound (`seeds_median_cell`, `seeds_worst_cell`) and from the plug-in sd
    (`..._plugin`); <NA> (with a note) where the row's denominator is zero or the spread is unknown.
    `cells` and `baselines` are the assembled tables (`cells.csv`, `baselines.csv`)."""
    if target_se <= 0:
        raise ValueError("the wanted cell SE must be positive")
    base = baselines.copy()
    if "target" in base.columns:
        base = base.set_index("target")
    rows = []
    for target, row in base.iterrows():
        a, d = row["perf_single"], row["perf_dual"]
        c = cells[(cells["target"].astype(str) == str(target)) & (cells["donor"].astype(str) != str(target))]
        ns = np.concatenate([[row["n_single"], row["n_dual"]], c["n_bilingual"].to_numpy(dtype=float)])
        ses = np.concatenate([[row["perf_single_se"], row["perf_dual_se"]], c["perf_bilingual_se"].to_numpy(dtype=float)])
        ok = np.isfinite(ses) & (ns > 1)
        df = float((ns[ok] - 1).sum())
        var = float(((ns[ok] - 1) * (ses[ok] ** 2) * ns[ok]).sum() / df) if df > 0 else float("nan")
        ucb = var * df / stats.chi2.ppf(1 - confidence, df) if df > 0 else float("nan")
        num, den = c["perf_bilingual"].to_numpy(dtype=float) - a, np.float64(d - a)
        with np.errstate(divide="ignore", invalid="ignore"):
            factor = 1 / den**2 + num**2 / den**4 + (num - den) ** 2 / den**4
        plan = {}
        for name, v in (("", ucb), ("_plugin", var)):
            need = np.ceil(v * factor / target_se**2 - 1e-9)  # an exact fit needs no extra seed for rounding
            need = need[np.isfinite(need)]
            plan[f"seeds_median_cell{name}"] = int(max(min_seeds, np.ceil(np.median(need)))) if need.size else None
            plan[f"seeds_worst_cell{name}"] = int(max(min_seeds, need.max())) if need.size else None
        note = ""
        if not np.isfinite(den) or den == 0:
            note = "denominator is zero: no number of seeds gives a finite SE"
        elif not np.isfinite(var):
            note = "seed spread unknown (fewer than two seeds)"
        rows.append({"target": str(target), "seeds_now": seeds_now if seeds_now is not None else int(row["n_single"]),
                     "wanted_cell_se": target_se, "pooled_sd": math.sqrt(var) if np.isfinite(var) else float("nan"),
                     "pooled_df": int(df), "confidence": confidence, **plan,
                     "flagged": bool(row.get("flagged", False)), "note": note})
    out = pd.DataFrame(rows)
    for col in [c for c in out.columns if c.startswith("seeds_") and c != "seeds_now"]:
        out[col] = out[col].astype("Int64")  # whole seeds; <NA> where no number of seeds will do
    return out
