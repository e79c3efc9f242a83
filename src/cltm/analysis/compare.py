"""Probe matrix against fine-tuning matrix: does the cheap frozen-encoder probe rank the language pairs as
fine-tuning does? (docs/tasks.md, "Probe mode".)

Over the off-diagonal cells (target != donor) of two matrices of the same grid: Spearman's rho of the
CLTM values and of the relative change (Perf(i+j) - Perf(i)) / Perf(i), each with a bootstrap 95 %
confidence interval over cells (2,000 resamples, seeded), and the share of cells where both say the
same about the donor (its relative change has the same sign: it helps, or it hurts). Every cell counts;
a cell that is not finite in either matrix (a zero denominator) is left out of the CLTM rho and counted.
The same figures without the flagged rows of either matrix are given beside them.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy.stats import spearmanr

from cltm.analysis.figures import add_footnote, new_figure, wrap_title

BOOTSTRAP = 2000


def _rho_ci(x: np.ndarray, y: np.ndarray, seed: int = 0) -> dict:
    n = len(x)
    if n < 3 or np.ptp(x) == 0 or np.ptp(y) == 0:
        return {"rho": None, "ci95": [None, None], "cells": int(n)}
    rho = float(spearmanr(x, y).statistic)
    rng = np.random.default_rng(seed)
    draws = []
    for _ in range(BOOTSTRAP):
        i = rng.integers(0, n, n)
        if np.ptp(x[i]) > 0 and np.ptp(y[i]) > 0:
            draws.append(spearmanr(x[i], y[i]).statistic)
    lo, hi = (np.nanpercentile(draws, [2.5, 97.5]).tolist() if draws else [None, None])
    return {"rho": round(rho, 4), "ci95": [None if lo is None else round(lo, 4), None if hi is None else round(hi, 4)],
            "cells": int(n)}


def paired_cells(probe: pd.DataFrame, finetune: pd.DataFrame) -> pd.DataFrame:
    """The off-diagonal cells of both `cells.csv` tables side by side (suffixes _probe, _finetune)."""
    keys = ["target", "donor"]
    a = probe.loc[probe["target"] != probe["donor"], keys + ["cltm", "relative_change", "flagged"]]
    b = finetune.loc[finetune["target"] != finetune["donor"], keys + ["cltm", "relative_change", "flagged"]]
    return a.merge(b, on=keys, suffixes=("_probe", "_finetune"), how="inner")


def _stats(cells: pd.DataFrame) -> dict:
    out = {}
    for name in ("cltm", "relative_change"):
        x, y = cells[f"{name}_probe"].to_numpy(float), cells[f"{name}_finetune"].to_numpy(float)
        ok = np.isfinite(x) & np.isfinite(y)
        out[name] = {**_rho_ci(x[ok], y[ok]), "not_finite": int((~ok).sum())}
    x, y = cells["relative_change_probe"].to_numpy(float), cells["relative_change_finetune"].to_numpy(float)
    ok = np.isfinite(x) & np.isfinite(y)
    out["sign_agreement"] = round(float((np.sign(x[ok]) == np.sign(y[ok])).mean()), 4) if ok.any() else None
    out["cells"] = int(len(cells))
    return out


def compare_matrices(probe: pd.DataFrame, finetune: pd.DataFrame) -> dict:
    """Agreement of two `cells.csv` tables: every cell, and the cells of rows flagged in neither."""
    cells = paired_cells(probe, finetune)
    unflagged = cells[~(cells["flagged_probe"].astype(bool) | cells["flagged_finetune"].astype(bool))]
    return {"all_cells": _stats(cells), "unflagged_rows": _stats(unflagged),
            "method": "Spearman rho over off-diagonal cells, bootstrap 95 % CI over cells "
                      f"({BOOTSTRAP} resamples); sign agreement of the relative change"}


def scatter(probe: pd.DataFrame, finetune: pd.DataFrame, result: dict, *, probe_name: str, finetune_name: str,
            note: str = ""):
    """A figure: each off-diagonal cell's relative change, probe against fine-tuning."""
    cells = paired_cells(probe, finetune)
    fig = new_figure(6.0, 5.4)
    ax = fig.add_subplot(1, 1, 1)
    flagged = cells["flagged_probe"].astype(bool) | cells["flagged_finetune"].astype(bool)
    for mask, style in ((~flagged, {"color": "#1f77b4", "label": "cell"}),
                        (flagged, {"color": "#bbbbbb", "label": "cell of a flagged row"})):
        if mask.any():
            ax.scatter(cells.loc[mask, "relative_change_finetune"], cells.loc[mask, "relative_change_probe"],
                       s=28, alpha=0.85, **style)
    for _, row in cells.iterrows():
        ax.annotate(f"{row['target']}←{row['donor']}", (row["relative_change_finetune"], row["relative_change_probe"]),
                    fontsize=6, xytext=(2, 2), textcoords="offset points")
    ax.axhline(0, color="k", lw=0.6)
    ax.axvline(0, color="k", lw=0.6)
    ax.set_xlabel(f"{finetune_name}: relative change (fine-tuning)")
    ax.set_ylabel(f"{probe_name}: relative change (probe)")
    stats = result["all_cells"]
    rho = stats["relative_change"]
    ci = rho["ci95"]
    rho_text = "n/a" if rho["rho"] is None else f"{rho['rho']:.2f} [{ci[0]:.2f}, {ci[1]:.2f}]"
    sign = stats["sign_agreement"]
    ax.set_title(f"Probe vs fine-tuning, {stats['cells']} cells\nSpearman rho {rho_text}, "
                 f"same sign {'n/a' if sign is None else f'{sign:.0%}'}", fontsize=10)
    if len(cells):
        ax.legend(fontsize=8, loc="best")
    if note:
        add_footnote(fig, ax, note)
    return fig


def layer_weights_table(records: list[dict]) -> pd.DataFrame:
    """Rows: each target's mean layer weights over all its runs (every condition and seed), then `all`;
    columns: layer 0 (the transformer's input) to L, then `runs`. Probe runs only (`layer_weights`)."""
    rows = [{"target": r["target"], **{f"layer_{i}": w for i, w in enumerate(r["layer_weights"])}}
            for r in records if r.get("layer_weights") is not None]
    if not rows:
        raise ValueError("no run of these cells has layer weights (probe mode)")
    df = pd.DataFrame(rows)
    layers = [c for c in df.columns if c.startswith("layer_")]
    table = df.groupby("target", sort=False)[layers].mean()
    table["runs"] = df.groupby("target", sort=False).size()
    overall = df[layers].mean().to_frame("all").T
    overall["runs"] = len(df)
    return pd.concat([table, overall]).rename_axis("target")


def plot_layer_weights(table: pd.DataFrame, *, title: str, note: str = ""):
    """A heatmap of `layer_weights_table`: targets (and all) by layers."""
    values = table.drop(columns=["runs"])
    fig = new_figure(1.2 + 0.45 * values.shape[1], 1.4 + 0.35 * values.shape[0])
    ax = fig.add_subplot(1, 1, 1)
    im = ax.imshow(values.to_numpy(float), aspect="auto", cmap="viridis")
    ax.set_xticks(range(values.shape[1]), [c.removeprefix("layer_") for c in values.columns], fontsize=8)
    ax.set_yticks(range(values.shape[0]), list(values.index), fontsize=8)
    ax.set_xlabel("layer (0 = the transformer's input)")
    fig.colorbar(im, ax=ax, label="mean softmax weight")
    ax.set_title(wrap_title(title, fig.get_figwidth()), fontsize=9)
    if note:
        add_footnote(fig, ax, note)
    return fig
