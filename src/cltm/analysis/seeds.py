"""How many seeds a cell needs: the seed plan from the seed-to-seed spread of the runs made so far."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd


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
