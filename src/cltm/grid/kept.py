"""Kept runs: every finished run of the grid, kept as hard links under results/.cltm/kept/ with the key of
its inputs, and put back instead of trained again while that key is unchanged.

A cell's job reruns for any change of its inputs or seeds, and Snakemake deletes its output first; it
does not retrain every seed: every finished run is also kept (`cltm.paths.KEPT_STEM`), with the key of
its inputs in its record (`inputs_key`: the task's settings digest, the run's identity, and the contents
of its subset files, its audio indexes and the encoder's weights). A cell job gets back each kept run
whose key is that of its inputs now, and trains only the others. So a run is trained again exactly when
one of its own inputs changed, or when it is named with `-f` (the workflow's onstart drops it from the
kept runs first: `forget`), or when its kept files are gone.

Standard library only: the job's client (`python -m cltm.worker finetune-cell`) restores a cell whose
runs are all kept without starting the worker (no torch import).
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
import shutil
from pathlib import Path

from cltm.data.draws import seed_draw
from cltm.io import write_json
from cltm.method import METHOD_VERSION, source_fingerprint
from cltm.paths import ADOPTED, KEPT_STEM, RUN_JSON, parse_cell_path, parse_run_path

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


def own_draw(path: str | Path, seed: int) -> dict | None:
    """A subsets file's selection as run seed `seed` reads it, where every seed has its own training draw
    (`data.resample: per_seed`); None for a selection without draws (read the file's bytes instead)."""
    with open(path, "rb") as fh:
        head = fh.read(1 << 16)
    if b'"draws"' not in head and os.path.getsize(path) <= len(head):
        return None
    selection = json.loads(Path(path).read_text())
    return seed_draw(selection, seed) if "draws" in selection else None


def subsets_digest(path: str | Path, seed: int) -> str:
    """The digest of what a run reads of a subsets file: the file's bytes, or, with per-seed draws, the
    run's own draw with the shared test set and trials, so that adding a seed (which rewrites the file)
    leaves the other seeds' runs kept."""
    own = own_draw(path, seed)
    if own is None:
        return file_digest(path)
    return hashlib.sha256(json.dumps(own, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def index_digest(index: str | Path, clips: set[str]) -> str:
    """The digest of a prepared-audio index's rows of `clips` (every column but the offset, which moves when
    other clips are added): what a run with per-seed draws reads of a language's audio."""
    with open(index, newline="") as fh:
        rows = csv.reader(fh, delimiter="\t")
        header = next(rows)
        keep = [i for i, c in enumerate(header) if c != "offset"]
        lines = sorted("\t".join(row[i] for i in keep) for row in rows if row and row[0] in clips)
    return hashlib.sha256("\n".join(["\t".join(header[i] for i in keep), *lines]).encode()).hexdigest()


def audio_digest(spec, k: int, legacy: bool = False) -> str:
    """The digest of the run's k-th language's audio: the index rows of the clips its selection names (its
    own draw with per-seed draws; test and training clips), so that another task's clips prepared for the
    same language (another task's N changed) leave it unchanged. `legacy`: the index file's bytes, the key
    of runs kept before this (accepted once, then re-keyed: `reusable`)."""
    index = Path(spec.audio[k]).with_suffix(".tsv")
    own = own_draw(spec.subsets[k], spec.seed)
    if legacy and own is None:
        return file_digest(index)
    if own is None:
        own = json.loads(Path(spec.subsets[k]).read_text())
    return index_digest(index, set(own["single"]) | set(own["extra"]) | set(own["test"]))


def inputs_key(spec, digest: str, legacy: bool = False) -> str:
    """The key of everything a run reads and of the method that computes it (`cltm.method`): equal keys,
    equal results."""
    identity = {
        "digest": digest, "task": spec.task, "target": spec.target, "condition": spec.condition,
        "seed": spec.seed, "subsets": [subsets_digest(p, spec.seed) for p in spec.subsets],
        "audio_index": [audio_digest(spec, k, legacy) for k in range(len(spec.audio))],
        "encoder": file_digest(spec.encoder),
    }
    if METHOD_VERSION != 1:  # version 1 is every run made before versions existed: their keys are as they were
        identity["method_version"] = METHOD_VERSION
    return hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()


def kept_files(spec, root: str | Path = ".") -> tuple[Path, Path]:
    """Where a finished run is kept: (record, scores), beside the workflow's results/."""
    stem = Path(root) / KEPT_STEM.format(task=spec.task, target=spec.target, condition=spec.condition, seed=spec.seed)
    return stem.with_name(stem.name + ".json"), stem.with_name(stem.name + ".scores.tsv")


def root_of(spec) -> Path:
    """The working directory a spec's run file is relative to (the folder that holds results/)."""
    run = Path(spec.run)
    parts = run.parts
    i = len(parts) - 1 - parts[::-1].index("results")
    return Path(*parts[:i]) if i else Path(".")


def link(src: Path, dst: Path) -> None:
    """dst becomes src's file (a hard link, else a copy), atomically."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = dst.with_name(f".{dst.name}.{os.getpid()}.link")
    tmp.unlink(missing_ok=True)
    try:
        os.link(src, tmp)
    except OSError:  # another file system, or one without hard links
        shutil.copy2(src, tmp)
    os.replace(tmp, dst)


def read_kept_record(path: Path) -> dict | None:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def reusable(spec, key: str) -> bool:
    """Whether the kept files of `spec` are a finished run with the inputs it has now."""
    record_file, scores_file = kept_files(spec, root_of(spec))
    record = read_kept_record(record_file) if record_file.exists() else None
    if record is None or not scores_file.exists():
        return False
    same_run = (record.get("task"), record.get("target"), record.get("condition"), record.get("seed")) == (
        spec.task, spec.target, spec.condition, spec.seed)
    return same_run and record.get("inputs_key") == key


def rekeyed(spec, digest: str) -> bool:
    """A run kept under the earlier form of the key (the audio index file's bytes instead of the run's own
    rows of it; the same inputs otherwise): when that key matches, the kept record gets today's key and the
    run is reusable. True when re-keyed."""
    record_file, scores_file = kept_files(spec, root_of(spec))
    record = read_kept_record(record_file) if record_file.exists() else None
    if record is None or not scores_file.exists() or METHOD_VERSION != 1:
        return False
    if record.get("inputs_key") != inputs_key(spec, digest, legacy=True):
        return False
    write_json(record_file, {**record, "inputs_key": inputs_key(spec, digest)})
    return True


def legacy_reusable(spec, record: dict, record_mtime: float, digest: str) -> bool:
    """A run made before runs carried their inputs' key (cltm < 0.9): kept when its settings digest is
    today's and it is newer than every file it read (Snakemake's own rule)."""
    if record.get("config_digest") != digest or "inputs_key" in record or METHOD_VERSION != 1:
        return False
    inputs = [*spec.subsets, *(str(Path(a).with_suffix(".tsv")) for a in spec.audio), *spec.audio, spec.encoder]
    try:
        return all(os.stat(p).st_mtime <= record_mtime for p in inputs)
    except OSError:
        return False


def restore(spec) -> None:
    """Put a kept run back in place (its scores first, its record last)."""
    record_file, scores_file = kept_files(spec, root_of(spec))
    link(scores_file, Path(spec.scores))
    link(record_file, Path(spec.run))


def keep(spec) -> None:
    """Keep a finished run (called once its record is written)."""
    record_file, scores_file = kept_files(spec, root_of(spec))
    link(Path(spec.scores), scores_file)
    link(Path(spec.run), record_file)


def forget(run_files, root: str | Path = ".") -> list[str]:
    """Drop the kept copies of the runs whose files are named (a `-f` target): they will be trained again.
    A cell file named stands for every run of its cell. Returns the runs forgotten (task target condition seed)."""
    out = []
    named = []
    for f in run_files:
        cell = parse_cell_path(f)
        if cell:
            kept = Path(root) / KEPT_STEM.format(**cell, seed=0)
            named += [str(Path(root) / RUN_JSON.format(**cell, seed=k.name[len("seed"):-len(".json")]))
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
    marker = root / ADOPTED
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
            link(scores, stem.with_name(stem.name + ".scores.tsv"))
            link(record_file, kept)
            n += 1
    marker.parent.mkdir(parents=True, exist_ok=True)
    marker.write_text("runs made before kept runs were adopted\n")
    return n


RETRAIN = "CLTM_RETRAIN"  # the environment variable that retrains kept runs on purpose


def made_by_other_code(record: dict) -> bool:
    """Whether a kept run was made by other code than this package's (another source fingerprint: a local
    edit, or a version from before fingerprints)."""
    return record.get("source_fingerprint") != source_fingerprint()


def kept_records(root: str | Path = "."):
    """(record file, record) of every kept run under results/.cltm/kept/."""
    base = Path(root) / Path(KEPT_STEM).parts[0] / Path(KEPT_STEM).parts[1] / Path(KEPT_STEM).parts[2]
    for path in sorted(base.glob("*/*/*/seed*.json")):
        record = read_kept_record(path)
        if record is not None:
            yield path, record


def forget_on_purpose(which: str, root: str | Path = ".") -> list[str]:
    """Drop kept runs so that their cells train them again: `all`, `other-code` (runs made by other code or
    another method version) or a comma-separated list of task names. Returns the runs forgotten."""
    wanted = {w.strip() for w in which.split(",") if w.strip()}
    out = []
    for path, record in kept_records(root):
        hit = ("all" in wanted or record.get("task") in wanted
               or ("other-code" in wanted and (made_by_other_code(record)
                                               or int(record.get("method_version") or 1) != METHOD_VERSION)))
        if hit:
            for suffix in SUFFIXES:
                path.with_name(path.name[:-len(".json")] + suffix).unlink(missing_ok=True)
            out.append(f"{record.get('task')} {record.get('target')} {record.get('condition')} seed {record.get('seed')}")
    return out


def prepare_kept_runs(forcerun, targets, forcetargets: bool, root: str | Path = ".", log=print,
                      retrain: str | None = None) -> None:
    """What the workflow does before any job (onstart): a results/ made by a version without kept runs has
    its finished runs adopted once (`adopt_existing`); a run named with -f (or --forcerun), or a cell file
    named, is trained again, so its kept copy is dropped (`forget`); `retrain` (the CLTM_RETRAIN variable:
    all, other-code or task names) drops those kept runs on purpose (`forget_on_purpose`). Kept runs that
    other code made (a local edit that did not change the method version) are named, with the command that
    retrains them."""
    adopted = adopt_existing(root)
    if adopted:
        log(f"cltm: {adopted} finished run(s) found in results/ are kept for reuse")
    named = set(forcerun) | (set(targets) if forcetargets else set())
    for name in forget(sorted(named), root):
        log(f"cltm: {name} will be trained again (named with -f)")
    if retrain:
        gone = forget_on_purpose(retrain, root)
        log(f"cltm: {RETRAIN}={retrain}: {len(gone)} kept run(s) dropped; their cells train them again when they run "
            "(with --forcerun finetune probe they all do)")
    other = sum(1 for _, record in kept_records(root) if made_by_other_code(record))
    if other:
        log(f"cltm: {other} kept run(s) were made by other code than this checkout's (a local edit, or an older "
            "version with the same method version); they are put back as they are. To train them again with this "
            f"code: {RETRAIN}=other-code snakemake --cores N --forcerun finetune probe (plus your --configfile)")
