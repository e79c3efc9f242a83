"""All runs of a task into one long table; the CLTM, its standard errors, relative change, baselines."""

from pathlib import Path

import pandas as pd

from cltm.analysis.matrix import matrix_summary, transfer_matrices
from cltm.analysis.table import load_cells
from cltm.analysis.typology import family_summary
from cltm.io import run_script, script_logger, write_json, write_table
from cltm.paths import FIGURES

log = script_logger(snakemake.log[0])


def remove_figures():
    """The task's figures belong to its tables: drop the previous assembly's before anything else, so a
    failed assembly never leaves old figures beside missing tables (the plot rule draws them anew)."""
    folder = Path(snakemake.output.summary).parent
    for fig in FIGURES:
        for ext in ("png", "svg"):
            (folder / f"{fig}.{ext}").unlink(missing_ok=True)


def main():
    remove_figures()
    runs = load_cells(snakemake.input.cells, allow_mixed_versions=snakemake.params.allow_mixed_versions)
    task = snakemake.wildcards.task
    metric = runs["metric"].iloc[0]
    params = snakemake.params
    result = transfer_matrices(runs, metric, params.languages, flag_alpha=params.flag_alpha, ci_level=params.ci_level)
    out = snakemake.output
    write_table(out.runs, runs, index=False)
    for name in ("cltm", "cltm_se", "cltm_ci_low", "cltm_ci_high", "relative_change", "relative_change_se"):
        write_table(out[name], getattr(result, name), float_format="%.6g")
    write_table(out.baselines, result.baselines, float_format="%.6g")
    write_table(out.cells, result.cells, index=False, float_format="%.6g")
    flagged = result.baselines.loc[result.baselines["flagged"]].index.tolist()
    summary = {"task": task, "metric": metric, "languages": snakemake.params.languages,
               "runs": len(runs), "seeds": sorted(runs["seed"].unique().tolist()),
               "config_digest": runs["config_digest"].iloc[0], "synthetic_demo": bool(snakemake.params.synthetic),
               "flag_alpha": params.flag_alpha, "ci_level": params.ci_level,
               "method_versions": sorted(int(v) for v in runs["method_version"].unique()),
               "mixed_method_versions": bool(runs["method_version"].nunique() > 1),
               "uncertainty_covers": "optimisation noise of the seeds for one fixed draw of training subsets, test "
                                     "set and trials (data.seed); not which clips were drawn",
               **matrix_summary(result),
               **family_summary(result.cltm, pd.Series(params.families, dtype=str), flagged=flagged)}
    write_json(out.summary, summary)
    log(f"{task}: {len(runs)} runs; CLTM ({metric}):\n{result.cltm.round(3).to_string()}")
    if flagged:
        log(f"{task}: rows flagged (Perf(i+i) - Perf(i) not clearly positive): {flagged}")


run_script(main, log)
