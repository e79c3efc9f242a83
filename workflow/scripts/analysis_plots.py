"""Typology scatter plots (CLTM against each URIEL+ distance) and the language map (clustered heatmap)."""

import pandas as pd

from cltm.analysis.figures import plot_language_map, plot_message, plot_typology
from cltm.analysis.table import read_square
from cltm.io import read_json, run_script, script_logger

log = script_logger(snakemake.log[0])
TASK_NAMES = {"gender": "Gender identification", "speaker": "Speaker verification"}


def main():
    inp, out, params = snakemake.input, snakemake.output, snakemake.params
    task = snakemake.wildcards.task
    suffix = f"\n{params.note}" if params.note else ""
    cltm = read_square(inp.cltm)
    baselines = pd.read_csv(inp.baselines)
    flagged = baselines.loc[baselines["flagged"].astype(bool), "target"].astype(str).tolist()
    families = pd.Series(params.families, dtype=str)
    summary = read_json(inp.summary)
    name = TASK_NAMES.get(task, task)
    if summary["every_row_flagged"]:  # no figure that looks like a finding where there is none
        for what, png, svg in (("CLTM against URIEL+ distances", out.typology_png, out.typology_svg),
                               ("Language map", out.language_map_png, out.language_map_svg)):
            plot_message(summary["language_map"]["note"], title=f"{what}, {name}{suffix}", path_png=png, path_svg=svg)
        log(f"{task}: every row flagged; typology and language map not computed")
        return
    plot_typology(pd.read_csv(inp.distances), pd.read_csv(inp.typology),
                  title=f"CLTM against URIEL+ distances, {name}{suffix}",
                  path_png=out.typology_png, path_svg=out.typology_svg)
    stability = summary["language_map"]
    share = stability.get("share_same_groups")
    said = ("" if share is None else f"\ntwo groups kept in {share:.0%} of seed resamples"
            + ("" if stability["stable"] else ": UNSTABLE, do not read the groups"))
    plot_language_map(cltm, flagged, families=families, labels=params.labels, method=params.method,
                      title=f"Language map (clustered transfer profiles), {name}{said}{suffix}",
                      path_png=out.language_map_png, path_svg=out.language_map_svg)
    log(f"{task}: typology and language map written")


run_script(main, log)
