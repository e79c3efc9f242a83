"""The learning curve of a task: Perf(2n) - Perf(n) with its SE per target and rung, the recommended N."""

import pandas as pd

from cltm.analysis.curves import learning_curve_table, recommend_n
from cltm.analysis.figures import plot_learning_curve
from cltm.io import read_json, run_script, script_logger, write_json, write_table

log = script_logger(snakemake.log[0])
TASK_NAMES = {"gender": "Gender identification", "speaker": "Speaker verification"}


def main():
    params, out = snakemake.params, snakemake.output
    task = snakemake.wildcards.task
    rows = []
    for path, size in params.sizes.items():
        run = read_json(path)
        rows.append({"target": run["target"], "size": int(size), "condition": run["condition"],
                     "seed": run["seed"], "value": run["value"], "metric": run["metric"], "path": path})
    runs = pd.DataFrame(rows)
    metric = runs["metric"].iloc[0]
    grid_seeds = len(params.grid_seeds)
    curve = learning_curve_table(runs, flag_alpha=params.flag_alpha, grid_seeds=grid_seeds)
    # the matrix is built with the grid's seeds: the rule is applied at that count (the curve's own seeds
    # give the spread), and the curve's own verdict is written beside it
    rec = {**recommend_n(curve, "clears_at_grid_seeds"), "grid_seeds": grid_seeds,
           "at_curve_seeds": recommend_n(curve, "clears")}
    write_table(out.table, curve, index=False, float_format="%.6g")
    write_json(out.recommendation, {"task": task, "metric": metric, "n_current": params.n,
                                    "flag_alpha": params.flag_alpha, "seeds": sorted(runs["seed"].unique().tolist()),
                                    **rec})
    suffix = f"\n{params.note}" if params.note else ""
    plot_learning_curve(curve, n_current=params.n, flag_alpha=params.flag_alpha, metric=metric,
                        title=f"Learning curve, {TASK_NAMES.get(task, task)}{suffix}",
                        path_png=out.png, path_svg=out.svg)
    log(f"{task}: learning curve\n{curve.to_string()}\nrecommendation: {rec}")


run_script(main, log)
