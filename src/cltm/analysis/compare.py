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

import math

import numpy as np
import pandas as pd
from scipy.stats import spearmanr

from cltm.analysis.figures import add_footnote, new_figure, wrap_title
from cltm.analysis.matrix import seed_values
from cltm.analysis.statistics import bootstrap_matrices, seed_blocks

BOOTSTRAP = 2000
SPLITS = 200


def _rho(x: np.ndarray, y: np.ndarray) -> float:
    ok = np.isfinite(x) & np.isfinite(y)
    x, y = x[ok], y[ok]
    if len(x) < 3 or np.ptp(x) == 0 or np.ptp(y) == 0:
        return float("nan")
    return float(spearmanr(x, y).statistic)


def paired_cells(probe: pd.DataFrame, finetune: pd.DataFrame) -> pd.DataFrame:
    """The off-diagonal cells of both `cells.csv` tables side by side (suffixes _probe, _finetune)."""
    keys = ["target", "donor"]
    a = probe.loc[probe["target"] != probe["donor"], keys + ["cltm", "relative_change", "flagged"]]
    b = finetune.loc[finetune["target"] != finetune["donor"], keys + ["cltm", "relative_change", "flagged"]]
    return a.merge(b, on=keys, suffixes=("_probe", "_finetune"), how="inner")


def split_half(values: dict, languages: list, splits: int = SPLITS, seed: int = 0) -> dict:
    """The agreement of a matrix with itself: each target's seeds split at random into two halves (the same
    split for all its conditions where they are paired), the CLTM and the relative change of each half, and
    Spearman's rho between the halves' off-diagonal cells, averaged over `splits` splits; with the
    Spearman-Brown step-up to the whole seed count, 2r / (1 + r). NaN below two seeds."""
    rng = np.random.default_rng(seed)
    blocks = seed_blocks(values, languages)
    n = len(languages)
    off = ~np.eye(n, dtype=bool)
    r = {"cltm": [], "relative_change": []}
    if any(isinstance(b, np.ndarray) and b.shape[1] < 2 or not isinstance(b, np.ndarray) and min(map(len, b)) < 2
           for b in blocks.values()):
        return {k: float("nan") for k in ("cltm", "relative_change", "cltm_full", "relative_change_full")}
    for _ in range(splits):
        halves = ({}, {})
        for i in languages:
            block = blocks[i]
            if isinstance(block, np.ndarray):  # paired: one split of the seeds for every condition
                order = rng.permutation(block.shape[1])
                cut = block.shape[1] // 2
                halves[0][i], halves[1][i] = block[:, order[:cut]].mean(axis=1), block[:, order[cut:]].mean(axis=1)
            else:
                parts = [c[rng.permutation(len(c))] for c in block]
                halves[0][i] = np.array([c[: len(c) // 2].mean() for c in parts])
                halves[1][i] = np.array([c[len(c) // 2:].mean() for c in parts])
        halves = [_matrices(h, languages) for h in halves]
        for k, idx in (("cltm", 0), ("relative_change", 1)):
            r[k].append(_rho(halves[0][idx][off], halves[1][idx][off]))
    out = {}
    for k, vals in r.items():
        mean = float(np.nanmean(vals)) if np.isfinite(vals).any() else float("nan")
        out[k] = mean
        out[f"{k}_full"] = 2 * mean / (1 + mean) if np.isfinite(mean) and mean > -1 else float("nan")
    return out


def _matrices(means: dict, languages: list) -> tuple[np.ndarray, np.ndarray]:
    """(CLTM, relative change) from each target's condition means (single, dual, donors in order)."""
    n = len(languages)
    cltm, rel = np.ones((n, n)), np.zeros((n, n))
    for r, i in enumerate(languages):
        m = means[i]
        a, d = m[0], m[1]
        donors = [j for j in languages if j != i]
        with np.errstate(divide="ignore", invalid="ignore"):
            rel[r, r] = (d - a) / a
            for k, j in enumerate(donors):
                c = languages.index(j)
                cltm[r, c] = (m[2 + k] - a) / (d - a)
                rel[r, c] = (m[2 + k] - a) / a
    return cltm, rel


def _stats(cells: pd.DataFrame, boot: dict | None, mask: np.ndarray | None) -> dict:
    """Rho of the CLTM and of the relative change with a 95 % interval from the seed bootstrap (`boot`:
    {name: (probe draws, fine-tune draws)} [draws, n, n]; `mask`: the cells counted), sign agreement and
    its chance level."""
    out = {}
    for name in ("cltm", "relative_change"):
        x, y = cells[f"{name}_probe"].to_numpy(float), cells[f"{name}_finetune"].to_numpy(float)
        ok = np.isfinite(x) & np.isfinite(y)
        rho = _rho(x, y)
        ci = [None, None]
        if boot is not None and np.isfinite(rho):
            px, fy = boot[name]
            draws = np.array([_rho(px[d][mask], fy[d][mask]) for d in range(len(px))])
            if np.isfinite(draws).any():
                ci = [round(float(v), 4) for v in np.nanpercentile(draws, [2.5, 97.5])]
        out[name] = {"rho": None if not np.isfinite(rho) else round(rho, 4), "ci95": ci, "cells": int(ok.sum()),
                     "not_finite": int((~ok).sum())}
    x, y = cells["relative_change_probe"].to_numpy(float), cells["relative_change_finetune"].to_numpy(float)
    ok = np.isfinite(x) & np.isfinite(y)
    if ok.any():
        p1, p2 = float((x[ok] > 0).mean()), float((y[ok] > 0).mean())
        out["sign_agreement"] = round(float((np.sign(x[ok]) == np.sign(y[ok])).mean()), 4)
        out["sign_agreement_chance"] = round(p1 * p2 + (1 - p1) * (1 - p2), 4)
    else:
        out["sign_agreement"] = out["sign_agreement_chance"] = None
    out["cells"] = int(len(cells))
    return out


def compare_matrices(probe: pd.DataFrame, finetune: pd.DataFrame, probe_runs: pd.DataFrame | None = None,
                     finetune_runs: pd.DataFrame | None = None, *, draws: int = BOOTSTRAP, seed: int = 0) -> dict:
    """Agreement of two `cells.csv` tables: every cell, and the cells of rows flagged in neither. With the
    runs of both (`runs.csv`), each rho's 95 % interval comes from resampling seeds within each target of
    both matrices (jointly over a target's conditions where they are paired; not cells, which would ignore
    the runs' noise and the cells that share a row), and each matrix's split-half agreement with itself
    gives the noise ceiling: two matrices can agree no better than sqrt(r_probe x r_finetune) (each
    Spearman-Brown stepped up). Sign agreement comes with its chance level p1 p2 + (1 - p1)(1 - p2)."""
    cells = paired_cells(probe, finetune)
    languages = list(dict.fromkeys(probe["target"].astype(str)))
    n = len(languages)
    flagged = (set(probe.loc[probe["flagged"].astype(bool), "target"].astype(str))
               | set(finetune.loc[finetune["flagged"].astype(bool), "target"].astype(str)))
    unflagged = cells[~(cells["flagged_probe"].astype(bool) | cells["flagged_finetune"].astype(bool))]
    off = ~np.eye(n, dtype=bool)
    keep = off & ~np.isin(languages, sorted(flagged))[:, None]
    boot, ceiling = None, None
    if probe_runs is not None and finetune_runs is not None:
        vp = seed_values(probe_runs, probe_runs["metric"].iloc[0])
        vf = seed_values(finetune_runs, finetune_runs["metric"].iloc[0])
        bp, bf = bootstrap_matrices(vp, languages, draws, seed), bootstrap_matrices(vf, languages, draws, seed + 1)
        boot = {"cltm": (bp[0], bf[0]), "relative_change": (bp[1], bf[1])}
        hp, hf = split_half(vp, languages, seed=seed), split_half(vf, languages, seed=seed + 1)
        ceiling = {"probe_split_half": hp, "finetune_split_half": hf}
        for k in ("cltm", "relative_change"):
            a, b = hp[f"{k}_full"], hf[f"{k}_full"]
            ceiling[k] = round(math.sqrt(a * b), 4) if np.isfinite(a * b) and a > 0 and b > 0 else None
    method = ("Spearman rho over off-diagonal cells; 95 % interval from " +
              (f"resampling seeds within each target of both matrices ({draws} resamples)" if boot is not None
               else "no runs given: none") +
              "; sign agreement of the relative change beside its chance level; noise ceiling from split halves")
    return {"all_cells": _stats(cells, boot, off), "unflagged_rows": _stats(unflagged, boot, keep),
            "noise_ceiling": ceiling, "method": method}


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
