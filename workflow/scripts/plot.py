"""Heatmaps of the CLTM and the relative change, and the per-target baselines, as PNG and SVG."""

import pandas as pd

from cltm.analysis.figures import plot_baselines, plot_matrix
from cltm.io import read_json, run_script, script_logger

log = script_logger(snakemake.log[0])


def main():
    inp, out = snakemake.input, snakemake.output
    task = snakemake.wildcards.task
    summary = read_json(inp.summary)
    metric = summary["metric"]
    note, flag_alpha = snakemake.params.note, snakemake.params.flag_alpha
    head = f"{snakemake.params.display_name} ({metric}, {len(summary['seeds'])} seeds)"  # the task's own name
    suffix = f"\n{note}" if note else ""
    if summary.get("mixed_method_versions"):  # matrix.allow_mixed_versions: say so on every figure
        suffix += f"\nMIXED METHOD VERSIONS {summary['method_versions']}: runs of different code"
    baselines = pd.read_csv(inp.baselines, index_col="target")
    flagged = baselines.index[baselines["flagged"].astype(bool)].tolist()
    read = lambda path: pd.read_csv(path, index_col=0)  # noqa: E731
    # rows and columns grouped by language family (cltm.analysis.families), optionally with full names
    by_family = {"families": pd.Series(snakemake.params.families, dtype=str), "labels": snakemake.params.labels}
    plot_matrix(read(inp.cltm), read(inp.cltm_se), flagged, title=f"CLTM, {head}{suffix}",
                path_png=out.cltm_png, path_svg=out.cltm_svg, value_label="CLTM", flag_alpha=flag_alpha, **by_family)
    plot_matrix(read(inp.relative_change), read(inp.relative_change_se), flagged, **by_family,
                title=f"Relative change (Perf(i+j) − Perf(i)) / Perf(i), {head}{suffix}",
                path_png=out.relative_change_png, path_svg=out.relative_change_svg,
                value_label="relative change", mark=0.0, flag_alpha=flag_alpha)
    plot_baselines(baselines, metric=metric, title=f"Perf(i) and Perf(i+i), {head}{suffix}",
                   path_png=out.baselines_png, path_svg=out.baselines_svg, flag_alpha=flag_alpha)
    log(f"{task}: figures written; flagged rows: {flagged or 'none'}")


run_script(main, log)
