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
    missing = [k for k in RUN_KEYS if k not in rec] if isinstance(rec, dict) else list(RUN_KEYS)
    if missing:
        raise DamagedRunError(f"run file {path} is not a complete run record (missing {', '.join(missing)}); {fix}")
    return rec


def load_runs(paths) -> pd.DataFrame:
    """One row per run: identity, every metric, sizes, timing and the config digest."""
    rows = []
    for path in paths:
        rec = read_run(path)
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
            "`snakemake --cores N --forcerun finetune`, or delete the run files of the old settings"
        )
    return runs.sort_values(["target", "condition", "seed"], kind="stable").reset_index(drop=True)
