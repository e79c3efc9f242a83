"""Figures: the transfer-matrix heatmap and the per-target baselines.

Figures are built on ``matplotlib.figure.Figure`` with an Agg canvas, never
through pyplot, so nothing depends on (or changes) a global backend and no
figure stays open after a call.  Every figure is written as PNG (150 dpi)
and SVG (text kept as text, so titles and footnotes are searchable and
editable).
"""

from __future__ import annotations

import textwrap
from pathlib import Path

import matplotlib
import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.colors import Normalize
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

from cltm.analysis.typology import linkage_matrix

__all__ = ["plot_matrix", "plot_baselines", "flag_footnote", "FLAG_FOOTNOTE", "plot_typology", "plot_language_map",
           "plot_learning_curve", "plot_message", "family_colours"]

FLAG_MARK = "†"


def flag_footnote(flag_alpha: float = 0.05) -> str:
    """The footnote printed under a figure with flagged rows."""
    return (f"{FLAG_MARK} Perf(i+i) \u2212 Perf(i) not clearly positive "
            f"(\u2264 t(1 \u2212 {flag_alpha:.3g}/2, n \u2212 1) paired SE): CLTM unreliable")


FLAG_FOOTNOTE = flag_footnote(0.05)
DPI = 150
CMAP = "RdBu"  # red = donor hurts, blue = donor helps


# --------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------


def new_figure(width: float, height: float) -> Figure:
    fig = Figure(figsize=(width, height))
    FigureCanvasAgg(fig)  # gives the figure a renderer for layout measurements
    return fig


def wrap_title(title: str, width_in: float) -> str:
    """Wrap a long title to the figure width; every word is kept."""
    chars = max(40, int(width_in * 11))
    # wrap each given line on its own, so a line such as the demo's data note is never merged or split
    lines = [wrapped for line in title.split("\n") for wrapped in textwrap.wrap(line, chars, break_long_words=False)]
    return "\n".join(lines) or title


def _flagged_set(flagged_rows, index) -> set:
    """Accept an iterable of row labels or a boolean Series indexed by row label."""
    if flagged_rows is None:
        return set()
    if isinstance(flagged_rows, pd.Series) and flagged_rows.dtype == bool:
        return {str(k) for k, v in flagged_rows.items() if v}
    labels = {str(x) for x in flagged_rows}
    unknown = labels - {str(x) for x in index}
    if unknown:
        raise ValueError(f"flagged rows {sorted(unknown)} are not rows of the matrix")
    return labels


def _colour_bound(values: np.ndarray, center: float, mark: float) -> float:
    """Half-width of the colour range around ``center``.

    Robust: the 95th percentile of |value - center|, so that a single
    exploding cell (e.g. -12) does not wash out every other colour; never
    narrower than needed to show ``mark``.  Cells beyond it are drawn in
    the end colour; their annotation still shows the true value.
    """
    dev = np.abs(values[np.isfinite(values)] - center)
    bound = float(np.percentile(dev, 95)) if dev.size else 0.0
    bound = max(bound, abs(mark - center) * 1.05)
    return bound if np.isfinite(bound) and bound > 0 else 1.0


def _text_colour(rgba) -> str:
    """Black or white, whichever reads better on the cell colour."""
    r, g, b = rgba[:3]
    return "black" if 0.299 * r + 0.587 * g + 0.114 * b > 0.5 else "white"


def _fmt(x: float) -> str:
    return "n/a" if np.isnan(x) else f"{x:.2f}"


def _below(fig: Figure, artist) -> tuple[float, float]:
    """Figure coordinates just under the left edge of what ``artist`` draws."""
    box = artist.get_tightbbox(fig.canvas.get_renderer()).transformed(fig.transFigure.inverted())
    return box.x0, box.y0 - 0.12 / fig.get_figheight()  # 0.12 in gap


def add_footnote(fig: Figure, anchor, text: str, fontsize: float = 9) -> None:
    """Put ``text`` under ``anchor`` (an axes with its tick labels, or a legend)."""
    x, y = _below(fig, anchor)
    fig.text(x, y, text, ha="left", va="top", fontsize=fontsize, style="italic")


def save(fig: Figure, path_png, path_svg) -> None:
    for path in (path_png, path_svg):
        Path(path).parent.mkdir(parents=True, exist_ok=True)
    # the canvas is cropped/grown to everything drawn (title and footnote wherever they
    # fall); measured once here, because bbox_inches="tight" would re-draw per format
    box = fig.get_tightbbox(fig.canvas.get_renderer()).padded(0.15)
    fig.savefig(path_png, dpi=DPI, bbox_inches=box, format="png")
    with matplotlib.rc_context({"svg.fonttype": "none"}):  # keep text as <text>
        fig.savefig(path_svg, bbox_inches=box, format="svg")


# --------------------------------------------------------------------------
# public plots
# --------------------------------------------------------------------------


def plot_matrix(
    matrix: pd.DataFrame,
    se: pd.DataFrame,
    flagged_rows,
    *,
    title: str,
    path_png,
    path_svg,
    value_label: str = "CLTM",
    center: float = 0.0,
    mark: float = 1.0,
    flag_alpha: float = 0.05,
    families: pd.Series | None = None,
    labels: dict | None = None,
) -> None:
    """Heatmap of a transfer matrix with per-cell standard errors.

    With ``families`` (language code -> family), rows and columns are grouped by family (families in
    order of first appearance, the given order within a family), family boundaries are drawn and a
    colour strip above and left of the map names each language's family. ``labels`` (code -> text,
    e.g. "Turkish (tr)") replaces the codes on the axes.

    Rows are targets i (tested), columns donors j (added).  Each cell shows
    ``value`` over ``±se``.  ``flagged_rows`` (labels, or a boolean Series
    such as ``result.baselines["flagged"]``) are hatched, their values get
    a "†" and a footnote explains it.  The colour map diverges at
    ``center``; ``mark`` (1 = as good as more target data) is drawn on the
    colour bar.  ``flag_alpha`` only enters the footnote text (use the value
    the flags were computed with, ``TransferResult.flag_alpha``).
    """
    matrix = matrix.astype(float)
    if families is not None:
        fam = families.reindex([str(x) for x in matrix.index]).fillna("unknown")
        rank = {f: i for i, f in enumerate(dict.fromkeys(fam))}
        order = sorted(matrix.index, key=lambda x: (rank[fam[str(x)]], list(matrix.index).index(x)))
        matrix = matrix.loc[order, [c for c in order if c in matrix.columns]]
    se = se.reindex(index=matrix.index, columns=matrix.columns).astype(float)
    values, errors = matrix.to_numpy(), se.to_numpy()
    n_rows, n_cols = values.shape
    flagged = _flagged_set(flagged_rows, matrix.index)

    # about 0.6 in per cell keeps two annotation lines legible from 2 to 54 languages;
    # the layout is fixed in inches so margins and colour bar do not scale with n
    cell = float(np.clip(6.0 / max(n_rows, n_cols), 0.62, 1.1))
    left, bottom, top, right, gap, bar = 1.0, 0.9, 0.9, 1.1, 0.25, 0.22
    map_w, map_h = cell * n_cols, cell * n_rows
    width, height = left + map_w + gap + bar + right, bottom + map_h + top
    fig = new_figure(width, height)
    ax = fig.add_axes([left / width, bottom / height, map_w / width, map_h / height])
    cax = fig.add_axes([(left + map_w + gap) / width, bottom / height, bar / width, map_h / height])

    # an exploding flagged row should not wash out the colours of the reliable rows
    reliable = np.array([str(t) not in flagged for t in matrix.index])
    bound = _colour_bound(values[reliable] if reliable.any() else values, center, mark)
    norm = Normalize(vmin=center - bound, vmax=center + bound)
    finite = values[np.isfinite(values)]
    below = finite.size and finite.min() < norm.vmin
    above = finite.size and finite.max() > norm.vmax
    extend = {(True, True): "both", (True, False): "min", (False, True): "max"}.get(
        (bool(below), bool(above)), "neither"
    )

    sns.heatmap(
        matrix.clip(lower=norm.vmin, upper=norm.vmax),  # colours clip; annotations don't
        ax=ax,
        cbar_ax=cax,
        cmap=CMAP,
        norm=norm,
        annot=False,
        linewidths=0.5,
        linecolor="white",
        square=False,
        cbar_kws={"extend": extend, "label": value_label},
    )
    ax.set_facecolor("0.85")  # NaN cells show as grey
    cmap = matplotlib.colormaps[CMAP]
    fontsize = 7 if cell < 0.8 else 9

    for r, target in enumerate(matrix.index):
        is_flagged = str(target) in flagged
        for c in range(n_cols):
            v, e = values[r, c], errors[r, c]
            shown = np.clip(v, norm.vmin, norm.vmax)  # the colour actually drawn
            colour = _text_colour(cmap(norm(shown))) if np.isfinite(v) else "black"
            text = f"{_fmt(v)}{FLAG_MARK if is_flagged else ''}\n\u00b1{_fmt(e)}"
            label = ax.text(c + 0.5, r + 0.5, text, ha="center", va="center",
                            fontsize=fontsize, color=colour)
            label.set_in_layout(False)  # inside its cell: no need to measure it for layout
        if is_flagged:
            ax.add_patch(Rectangle((0, r), n_cols, 1, fill=False, hatch="///",
                                   edgecolor="0.25", linewidth=0, alpha=0.45))

    # outline the diagonal (1 by construction) when rows and columns are the same languages
    for r, target in enumerate(matrix.index):
        if target in matrix.columns:
            c = list(matrix.columns).index(target)
            ax.add_patch(Rectangle((c, r), 1, 1, fill=False, edgecolor="black", linewidth=1.2))

    short = n_cols <= 6 and max(len(str(c)) for c in matrix.columns) <= 6
    ax.set_xticks(np.arange(n_cols) + 0.5)
    ax.set_yticks(np.arange(n_rows) + 0.5)
    name = (lambda x: str(labels.get(str(x), x))) if labels else str
    ax.set_xticklabels([name(c) for c in matrix.columns], rotation=0 if short and not labels else 90)
    ax.set_yticklabels([f"{name(t)} {FLAG_MARK}" if str(t) in flagged else name(t)
                        for t in matrix.index], rotation=0)
    title_pad, anchor = 10, ax
    if families is not None:
        title_pad, anchor = _family_strips(fig, ax, [fam[str(x)] for x in matrix.index],
                                   [families.get(str(c), "unknown") for c in matrix.columns],
                                   (left, bottom, map_w, map_h, width, height))
    # headings grow a little with the matrix so they stay readable next to it
    heading = float(np.clip(10 + 0.15 * max(n_rows, n_cols), 11, 18))
    ax.set_xlabel("donor j (added)", fontsize=heading - 1)
    ax.set_ylabel("target i (tested)", fontsize=heading - 1)
    ax.set_title(wrap_title(title, width), fontsize=heading, pad=title_pad)

    # mark the reference value on the colour bar: a line plus a labelled tick
    if norm.vmin <= mark <= norm.vmax:
        cbar = ax.collections[0].colorbar
        cax.axhline(mark, color="black", linewidth=2)
        ticks = [t for t in cbar.get_ticks() if norm.vmin <= t <= norm.vmax]
        ticks = sorted({round(float(t), 6) for t in ticks} | {float(mark)})
        cbar.set_ticks(ticks, labels=[f"{t:g}" + (" \u25c0" if t == mark else "") for t in ticks])

    if flagged:
        add_footnote(fig, anchor, flag_footnote(flag_alpha), fontsize=heading - 2)
    save(fig, path_png, path_svg)


FAMILY_PALETTE = "tab20"


def family_colours(families) -> dict:
    """A colour per family, by sorted name ("unknown" grey)."""
    cmap = matplotlib.colormaps[FAMILY_PALETTE]
    names = sorted({f for f in families if f != "unknown"})  # the same colours in every figure
    out = {f: cmap(i % cmap.N) for i, f in enumerate(names)}
    out["unknown"] = (0.7, 0.7, 0.7, 1.0)
    return out


def _family_strips(fig: Figure, ax, row_fams, col_fams, box):
    """Colour strips (top: donors' families, left: targets'), family boundaries on the map, and a
    family legend under the figure; returns the title pad (points) that clears the top strip and
    the legend (the footnote goes under it)."""
    left, bottom, map_w, map_h, width, height = box
    colours = family_colours(list(row_fams) + list(col_fams))
    strip = 0.16
    top = fig.add_axes([left / width, (bottom + map_h + 0.04) / height, map_w / width, strip / height])
    side = fig.add_axes([(left - 0.04 - strip) / width, bottom / height, strip / width, map_h / height])
    for c, f in enumerate(col_fams):
        top.add_patch(Rectangle((c, 0), 1, 1, color=colours[f]))
    for r, f in enumerate(row_fams):
        side.add_patch(Rectangle((0, r), 1, 1, color=colours[f]))
    top.set_xlim(0, len(col_fams))
    top.set_ylim(0, 1)
    side.set_xlim(0, 1)
    side.set_ylim(len(row_fams), 0)
    top.axis("off")
    # the row labels move to the left of the strip
    side.set_xticks([])
    side.set_yticks(ax.get_yticks(), [t.get_text() for t in ax.get_yticklabels()])
    for spine in side.spines.values():
        spine.set_visible(False)
    side.tick_params(length=0)
    ax.set_yticks([])
    ax.set_ylabel("")
    side.set_ylabel("target i (tested)", fontsize=ax.xaxis.label.get_fontsize())
    for k in range(1, len(row_fams)):
        if row_fams[k] != row_fams[k - 1]:
            ax.axhline(k, color="black", linewidth=2)
    for k in range(1, len(col_fams)):
        if col_fams[k] != col_fams[k - 1]:
            ax.axvline(k, color="black", linewidth=2)
    handles = [Rectangle((0, 0), 1, 1, color=colours[f]) for f in dict.fromkeys(list(row_fams) + list(col_fams))]
    names = list(dict.fromkeys(list(row_fams) + list(col_fams)))
    legend = fig.legend(handles, names, loc="upper left", bbox_to_anchor=_below(fig, ax), ncol=min(4, len(names)),
                        frameon=False, fontsize=8, title="family", title_fontsize=8)
    return 10 + 72 * (strip + 0.06), legend


def plot_baselines(
    baselines: pd.DataFrame, *, metric: str, title: str, path_png, path_svg, flag_alpha: float = 0.05
) -> None:
    """Perf(i) and Perf(i+i) per target with ±SE bars: the CLTM denominator made visible.

    ``baselines`` is ``TransferResult.baselines`` (index = target, or a
    ``target`` column) with perf_single(_se), perf_dual(_se) and optionally
    ``flagged``; flagged targets get a "†" and the footnote.
    """
    df = baselines.set_index("target") if "target" in baselines.columns else baselines
    targets = [str(t) for t in df.index]
    n = len(targets)
    flagged = (
        {str(t) for t, f in df["flagged"].items() if bool(f)} if "flagged" in df.columns else set()
    )

    width = max(5.0, 1.8 + 0.38 * n)
    fig = new_figure(width, 4.2)
    ax = fig.add_subplot(1, 1, 1)
    x = np.arange(n)
    offset = 0.15
    single, dual = df["perf_single"].to_numpy(float), df["perf_dual"].to_numpy(float)

    # a thin segment per target shows the gap D - A the CLTM divides by
    ax.vlines(x, np.minimum(single, dual), np.maximum(single, dual), color="0.75", linewidth=4, zorder=1)
    ax.errorbar(x - offset, single, yerr=df["perf_single_se"].to_numpy(float), fmt="o",
                color="tab:orange", capsize=3, label="Perf(i): single (N clips of i)", zorder=3)
    ax.errorbar(x + offset, dual, yerr=df["perf_dual_se"].to_numpy(float), fmt="s",
                color="tab:blue", capsize=3, label="Perf(i+i): dual (2N clips of i)", zorder=3)

    ax.set_xticks(x)
    ax.set_xticklabels([f"{t} {FLAG_MARK}" if t in flagged else t for t in targets],
                       rotation=90 if n > 8 else 0)
    ax.set_xlim(-0.6, n - 0.4)
    ax.set_xlabel("target i (tested)")
    ax.set_ylabel(f"{metric} (mean \u00b1 SE over seeds)")
    ax.set_title(wrap_title(title, width), fontsize=11, pad=10)
    ax.grid(axis="y", color="0.9")
    ax.set_axisbelow(True)
    # legend and footnote go below the tick labels, whatever their length
    handles, labels = ax.get_legend_handles_labels()
    legend = fig.legend(handles, labels, loc="upper left", bbox_to_anchor=_below(fig, ax),
                        ncol=2, frameon=False, fontsize=8)

    if flagged:
        add_footnote(fig, legend, flag_footnote(flag_alpha))
    save(fig, path_png, path_svg)


# --------------------------------------------------------------------------
# reading the matrix: typology, language map, learning curve
# --------------------------------------------------------------------------


def plot_typology(distances: pd.DataFrame, typology: pd.DataFrame, *, title: str, path_png, path_svg) -> None:
    """One panel per URIEL+ distance type: CLTM[i, j] (ordered pairs) against the distance of i and j,
    flagged targets as open markers; each panel names Spearman's rho and the Mantel p-value of the raw
    and the symmetric matrix. `distances` is the long table (distance, target, donor, value, cltm,
    target_flagged), `typology` the Mantel table."""
    kinds = list(dict.fromkeys(distances["distance"]))
    ncol = min(3, max(1, len(kinds)))
    nrow = int(np.ceil(len(kinds) / ncol))
    fig = new_figure(3.4 * ncol, 3.0 * nrow + 0.6)
    stats = typology.set_index(["distance", "matrix"])
    for k, kind in enumerate(kinds):
        ax = fig.add_subplot(nrow, ncol, k + 1)
        d = distances[distances["distance"] == kind]
        ok = np.isfinite(d["value"].astype(float)) & np.isfinite(d["cltm"].astype(float))
        flagged = d["target_flagged"].astype(str).str.lower().isin(["true", "1"])
        ax.scatter(d.loc[ok & ~flagged, "value"], d.loc[ok & ~flagged, "cltm"], s=22, color="tab:blue",
                   label="cell")
        ax.scatter(d.loc[ok & flagged, "value"], d.loc[ok & flagged, "cltm"], s=22, facecolors="none",
                   edgecolors="tab:red", label=f"flagged target {FLAG_MARK}")
        ax.axhline(0, color="0.6", linewidth=0.8)
        ax.axhline(1, color="0.6", linewidth=0.8, linestyle="--")
        lines = []
        for part in ("raw", "symmetric"):
            if (kind, part) in stats.index:
                r = stats.loc[(kind, part)]
                exact = " exact" if str(r["exact"]).lower() in ("true", "1") else ""
                lines.append(f"{part}: \u03c1={_fmt(float(r['rho']))}, p={float(r['p_value']):.3g}{exact}")
        missing = int((~ok).sum())
        if missing:
            lines.append(f"{missing} pair(s) without this distance skipped")
        ax.set_title(kind + "\n" + "\n".join(lines), fontsize=8)
        ax.set_xlabel(f"URIEL+ {kind} distance", fontsize=8)
        ax.set_ylabel("CLTM[i, j]", fontsize=8)
        ax.tick_params(labelsize=7)
        ax.grid(color="0.92")
        ax.set_axisbelow(True)
    fig.suptitle(wrap_title(title, 3.4 * ncol), fontsize=10)
    fig.tight_layout(rect=(0, 0, 1, 0.95))
    handles, labels = fig.axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="upper left", bbox_to_anchor=(0.01, 0.0),
               ncol=2, frameon=False, fontsize=8)
    save(fig, path_png, path_svg)


def plot_message(message: str, *, title: str, path_png, path_svg) -> None:
    """A figure that says why there is no figure (e.g. "not computed: every row flagged"), so that a report
    never shows an analysis that looks like a finding where there is none."""
    fig = new_figure(6.4, 2.4)
    fig.text(0.5, 0.72, wrap_title(title, 6.4), ha="center", va="top", fontsize=10)
    fig.text(0.5, 0.35, message, ha="center", va="center", fontsize=11, color="0.25")
    save(fig, path_png, path_svg)


def plot_language_map(matrix: pd.DataFrame, flagged_rows=(), *, families: pd.Series | None = None,
                      labels: dict | None = None, method: str = "average", title: str, path_png,
                      path_svg) -> None:
    """Dendrogram of the languages clustered by their transfer profiles (row as target, column as
    donor), above the CLTM with rows and columns in leaf order; the family colour strip on the left."""
    from scipy.cluster.hierarchy import dendrogram

    langs = [str(x) for x in matrix.index]
    n = len(langs)
    name = (lambda x: str(labels.get(x, x))) if labels else str
    cell = float(np.clip(5.0 / max(n, 1), 0.45, 0.9))
    left, map_w, dendro_h, map_h = 1.6, cell * n, 1.3, cell * n
    width, height = left + map_w + 1.4, 0.6 + map_h + 0.2 + dendro_h + 0.9
    fig = new_figure(width, height)
    dax = fig.add_axes([left / width, (0.6 + map_h + 0.2) / height, map_w / width, dendro_h / height])
    if n >= 2:
        link = linkage_matrix(matrix, method)
        tree = dendrogram(link, ax=dax, labels=langs, no_labels=True, color_threshold=0,
                          above_threshold_color="0.2")
        order = [langs[i] for i in tree["leaves"]]
    else:
        order = langs
    dax.axis("off")
    ax = fig.add_axes([left / width, 0.6 / height, map_w / width, map_h / height])
    m = matrix.loc[order, order].astype(float)
    flagged = _flagged_set(flagged_rows, matrix.index)
    reliable = np.array([x not in flagged for x in order])
    values = m.to_numpy()
    bound = _colour_bound(values[reliable] if reliable.any() else values, 0.0, 1.0)
    norm = Normalize(vmin=-bound, vmax=bound)
    img = ax.imshow(np.clip(values, -bound, bound), cmap=CMAP, norm=norm, aspect="auto")
    ax.set_xticks(range(n), [name(x) for x in order], rotation=90, fontsize=8)
    ax.set_yticks(range(n), [f"{name(x)} {FLAG_MARK}" if x in flagged else name(x) for x in order], fontsize=8)
    ax.set_xlabel("donor j")
    ax.set_ylabel("target i")
    if families is not None:
        colours = family_colours([families.get(x, "unknown") for x in order])
        for r, x in enumerate(order):
            ax.add_patch(Rectangle((-0.5 - 0.35, r - 0.5), 0.3, 1, color=colours[families.get(x, "unknown")],
                                   clip_on=False))
        handles = [Rectangle((0, 0), 1, 1, color=c) for f, c in colours.items() if f in set(families.reindex(order))]
        names = [f for f in colours if f in set(families.reindex(order))]
        fig.legend(handles, names, loc="upper left", bbox_to_anchor=_below(fig, ax), ncol=min(4, len(names)),
                   frameon=False, fontsize=8, title="family (strip left of the map)", title_fontsize=8)
    cax = fig.add_axes([(left + map_w + 0.2) / width, 0.6 / height, 0.18 / width, map_h / height])
    fig.colorbar(img, cax=cax, label="CLTM")
    fig.suptitle(wrap_title(title, width), fontsize=10, y=1 - 0.15 / height, va="top")
    save(fig, path_png, path_svg)


def plot_learning_curve(curve: pd.DataFrame, *, n_current: int, flag_alpha: float, metric: str, title: str,
                        path_png, path_svg) -> None:
    """Per target: the denominator Perf(2n) - Perf(n) against the rung n with ±SE bars, a hollow marker
    where it does not clear t(1 - flag_alpha/2, n - 1) x its SE; the current N marked."""
    fig = new_figure(6.4, 4.2)
    ax = fig.add_subplot(1, 1, 1)
    targets = list(dict.fromkeys(curve["target"].astype(str)))
    jitter = np.linspace(-0.04, 0.04, len(targets)) if len(targets) > 1 else [0.0]
    for k, t in enumerate(targets):
        c = curve[curve["target"].astype(str) == t].sort_values("size")
        x = c["size"].to_numpy(float) * (1 + jitter[k])
        line = ax.errorbar(x, c["denominator"], yerr=c["denominator_se"].fillna(0), fmt="-", capsize=3,
                           label=t, linewidth=1.2)
        colour = line.lines[0].get_color()
        clears = c["clears"].astype(bool).to_numpy()
        ax.scatter(x[clears], c["denominator"].to_numpy()[clears], color=colour, zorder=3, s=28)
        ax.scatter(x[~clears], c["denominator"].to_numpy()[~clears], facecolors="white", edgecolors=colour,
                   zorder=3, s=28)
    ax.axhline(0, color="0.5", linewidth=0.8)
    ax.axvline(n_current, color="0.3", linestyle=":", linewidth=1)
    ax.set_xscale("log", base=2)
    sizes = sorted(curve["size"].unique())
    ax.set_xticks(sizes, [f"{s}" + (" (N)" if s == n_current else "") for s in sizes])
    ax.set_xlabel("n: training clips of the target in `single` (per class for gender); `dual` has 2n")
    ax.set_ylabel(f"Perf(2n) \u2212 Perf(n), {metric} (\u00b1 SE)")
    ax.set_title(wrap_title(title, 6.4), fontsize=10, pad=10)
    ax.grid(color="0.92")
    ax.set_axisbelow(True)
    handles, labels = ax.get_legend_handles_labels()
    legend = fig.legend(handles, labels, loc="upper left", bbox_to_anchor=_below(fig, ax),
                        ncol=min(6, len(labels)), frameon=False, fontsize=8, title="target")
    add_footnote(fig, legend, f"filled: clears the flag (denominator > t(1 \u2212 {flag_alpha:.3g}/2, n \u2212 1) "
                  "\u00d7 paired SE); hollow: does not clear", fontsize=8)
    save(fig, path_png, path_svg)
