"""A cell of the grid, (task, target, condition) with all its seeds: the unit of one Snakemake job.

At thesis scale (54 languages, 59,400 runs) Snakemake's planning costs about 2.7 ms and 30 KB per job,
so the workflow plans one job per cell (5,940 at that scale) instead of one per run (docs/clusters.md,
"Thesis scale"). A cell job's one output is its cell file (`cltm.paths.CELL_JSON`: every run's record,
what the matrix is assembled from); each run's JSON and scores are written at their usual paths beside
it. One run is rebuilt by naming its file: the workflow's `run` rule trains it and updates its record
in the cell file (`update_cell`). Which runs of a cell are trained and which put back: `cltm.grid.kept`.

Standard library only, like `cltm.grid.kept`.
"""

from __future__ import annotations

import fcntl
import json
from pathlib import Path

from cltm.grid.kept import inputs_key, kept_files, legacy_reusable, read_kept_record, restore, reusable, root_of
from cltm.grid.spec import RunSpec
from cltm.io import write_json
from cltm.paths import RUN_CHECKPOINT, RUN_LOG, parse_run_path, scores_of
from cltm.records import read_run


def cell_specs(*, task: str, target: str, condition: str, runs: list[str], settings: str, encoder: str,
               subsets: list[str], audio: list[str], threads: int = 1) -> list[RunSpec]:
    """The runs of one cell, one per run file (seeds from the files' names), in the workflow's paths."""
    specs = []
    for run in runs:
        ids = parse_run_path(run)
        if ids is None or ids["suffix"] != ".json" or (ids["task"], ids["target"], ids["condition"]) != (
                task, target, condition):
            raise ValueError(f"{run} is not a run file of {task} {target} {condition}")
        ids = dict(task=task, target=target, condition=condition, seed=ids["seed"])
        spec = RunSpec(**ids, settings=settings, encoder=encoder, subsets=tuple(subsets), audio=tuple(audio),
                       run=run, scores=scores_of(run), threads=threads)
        specs.append(RunSpec.from_dict({**spec.to_dict(),
                                        "checkpoint": str(root_of(spec) / RUN_CHECKPOINT.format(**ids))}))
    return specs


def write_cell(path: str | Path, specs: list[RunSpec]) -> None:
    """The cell file: every run's record, read back from its run JSON (what the matrix is assembled from)."""
    write_json(path, {"task": specs[0].task, "target": specs[0].target, "condition": specs[0].condition,
                      "runs": [{"file": spec.run, "record": read_run(spec.run)} for spec in specs]})


def update_cell(path: str | Path, specs: list[RunSpec], seeds) -> bool:
    """Replace these runs' records in an existing cell file (a run rebuilt by its file), under a lock, in
    seed order; a run of a seed the cell does not hold is added only if `seeds` (the config's) lists it.
    Returns whether the file was updated (False: no cell file yet; its cell's job will write it)."""
    path = Path(path)
    if not path.exists():
        return False
    with open(path.with_name(f".{path.name}.lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # two runs of one cell rebuilt at once
        data = json.loads(path.read_text())
        items = {int(item["record"]["seed"]): item for item in data["runs"]}
        for spec in specs:
            if spec.seed in items or spec.seed in set(seeds):
                items[spec.seed] = {"file": spec.run, "record": read_run(spec.run)}
        data["runs"] = [items[s] for s in sorted(items)]
        write_json(path, data)
    return True


def run_log(spec: RunSpec) -> Path:
    """The log of one trained run (the cell job's log has every run of the cell)."""
    return root_of(spec) / RUN_LOG.format(task=spec.task, target=spec.target, condition=spec.condition, seed=spec.seed)


def split_cell(specs: list[RunSpec], log=print) -> tuple[list[RunSpec], list[RunSpec]]:
    """(kept, to train): the runs whose kept files match their inputs now are put back in place."""
    digests: dict[str, str] = {}
    kept, todo = [], []
    for spec in specs:
        if spec.settings not in digests:
            digests[spec.settings] = json.loads(Path(spec.settings).read_text())["digest"]
        digest = digests[spec.settings]
        record_file, _ = kept_files(spec, root_of(spec))
        record = read_kept_record(record_file) if record_file.exists() else None
        if reusable(spec, inputs_key(spec, digest)) or (
                record is not None and legacy_reusable(spec, record, record_file.stat().st_mtime, digest)):
            restore(spec)
            kept.append(spec)
            log(f"{spec.name}: kept (finished earlier with the same inputs)")
        else:
            todo.append(spec)
    return kept, todo
