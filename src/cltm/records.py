"""The run record: one JSON per run, the same fields whichever mode made it (fine-tuning, probe), built
here and read here. Standard library only: the job's client and the cell files read records without torch.
"""

from __future__ import annotations

import json
from pathlib import Path

from cltm import __version__
from cltm.errors import CltmError
from cltm.paths import donor_of


class DamagedRunError(CltmError):
    """A run JSON that cannot be read as a run (empty, truncated, or missing fields); the message names it."""


RUN_KEYS = ("task", "target", "condition", "donor", "seed", "metric", "value", "metrics", "sizes", "loss",
            "timing", "device", "config_digest")


def run_record(task, *, target: str, condition: str, seed: int, metrics: dict, items, metas,
               train_samples: int, n_classes: int, selections: dict, loss: dict, sample_rate: int, timing: dict,
               device: str, precision: str, torch_version: str, tta_speeds=None,
               deterministic: bool | None = None) -> dict:
    """A run's record: identity, the task's metric and every metric, sizes, loss, timing and environment.
    `task` is the task object (`cltm.tasks.make_task`); `items` the training set's (language, utt_id) pairs
    and `metas` their index rows; `tta_speeds`, a speaker-verification task's test-time speeds;
    `deterministic` (a fine-tuning run's `training.deterministic`) is recorded where given."""
    target_clips = sum(1 for lang, _ in items if lang == target)
    record = {
        "task": task.name, "target": target, "condition": condition, "donor": donor_of(condition), "seed": seed,
        "metric": task.metric, "value": metrics[task.metric], "metrics": metrics,
        "sizes": {
            "train_clips": len(items), "target_clips": target_clips, "donor_clips": len(items) - target_clips,
            "train_speakers": len({(lang, m["speaker"]) for (lang, _), m in zip(items, metas)}),
            "train_seconds": round(train_samples / sample_rate, 2),
            "classes": n_classes, "test_clips": len(selections[target]["test"]),
            "test_speakers": len(selections[target]["test_speakers"]),
            "trials": len(selections[target].get("trials", [])),
        },
        "loss": loss, "timing": timing, "device": device, "precision": precision, "torch": torch_version,
        "cltm": __version__,
    }
    if tta_speeds is not None:
        record["tta_speeds"] = list(tta_speeds)
    if deterministic is not None:
        record["deterministic"] = bool(deterministic)
    return record


def read_run(path) -> dict:
    """One run record, or DamagedRunError naming the file and how to rebuild it."""
    fix = (f"delete it (`rm {path}`) and rerun that target with your usual options, e.g. "
           f"`snakemake --cores 1 {path} --configfile my_experiment.yaml`; the next full run reassembles the matrix")
    try:
        text = Path(path).read_text()
    except OSError as err:
        raise DamagedRunError(f"run file {path} cannot be read ({err.strerror}); {fix}") from None
    if not text.strip():
        raise DamagedRunError(f"run file {path} is empty (damaged, e.g. by a full disk or a copy cut short); {fix}")
    try:
        rec = json.loads(text)
    except ValueError as err:
        raise DamagedRunError(f"run file {path} is not valid JSON ({err}; truncated or damaged?); {fix}") from None
    return check_record(rec, path, fix)


def check_record(rec, path, fix: str) -> dict:
    missing = [k for k in RUN_KEYS if k not in rec] if isinstance(rec, dict) else list(RUN_KEYS)
    if missing:
        raise DamagedRunError(f"run file {path} is not a complete run record (missing {', '.join(missing)}); {fix}")
    return rec


def read_cell(path) -> list[tuple[str, dict]]:
    """The (run file, record) pairs of a cell file (`cltm.paths.CELL_JSON`, written by its cell job)."""
    fix = (f"delete it (`rm {path}`) and run your usual command again: the cell's finished runs are put back "
           "without training")
    try:
        data = json.loads(Path(path).read_text())
    except OSError as err:
        raise DamagedRunError(f"cell file {path} cannot be read ({err.strerror}); {fix}") from None
    except ValueError as err:
        raise DamagedRunError(f"cell file {path} is not valid JSON ({err}; truncated or damaged?); {fix}") from None
    if not isinstance(data, dict) or not isinstance(data.get("runs"), list):
        raise DamagedRunError(f"cell file {path} holds no list of runs; {fix}")
    return [(item.get("file", str(path)), check_record(item.get("record"), item.get("file", path), fix))
            for item in data["runs"]]
