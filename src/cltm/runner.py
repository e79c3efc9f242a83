"""Execute runs: one, or a list of them in one process (a SLURM bundle, a probe sweep, runs packed on
one GPU), each with its own generators (`cltm.rng`), so that each result is bit for bit the one the run
gets alone in a fresh process.

What a run reads and writes is its `cltm.runs.RunSpec`. Per run: the scores, then the run JSON (last,
atomically: a run counts as done only when its JSON exists), and its checkpoint removed. What the runs
of a list share is read once: the settings files, the prepared audio (memory-mapped, read only) and
the encoder (loaded once per directory, a fresh copy for every run, since training consumes it).
"""

from __future__ import annotations

import copy
import os
import time
from collections import Counter
from pathlib import Path

import torch

from cltm.audio import AudioStore
from cltm.cells import checkpoint_key, inputs_key, keep, run_log, split_cell, write_cell
from cltm.checkpoints import Checkpoint
from cltm.encoder import load_encoder
from cltm.errors import CltmError
from cltm.io import read_json, script_logger, write_json, write_table
from cltm.runs import RunSpec, parse_run_path
from cltm.tasks import pick_device, run_one, training_items


class RunFailures(RuntimeError):
    """Some runs of a list failed (with `keep_going`); the others are done."""

    def __init__(self, failures: list[tuple[RunSpec, BaseException]]):
        self.failures = failures
        super().__init__(f"{len(failures)} run(s) failed: "
                         + "; ".join(f"{spec.name} ({type(err).__name__}: {err})" for spec, err in failures))


class _Shared:
    """What the runs of one list read in common, each read once."""

    def __init__(self, specs: list[RunSpec]):
        self.settings: dict[str, dict] = {}
        self.stores: dict[str, AudioStore] = {}
        self.encoders: dict[str, torch.nn.Module] = {}
        self.encoder_uses = Counter(str(Path(s.encoder).parent) for s in specs)

    def spec_settings(self, path: str) -> dict:
        if path not in self.settings:
            self.settings[path] = read_json(path)
        return self.settings[path]

    def features(self, npy: str):
        from cltm.features import FeatureStore

        if npy not in self.stores:
            self.stores[npy] = FeatureStore(npy, Path(npy).with_suffix(".tsv"))
        return self.stores[npy]

    def store(self, npy: str) -> AudioStore:
        if npy not in self.stores:
            self.stores[npy] = AudioStore(npy, Path(npy).with_suffix(".tsv"))
        return self.stores[npy]

    def encoder(self, model_file: str) -> torch.nn.Module:
        """A fresh copy of the encoder for one run; the loaded one itself goes to its last run."""
        directory = str(Path(model_file).parent)
        if directory not in self.encoders:
            with torch.random.fork_rng(devices=[]):  # from_pretrained's weight init draws; leave the caller's
                self.encoders[directory] = load_encoder(directory)
        self.encoder_uses[directory] -= 1
        if self.encoder_uses[directory] <= 0:
            return self.encoders.pop(directory)
        return copy.deepcopy(self.encoders[directory])


class LeakError(CltmError):
    """A run would train on a voice of its target's test set; the message names the selection to redo."""


def check_run_speakers(spec: RunSpec, selections: dict, stores: dict, speaker_ids: str = "corpus") -> None:
    """No speaker of the target's test set is training data of this run: checked on the very files the run
    reads, before it trains (a language selected before another was added could not know that one's test
    voices; the data report finds the same for the whole grid). With `data.speaker_ids: per_language`
    ids of two languages never name one person, so only the target's own training clips are compared."""
    tested = set(selections[spec.target]["test_speakers"])
    for lang, utt in training_items(spec.target, spec.condition, selections):
        if lang != spec.target and speaker_ids != "corpus":
            continue
        speaker = stores[lang].meta(utt)["speaker"]
        if speaker in tested:
            raise LeakError(
                f"{spec.name} would train on test speaker {speaker} of '{spec.target}' (clip {utt} of '{lang}'); "
                f"no training was started. Redo that selection with `snakemake results/selection/{lang}.json -f "
                "--cores 1` plus your --configfile, then run your usual command (README, \"Speakers\")")


def execute_run(spec: RunSpec, *, log=print, shared: _Shared | None = None) -> dict:
    """Fine-tune and evaluate one run, write its scores and then its run JSON; return the record."""
    t0 = time.perf_counter()
    shared = shared or _Shared([spec])
    torch.set_num_threads(spec.threads)
    spec_file = shared.spec_settings(spec.settings)
    settings = spec_file["settings"]
    selections = {lang: read_json(path) for lang, path in zip(spec.languages, spec.subsets)}
    probe = settings["task"].get("mode") == "probe"
    # a probe run's `audio` are the languages' feature stores (cltm.features), a fine-tuning run's the audio
    stores = {lang: (shared.features if probe else shared.store)(npy) for lang, npy in zip(spec.languages, spec.audio)}
    check_run_speakers(spec, selections, stores, settings["data"].get("speaker_ids", "corpus"))
    if probe:
        from cltm.probe import run_probe

        record, scores = run_probe(spec.task, settings["task"], target=spec.target, condition=spec.condition,
                                   seed=spec.seed, features=stores, selections=selections,
                                   sample_rate=settings["data"]["sample_rate"], threads=spec.threads, log=log)
        return _write_run(spec, spec_file, record, scores, t0)
    checkpoint = None
    if spec.checkpoint:
        every = float(os.environ.get("CLTM_CHECKPOINT_SECONDS", "600"))
        checkpoint = Checkpoint(spec.checkpoint, checkpoint_key(spec, spec_file["digest"]), every_s=every, log=log)
    record, scores = run_one(
        spec.task, settings["task"], target=spec.target, condition=spec.condition, seed=spec.seed,
        encoder=shared.encoder(spec.encoder), stores=stores, selections=selections,
        device=pick_device(spec_file["device"]), sample_rate=settings["data"]["sample_rate"], log=log,
        checkpoint=checkpoint,
    )
    _write_run(spec, spec_file, record, scores, t0)
    if checkpoint:
        checkpoint.remove()  # the result exists now; a checkpoint must never outlive it
    return record


def _write_run(spec: RunSpec, spec_file: dict, record: dict, scores, t0: float) -> dict:
    """The scores, then the run JSON (last, atomically), then the kept copy of a grid run (cltm.cells)."""
    record.setdefault("mode", "finetune")
    record.update(config_digest=spec_file["digest"], inputs_key=inputs_key(spec, spec_file["digest"]),
                  synthetic_demo=spec_file["synthetic"], encoder=spec_file["settings"]["encoder"]["source"],
                  wall_s=round(time.perf_counter() - t0, 2))
    write_table(spec.scores, scores, index=False)
    write_json(spec.run, record)
    if parse_run_path(spec.run):  # a run of the workflow's grid: kept at once for its cell (cltm.cells)
        keep(spec)
    return record


def execute_runs(specs: list[RunSpec], *, log=print, keep_going: bool = False) -> list[dict | None]:
    """Execute `specs` one after the other in this process; return their records (None: failed).

    Each run's result is the one it gets alone: its generators are its own (`cltm.rng.RunGenerators`
    inside `cltm.tasks.run_one`), its encoder a fresh copy. With `keep_going`, a failed run is logged and
    the others still run, and RunFailures is raised at the end; without it the first failure is raised.
    """
    specs = list(specs)
    outputs = Counter(p for s in specs for p in (s.run, s.scores, s.checkpoint) if p)
    clash = sorted(p for p, n in outputs.items() if n > 1)
    if clash:
        raise ValueError(f"several runs of the list write {', '.join(clash[:3])}")
    shared = _Shared(specs)
    records: list[dict | None] = []
    failures = []
    for i, spec in enumerate(specs, 1):
        if len(specs) > 1:
            log(f"run {i}/{len(specs)}: {spec.name}")
        try:
            records.append(execute_run(spec, log=log, shared=shared))
        except Exception as err:  # noqa: BLE001 - reported, the others go on
            if not keep_going:
                raise
            log(f"run {spec.name} failed: {type(err).__name__}: {err}")
            failures.append((spec, err))
            records.append(None)
    if failures:
        raise RunFailures(failures)
    return records


def execute_cell(specs: list[RunSpec], *, cell: str | None = None, pack: int = 1, log=print) -> list[RunSpec]:
    """The runs of one cell (`cltm.cells`): put back every run kept with the inputs it has now, train the
    others, keep each as it finishes (`execute_run`). `pack` > 1 trains up to that many at once on this
    node's device (`cltm.packing.execute_packed`; on CUDA the packing is first checked against the GPU's
    memory). Each trained run also logs to its own file. Every run is tried; RunFailures at the end names
    the ones that failed (the finished ones stay kept, so a rerun of the cell trains only those). Then,
    all done, the `cell` file (`cltm.cells.write_cell`). Returns the specs that were trained."""
    _, todo = split_cell(specs, log=log)
    if todo:
        log(f"{len(specs) - len(todo)} of {len(specs)} run(s) kept; training {len(todo)}"
            + (f", {min(pack, len(todo))} at a time" if pack > 1 and len(todo) > 1 else ""))
        for spec in todo:
            run_log(spec).parent.mkdir(parents=True, exist_ok=True)
            run_log(spec).unlink(missing_ok=True)
        if pack > 1 and len(todo) > 1:
            _train_packed(todo, pack, log)
        else:
            _train_one_by_one(todo, log)
    if cell:
        write_cell(cell, specs)
    return todo


def _train_one_by_one(todo: list[RunSpec], log) -> None:
    shared = _Shared(todo)
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


def _train_packed(todo: list[RunSpec], pack: int, log) -> None:
    from cltm.packing import device_memory_bytes, execute_packed

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


def read_specs(path: str | Path) -> list[RunSpec]:
    """A runs file: a JSON list of RunSpec fields (task, target, condition, seed, settings, encoder,
    subsets, audio, run, scores, optional checkpoint and threads)."""
    data = read_json(path)
    if not isinstance(data, list):
        raise ValueError(f"{path}: a runs file is a JSON list of runs, got {type(data).__name__}")
    return [RunSpec.from_dict(d) for d in data]
