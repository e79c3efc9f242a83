"""A cell of the grid, (task, target, condition) with all its seeds: the unit of one Snakemake job.

At thesis scale (54 languages, 59,400 runs) Snakemake's planning costs about 2.7 ms and 30 KB per job,
so the workflow plans one job per cell (5,940 at that scale) instead of one per run (README, "Thesis
scale"). A cell job's one output is its cell file (`cltm.runs.CELL_JSON`: every run's record, what the
matrix is assembled from); each run's JSON and scores are written at their usual paths beside it. One
run is rebuilt by naming its file: the workflow's `run` rule trains it and updates its record in the
cell file (`update_cell`).

A cell's job reruns for any change of its inputs or seeds, and Snakemake deletes its output first; it
does not retrain every seed: every finished run is also kept, as hard links, under results/.cltm/kept/
(`cltm.runs.KEPT_STEM`), with the key of its inputs in its record (`inputs_key`: the task's settings
digest, the run's identity, and the contents of its subset files, its audio indexes and the encoder's
weights). A cell job gets back each kept run whose key is that of its inputs now, and trains only the
others. So a run is trained again exactly when one of its own inputs changed, or when it is named with
`-f` (the workflow's onstart drops it from the kept runs first: `forget`), or when its kept files are gone.

Standard library only: the job's client (`python -m cltm.worker finetune-cell`) restores a cell whose
runs are all kept without starting the worker (no torch import).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from pathlib import Path

from cltm.runs import (
    KEPT_STEM,
    RUN_CHECKPOINT,
    RUN_LOG,
    RunSpec,
    parse_run_path,
)

SUFFIXES = (".json", ".scores.tsv")
_DIGESTS: dict[tuple, str] = {}


def file_digest(path: str | Path) -> str:
    """sha256 of a file's bytes, computed once per process for a given (path, size, mtime)."""
    st = os.stat(path)
    key = (str(path), st.st_size, st.st_mtime_ns)
    if key not in _DIGESTS:
        h = hashlib.sha256()
        with open(path, "rb") as fh:
            while chunk := fh.read(1 << 22):
                h.update(chunk)
        _DIGESTS[key] = h.hexdigest()
    return _DIGESTS[key]


def checkpoint_key(spec: RunSpec, digest: str) -> str:
    """The key of a run's checkpoint: settings digest, identity and training subsets (cltm.checkpoints)."""
    from cltm.checkpoints import run_key

    return run_key(digest=digest, task=spec.task, target=spec.target, condition=spec.condition, seed=spec.seed,
                   subsets=[file_digest(p) for p in spec.subsets])


def inputs_key(spec: RunSpec, digest: str) -> str:
    """The key of everything a run reads: equal keys, equal results (up to the code's version)."""
    identity = {
        "digest": digest, "task": spec.task, "target": spec.target, "condition": spec.condition,
        "seed": spec.seed, "subsets": [file_digest(p) for p in spec.subsets],
        "audio_index": [file_digest(Path(p).with_suffix(".tsv")) for p in spec.audio],
        "encoder": file_digest(spec.encoder),
    }
    return hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()


def kept_files(spec: RunSpec, root: str | Path = ".") -> tuple[Path, Path]:
    """Where a finished run is kept: (record, scores), beside the workflow's results/."""
    stem = Path(root) / KEPT_STEM.format(task=spec.task, target=spec.target, condition=spec.condition, seed=spec.seed)
    return stem.with_name(stem.name + ".json"), stem.with_name(stem.name + ".scores.tsv")


def root_of(spec: RunSpec) -> Path:
    """The working directory a spec's run file is relative to (the folder that holds results/)."""
    run = Path(spec.run)
    parts = run.parts
    i = len(parts) - 1 - parts[::-1].index("results")
    return Path(*parts[:i]) if i else Path(".")


def _link(src: Path, dst: Path) -> None:
    """dst becomes src's file (a hard link, else a copy), atomically."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = dst.with_name(f".{dst.name}.{os.getpid()}.link")
    tmp.unlink(missing_ok=True)
    try:
        os.link(src, tmp)
    except OSError:  # another file system, or one without hard links
        import shutil

        shutil.copy2(src, tmp)
    os.replace(tmp, dst)


def _record(path: Path) -> dict | None:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def reusable(spec: RunSpec, key: str) -> bool:
    """Whether the kept files of `spec` are a finished run with the inputs it has now."""
    record_file, scores_file = kept_files(spec, root_of(spec))
    record = _record(record_file) if record_file.exists() else None
    if record is None or not scores_file.exists():
        return False
    same_run = (record.get("task"), record.get("target"), record.get("condition"), record.get("seed")) == (
        spec.task, spec.target, spec.condition, spec.seed)
    return same_run and record.get("inputs_key") == key


def legacy_reusable(spec: RunSpec, record: dict, record_mtime: float, digest: str) -> bool:
    """A run made before runs carried their inputs' key (cltm < 0.9): kept when its settings digest is
    today's and it is newer than every file it read (Snakemake's own rule)."""
    if record.get("config_digest") != digest or "inputs_key" in record:
        return False
    inputs = [*spec.subsets, *(str(Path(a).with_suffix(".tsv")) for a in spec.audio), *spec.audio, spec.encoder]
    try:
        return all(os.stat(p).st_mtime <= record_mtime for p in inputs)
    except OSError:
        return False


def restore(spec: RunSpec) -> None:
    """Put a kept run back in place (its scores first, its record last)."""
    record_file, scores_file = kept_files(spec, root_of(spec))
    _link(scores_file, Path(spec.scores))
    _link(record_file, Path(spec.run))


def keep(spec: RunSpec) -> None:
    """Keep a finished run (called once its record is written)."""
    record_file, scores_file = kept_files(spec, root_of(spec))
    _link(Path(spec.scores), scores_file)
    _link(Path(spec.run), record_file)


_CELL_FILE = re.compile(r"(?:.*/)?results/(?P<task>[^/]+)/cells/(?P<target>[^/]+)/(?P<condition>[^/]+)\.json$")


def forget(run_files, root: str | Path = ".") -> list[str]:
    """Drop the kept copies of the runs whose files are named (a `-f` target): they will be trained again.
    A cell file named stands for every run of its cell. Returns the runs forgotten (task target condition seed)."""
    out = []
    named = []
    for f in run_files:
        cell = _CELL_FILE.fullmatch(str(f))
        if cell:
            kept = Path(root) / KEPT_STEM.format(**cell.groupdict(), seed=0)
            named += [str(Path(root) / "results" / cell["task"] / "runs" / cell["target"] / cell["condition"] / k.name)
                      for k in sorted(kept.parent.glob("seed*.json"))]
        else:
            named.append(f)
    for f in named:
        ids = parse_run_path(f)
        if ids is None:
            continue
        stem = Path(root) / KEPT_STEM.format(**{k: ids[k] for k in ("task", "target", "condition", "seed")})
        for suffix in SUFFIXES:
            stem.with_name(stem.name + suffix).unlink(missing_ok=True)
        out.append(f"{ids['task']} {ids['target']} {ids['condition']} seed {ids['seed']}")
    return sorted(set(out))


def adopt_existing(root: str | Path = ".") -> int:
    """Once, when results/ was made by a version without kept runs: keep every finished run found under
    results/<task>/runs/ (a run JSON with its scores), so that the cell jobs of this version reuse them
    (`legacy_reusable` decides, per run, whether its inputs are unchanged). Returns how many were kept."""
    root = Path(root)
    marker = root / "results/.cltm/kept/.adopted"
    if marker.exists():
        return 0
    n = 0
    for record_file in sorted(root.glob("results/*/runs/*/*/seed*.json")):
        ids = parse_run_path(record_file.relative_to(root))
        scores = record_file.with_name(record_file.name[:-len(".json")] + ".scores.tsv")
        if ids is None or not scores.exists():
            continue
        stem = root / KEPT_STEM.format(**{k: ids[k] for k in ("task", "target", "condition", "seed")})
        kept = stem.with_name(stem.name + ".json")
        if not kept.exists():
            _link(scores, stem.with_name(stem.name + ".scores.tsv"))
            _link(record_file, kept)
            n += 1
    marker.parent.mkdir(parents=True, exist_ok=True)
    marker.write_text("runs made before kept runs were adopted\n")
    return n


def scores_of(run: str) -> str:
    """A run's scores file, beside its record (`cltm.runs.RUN_SCORES`)."""
    if not run.endswith(".json"):
        raise ValueError(f"{run} is not a run JSON")
    return run[:-len(".json")] + ".scores.tsv"


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
    from cltm.io import write_json
    from cltm.results import read_run

    write_json(path, {"task": specs[0].task, "target": specs[0].target, "condition": specs[0].condition,
                      "runs": [{"file": spec.run, "record": read_run(spec.run)} for spec in specs]})


def update_cell(path: str | Path, specs: list[RunSpec], seeds) -> bool:
    """Replace these runs' records in an existing cell file (a run rebuilt by its file), under a lock, in
    seed order; a run of a seed the cell does not hold is added only if `seeds` (the config's) lists it.
    Returns whether the file was updated (False: no cell file yet; its cell's job will write it)."""
    import fcntl

    from cltm.io import write_json
    from cltm.results import read_run

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
        record = _record(record_file) if record_file.exists() else None
        if reusable(spec, inputs_key(spec, digest)) or (
                record is not None and legacy_reusable(spec, record, record_file.stat().st_mtime, digest)):
            restore(spec)
            kept.append(spec)
            log(f"{spec.name}: kept (finished earlier with the same inputs)")
        else:
            todo.append(spec)
    return kept, todo
