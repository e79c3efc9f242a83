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
import time
from pathlib import Path

from cltm.grid.kept import (RETRAIN, inputs_key, kept_files, legacy_reusable, made_by_other_code, read_kept_record,
                            rekeyed, restore, reusable, root_of)
from cltm.grid.spec import RunSpec
from cltm.io import write_json
from cltm.paths import EVENTS, RUN_CHECKPOINT, RUN_LOG, parse_run_path, scores_of
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
        if reusable(spec, inputs_key(spec, digest)) or rekeyed(spec, digest) or (
                record is not None and legacy_reusable(spec, record, record_file.stat().st_mtime, digest)):
            restore(spec)
            kept.append(spec)
            log(f"{spec.name}: kept (finished earlier with the same inputs)")
        else:
            todo.append(spec)
    return kept, todo


def record_event(specs: list[RunSpec], kept: list[RunSpec], trained: list[RunSpec]) -> None:
    """One line per cell job in results/.cltm/events.jsonl: how many of its runs were trained (and of those
    resumed from a checkpoint), put back from kept runs (and of those made by other code), failed. The
    workflow's end-of-run summary reads them (`event_summary`)."""
    if not specs:
        return
    records = {id(s): read_kept_record(Path(s.run)) if Path(s.run).exists() else None for s in specs}
    done = [s for s in trained if records[id(s)] is not None]
    event = {"time": time.time(), "task": specs[0].task, "target": specs[0].target, "condition": specs[0].condition,
             "trained": len(done), "resumed": sum(bool(records[id(s)].get("resumed")) for s in done),
             "kept": len(kept), "kept_other_code": sum(1 for s in kept if records[id(s)] is not None
                                                       and made_by_other_code(records[id(s)])),
             "failed": len(trained) - len(done)}
    path = root_of(specs[0]) / EVENTS
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)  # cell jobs end at once
        fh.write(json.dumps(event) + "\n")


def event_summary(root: str | Path = ".", since: float = 0.0, forced: bool = False) -> list[str]:
    """The end-of-run lines, one per task: runs trained (resumed from a checkpoint), put back from kept runs
    (made by other code), failed, by the cell jobs of this workflow run (events since `since`). With
    `forced` (the command had --forcerun or -F) a line says that nothing whose inputs are unchanged was
    retrained, and the command that retrains on purpose."""
    path = Path(root) / EVENTS
    totals: dict[str, dict] = {}
    if path.exists():
        for line in path.read_text().splitlines():
            try:
                event = json.loads(line)
            except ValueError:
                continue
            if event.get("time", 0) < since:
                continue
            t = totals.setdefault(event["task"], dict.fromkeys(("trained", "resumed", "kept", "kept_other_code",
                                                                 "failed"), 0))
            for k in t:
                t[k] += int(event.get(k, 0))
    lines = []
    for task, t in sorted(totals.items()):
        line = (f"cltm: {task}: {t['trained']} run(s) trained ({t['resumed']} resumed from a checkpoint), "
                f"{t['kept']} put back from kept runs")
        if t["kept_other_code"]:
            line += f" ({t['kept_other_code']} of them made by other code)"
        if t["failed"]:
            line += f", {t['failed']} failed"
        lines.append(line)
    if totals and (forced or any(t["kept_other_code"] for t in totals.values())):
        lines.append(f"cltm: kept runs are put back whatever --forcerun or -F say; to train runs again on purpose: "
                     f"{RETRAIN}=all (or other-code, or task names) snakemake --cores N --forcerun finetune probe "
                     "(plus your --configfile)")
    return lines
