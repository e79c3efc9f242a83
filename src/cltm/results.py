"""Run records: one JSON per run, gathered into one long table (every run, nothing filtered)."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from cltm.errors import CltmError


class StaleRunsError(CltmError):
    """Runs made under different settings would be mixed in one matrix."""


class DamagedRunError(CltmError):
    """A run JSON that cannot be read as a run (empty, truncated, or missing fields); the message names it."""


# the plot rule's figures of a task, results/<task>/<name>.{png,svg} (final targets: workflow/rules/common.smk)
FIGURES = ("cltm", "relative_change", "baselines")

RUN_KEYS = ("task", "target", "condition", "donor", "seed", "metric", "value", "metrics", "sizes", "loss",
            "timing", "device", "config_digest")


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
    """The (run file, record) pairs of a cell file (`cltm.runs.CELL_JSON`, written by its cell job)."""
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


def load_cells(paths) -> pd.DataFrame:
    """`load_runs` over cell files: every run of every cell."""
    return _table([pair for path in paths for pair in read_cell(path)])


def load_runs(paths) -> pd.DataFrame:
    """One row per run: identity, every metric, sizes, timing and the config digest."""
    return _table([(path, read_run(path)) for path in paths])


def _table(pairs) -> pd.DataFrame:
    rows = []
    for path, rec in pairs:
        row = {k: rec[k] for k in ("task", "target", "condition", "donor", "seed", "metric", "value")}
        row.update(rec["metrics"])
        row.update({f"n_{k}": v for k, v in rec["sizes"].items()})
        row.update(loss_first=rec["loss"]["first"], loss_last=rec["loss"]["last"],
                   train_s=rec["timing"]["train_s"], eval_s=rec["timing"]["eval_s"], wall_s=rec.get("wall_s"),
                   device=rec["device"], precision=rec.get("precision", "fp32"),  # runs before the key: fp32
                   config_digest=rec["config_digest"], file=str(path))
        rows.append(row)
    runs = pd.DataFrame(rows)
    digests = runs["config_digest"].unique()
    if len(digests) > 1:
        counts = runs.groupby("config_digest")["file"].agg(["count", "first"])
        detail = "; ".join(f"{d}: {c['count']} runs (e.g. {c['first']})" for d, c in counts.iterrows())
        raise StaleRunsError(
            f"runs of one matrix were made under different settings ({detail}). Rerun the stale ones, e.g. "
            "`snakemake --cores N --forcerun finetune` (runs kept with today's inputs are not trained again)"
        )
    return runs.sort_values(["target", "condition", "seed"], kind="stable").reset_index(drop=True)
