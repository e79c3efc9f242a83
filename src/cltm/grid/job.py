"""A cell's job: put back every run kept with the inputs it has now, train the others (one after the
other, `pack` at a time on one device: `cltm.grid.pack`, or, probe runs, together as one batched model:
`cltm.train.probe_batch`), then write the cell file."""

from __future__ import annotations

import time

from cltm.grid.cell import record_event, run_log, split_cell, write_cell
from cltm.grid.execute import RunFailures, RunInputs, execute_probe_runs, execute_run
from cltm.grid.pack import device_memory_bytes, execute_packed
from cltm.grid.spec import RunSpec
from cltm.io import read_json, script_logger
from cltm.model.device import pick_device


def execute_cell(specs: list[RunSpec], *, cell: str | None = None, pack: int = 1, log=print) -> list[RunSpec]:
    """The runs of one cell (`cltm.grid.cell`): put back every run kept with the inputs it has now, train the
    others, keep each as it finishes (`execute_run`). `pack` > 1 trains up to that many at once on this
    node's device (`cltm.grid.pack.execute_packed`; on CUDA the packing is first checked against the GPU's
    memory). A cell's probe runs train together (`train_probes_together`). Each trained run also logs to its
    own file. Every run is tried; RunFailures at the end names
    the ones that failed (the finished ones stay kept, so a rerun of the cell trains only those). Then,
    all done, the `cell` file (`cltm.grid.cell.write_cell`). Returns the specs that were trained."""
    kept, todo = split_cell(specs, log=log)
    try:
        if todo:
            log(f"{len(specs) - len(todo)} of {len(specs)} run(s) kept; training {len(todo)}"
                + (f", {min(pack, len(todo))} at a time" if pack > 1 and len(todo) > 1 else ""))
            for spec in todo:
                run_log(spec).parent.mkdir(parents=True, exist_ok=True)
                run_log(spec).unlink(missing_ok=True)
            if pack > 1 and len(todo) > 1:
                train_packed(todo, pack, log)
            elif len(todo) > 1 and read_json(todo[0].settings)["settings"]["task"].get("mode") == "probe":
                train_probes_together(todo, log)
            else:  # a run named alone (`-f`) trains alone, probe runs too (cltm.train.probe.run_probe)
                train_one_by_one(todo, log)
    finally:
        record_event(specs, kept, todo)  # for the workflow's end-of-run summary, failed runs included
    if cell:
        write_cell(cell, specs)
    return todo


def train_one_by_one(todo: list[RunSpec], log) -> None:
    shared = RunInputs(todo)
    failures = []
    for i, spec in enumerate(todo, 1):
        log(f"run {i}/{len(todo)}: {spec.name} (log: {run_log(spec)})")
        try:
            execute_run(spec, log=script_logger(run_log(spec)), shared=shared)
        except Exception as err:  # noqa: BLE001 - reported, the others go on
            log(f"run {spec.name} failed: {type(err).__name__}: {err}")
            failures.append((spec, err))
    if failures:
        raise RunFailures(failures)


def train_probes_together(todo: list[RunSpec], log) -> None:
    """Probe runs as one batched model (`cltm.grid.execute.execute_probe_runs`), each written and kept as it
    would be alone."""
    log(f"training {len(todo)} probe run(s) together (cltm.train.probe_batch)")
    errors = execute_probe_runs(todo, logs=[script_logger(run_log(spec)) for spec in todo], log=log)
    failures = [(spec, err) for spec, err in zip(todo, errors) if err is not None]
    for spec, err in failures:
        log(f"run {spec.name} failed: {type(err).__name__}: {err}")
    if failures:
        raise RunFailures(failures)


def train_packed(todo: list[RunSpec], pack: int, log) -> None:
    device = pick_device(read_json(todo[0].settings)["device"])
    files = {f"[{spec.name}] ": run_log(spec).open("a", buffering=1) for spec in todo}

    def route(message: str) -> None:  # a packed run's lines also go to its own log
        log(message)
        for prefix, fh in files.items():
            if message.startswith(prefix):
                fh.write(f"[{time.strftime('%H:%M:%S')}] {message[len(prefix):]}\n")
                break

    try:
        execute_packed(todo, pack, log=route, keep_going=True,
                       device_bytes=device_memory_bytes() if device.type == "cuda" else None)
    finally:
        for fh in files.values():
            fh.close()
