"""Preflight: can each language supply the requested regimes, how many runs, what cost (metadata only)."""

from pathlib import Path

import pandas as pd

from cltm.analysis.seeds import seed_plan
from cltm.config import analysis_settings, task_seeds
from cltm.data.corpora import read_manifest_table
from cltm.data.preflight import preflight
from cltm.io import atomic_path, run_script, script_logger, write_table

log = script_logger(snakemake.log[0])


def main():
    manifests = {Path(p).stem: read_manifest_table(p) for p in snakemake.input}
    capacity, runs, text = preflight(snakemake.params.config, manifests)
    text += seed_planning_text(snakemake.params.config)
    write_table(snakemake.output.capacity, capacity, index=False)
    write_table(snakemake.output.grid, runs, index=False)
    with atomic_path(snakemake.output.summary) as tmp:
        tmp.write_text(text)
    log("\n" + text)


def seed_planning_text(config) -> str:
    """When a task's matrix has been assembled already: the seeds each target needs for the wanted cell SE
    (`analysis.seed_planning.cell_se`), from the observed seed spreads. Not an input of this rule: read if there."""
    cell_se = analysis_settings(config)["seed_planning"]["cell_se"]
    parts = []
    for task in config["tasks"]:
        cells, baselines = Path(f"results/{task}/cells.csv"), Path(f"results/{task}/baselines.csv")
        if not (cells.exists() and baselines.exists()):
            continue
        plan = seed_plan(pd.read_csv(cells), pd.read_csv(baselines), cell_se, seeds_now=len(task_seeds(config, task)))
        parts.append(f"\nSeed planning, {task} (from the runs so far; wanted cell SE {cell_se:g}):\n"
                     + plan.drop(columns=["wanted_cell_se"]).to_string(index=False) + "\n")
    return "".join(parts)


run_script(main, log)
