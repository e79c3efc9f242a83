"""Typology scatter plots (CLTM against each URIEL+ distance) and the language map (clustered heatmap)."""

import pandas as pd

from cltm.analysis.figures import plot_language_map, plot_typology
from cltm.io import run_script, script_logger

log = script_logger(snakemake.log[0])
TASK_NAMES = {"gender": "Gender identification", "speaker": "Speaker verification"}


def main():
    inp, out, params = snakemake.input, snakemake.output, snakemake.params
    task = snakemake.wildcards.task
    suffix = f"\n{params.note}" if params.note else ""
    cltm = pd.read_csv(inp.cltm, index_col=0)
    cltm.index, cltm.columns = cltm.index.astype(str), cltm.columns.astype(str)
    baselines = pd.read_csv(inp.baselines)
    flagged = baselines.loc[baselines["flagged"].astype(bool), "target"].astype(str).tolist()
    families = pd.Series(params.families, dtype=str)
    plot_typology(pd.read_csv(inp.distances), pd.read_csv(inp.typology),
                  title=f"CLTM against URIEL+ distances, {TASK_NAMES.get(task, task)}{suffix}",
                  path_png=out.typology_png, path_svg=out.typology_svg)
    plot_language_map(cltm, flagged, families=families, labels=params.labels, method=params.method,
                      title=f"Language map (clustered transfer profiles), {TASK_NAMES.get(task, task)}{suffix}",
                      path_png=out.language_map_png, path_svg=out.language_map_svg)
    log(f"{task}: typology and language map written")


run_script(main, log)
