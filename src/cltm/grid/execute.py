"""Execute runs: one, or a list of them in one process (a cell's seeds, a probe sweep, runs packed on
one GPU), each with its own generators (`cltm.train.rng`), so that each result is bit for bit the one the
run gets alone in a fresh process.

What a run reads and writes is its `cltm.grid.spec.RunSpec`. Per run: the scores, then the run JSON (last,
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

from cltm.data.audio import AudioStore
from cltm.data.draws import seed_draw
from cltm.data.speakers import check_run_speakers
from cltm.grid.kept import file_digest, inputs_key, keep
from cltm.grid.spec import RunSpec
from cltm.io import read_json, write_json, write_table
from cltm.method import METHOD_VERSION, source_fingerprint
from cltm.model.device import pick_device
from cltm.model.encoder import load_encoder
from cltm.paths import parse_run_path
from cltm.train.checkpoints import Checkpoint, run_key
from cltm.train.features import FeatureStore
from cltm.train.finetune import finetune_run
from cltm.train.probe import run_probe
from cltm.train.probe_batch import ProbeRun, run_probes


class RunFailures(RuntimeError):
    """Some runs of a list failed (with `keep_going`); the others are done."""

    def __init__(self, failures: list[tuple[RunSpec, BaseException]]):
        self.failures = failures
        super().__init__(f"{len(failures)} run(s) failed: "
                         + "; ".join(f"{spec.name} ({type(err).__name__}: {err})" for spec, err in failures))


class RunInputs:
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


def checkpoint_key(spec: RunSpec, digest: str) -> str:
    """The key of a run's checkpoint: settings digest, identity and training subsets (cltm.train.checkpoints)."""
    return run_key(digest=digest, task=spec.task, target=spec.target, condition=spec.condition, seed=spec.seed,
                   subsets=[file_digest(p) for p in spec.subsets])


def execute_run(spec: RunSpec, *, log=print, shared: RunInputs | None = None) -> dict:
    """Fine-tune and evaluate one run, write its scores and then its run JSON; return the record."""
    t0 = time.perf_counter()
    shared = shared or RunInputs([spec])
    torch.set_num_threads(spec.threads)
    spec_file = shared.spec_settings(spec.settings)
    settings = spec_file["settings"]
    # each language's subsets as this seed reads them (its own draw with data.resample: per_seed)
    selections = {lang: seed_draw(read_json(path), spec.seed) for lang, path in zip(spec.languages, spec.subsets)}
    probe = settings["task"].get("mode") == "probe"
    # a probe run's `audio` are the languages' feature stores (cltm.train.features), a fine-tuning run's the audio
    stores = {lang: (shared.features if probe else shared.store)(npy) for lang, npy in zip(spec.languages, spec.audio)}
    check_run_speakers(spec, selections, stores, settings["data"].get("speaker_ids", "corpus"))
    if probe:
        record, scores = run_probe(spec.task, settings["task"], target=spec.target, condition=spec.condition,
                                   seed=spec.seed, features=stores, selections=selections,
                                   sample_rate=settings["data"]["sample_rate"], threads=spec.threads, log=log)
        return write_run(spec, spec_file, record, scores, t0)
    checkpoint = None
    if spec.checkpoint:
        every = float(os.environ.get("CLTM_CHECKPOINT_SECONDS", "600"))
        checkpoint = Checkpoint(spec.checkpoint, checkpoint_key(spec, spec_file["digest"]), every_s=every, log=log)
    record, scores = finetune_run(
        spec.task, settings["task"], target=spec.target, condition=spec.condition, seed=spec.seed,
        encoder=shared.encoder(spec.encoder), stores=stores, selections=selections,
        device=pick_device(spec_file["device"]), sample_rate=settings["data"]["sample_rate"], log=log,
        checkpoint=checkpoint,
    )
    record["resumed"] = bool(checkpoint and checkpoint.resumed)
    write_run(spec, spec_file, record, scores, t0)
    if checkpoint:
        checkpoint.remove()  # the result exists now; a checkpoint must never outlive it
    return record


def write_run(spec: RunSpec, spec_file: dict, record: dict, scores, t0: float) -> dict:
    """The scores, then the run JSON (last, atomically), then the kept copy of a grid run (cltm.grid.kept)."""
    record.setdefault("mode", "finetune")
    record.update(method_version=METHOD_VERSION, source_fingerprint=source_fingerprint(),
                  config_digest=spec_file["digest"], inputs_key=inputs_key(spec, spec_file["digest"]),
                  synthetic_demo=spec_file["synthetic"], encoder=spec_file["settings"]["encoder"]["source"],
                  wall_s=round(time.perf_counter() - t0, 2))
    write_table(spec.scores, scores, index=False)
    write_json(spec.run, record)
    if parse_run_path(spec.run):  # a run of the workflow's grid: kept at once for its cell (cltm.grid.kept)
        keep(spec)
    return record


def execute_runs(specs: list[RunSpec], *, log=print, keep_going: bool = False) -> list[dict | None]:
    """Execute `specs` one after the other in this process; return their records (None: failed).

    Each run's result is the one it gets alone: its generators are its own (`cltm.train.rng.RunGenerators`
    inside `cltm.train.finetune.finetune_run`), its encoder a fresh copy. With `keep_going`, a failed run is logged and
    the others still run, and RunFailures is raised at the end; without it the first failure is raised.
    """
    specs = list(specs)
    outputs = Counter(p for s in specs for p in (s.run, s.scores, s.checkpoint) if p)
    clash = sorted(p for p, n in outputs.items() if n > 1)
    if clash:
        raise ValueError(f"several runs of the list write {', '.join(clash[:3])}")
    shared = RunInputs(specs)
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


def execute_probe_runs(specs: list[RunSpec], *, logs: list, log=print, shared: RunInputs | None = None) -> list:
    """Probe runs trained together (`cltm.train.probe_batch.run_probes`: each run's result is the one it gets
    alone, up to float rounding), each read, checked and written as `execute_run` does one; its `wall_s` is
    its share of the list's time. `logs`: one log function per run. Returns, per spec, None (written) or the
    exception that failed it (the others go on)."""
    t0 = time.perf_counter()
    shared = shared or RunInputs(specs)
    torch.set_num_threads(specs[0].threads)
    errors: list = [None] * len(specs)
    runs, ready = [], []
    for i, spec in enumerate(specs):
        try:
            settings = shared.spec_settings(spec.settings)["settings"]
            selections = {lang: seed_draw(read_json(path), spec.seed) for lang, path in zip(spec.languages, spec.subsets)}
            stores = {lang: shared.features(npy) for lang, npy in zip(spec.languages, spec.audio)}
            check_run_speakers(spec, selections, stores, settings["data"].get("speaker_ids", "corpus"))
            runs.append(ProbeRun(spec.task, settings["task"], spec.target, spec.condition, spec.seed, stores,
                                 selections, settings["data"]["sample_rate"]))
            ready.append(i)
        except Exception as err:  # noqa: BLE001 - this run fails, the others go on
            errors[i] = err
    results = run_probes(runs, log=log, logs=[logs[i] for i in ready])
    share = (time.perf_counter() - t0) / max(1, len(runs))
    for i, result in zip(ready, results):
        try:
            if isinstance(result, BaseException):
                raise result
            write_run(specs[i], shared.spec_settings(specs[i].settings), *result, time.perf_counter() - share)
        except Exception as err:  # noqa: BLE001 - this run fails, the others go on
            errors[i] = err
    return errors
