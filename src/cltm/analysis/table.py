"""The runs of a matrix as one long table: every run, nothing filtered."""

from __future__ import annotations

import pandas as pd

from cltm.errors import CltmError
from cltm.method import METHOD_VERSION, method_of
from cltm.records import read_cell, read_run


class StaleRunsError(CltmError):
    """Runs made under different settings would be mixed in one matrix."""


class MixedMethodError(CltmError):
    """Runs of two method versions (`cltm.method`) would be mixed in one matrix."""


def load_cells(paths, allow_mixed_versions: bool = False) -> pd.DataFrame:
    """`load_runs` over cell files: every run of every cell."""
    return runs_table([pair for path in paths for pair in read_cell(path)], allow_mixed_versions)


def load_runs(paths, allow_mixed_versions: bool = False) -> pd.DataFrame:
    """One row per run: identity, every metric, sizes, timing and the config digest."""
    return runs_table([(path, read_run(path)) for path in paths], allow_mixed_versions)


def runs_table(pairs, allow_mixed_versions: bool = False) -> pd.DataFrame:
    """The runs as one table. Refuses runs of two settings digests (StaleRunsError) and, unless
    `allow_mixed_versions` (`matrix.allow_mixed_versions`), runs of two method versions (MixedMethodError:
    how many of each, and the command that retrains the old ones)."""
    rows = []
    for path, rec in pairs:
        row = {k: rec[k] for k in ("task", "target", "condition", "donor", "seed", "metric", "value")}
        row.update(rec["metrics"])
        row.update({f"n_{k}": v for k, v in rec["sizes"].items()})
        row.update(loss_first=rec["loss"]["first"], loss_last=rec["loss"]["last"],
                   train_s=rec["timing"]["train_s"], eval_s=rec["timing"]["eval_s"], wall_s=rec.get("wall_s"),
                   device=rec["device"], precision=rec.get("precision", "fp32"),  # runs before the key: fp32
                   config_digest=rec["config_digest"], method_version=method_of(rec),
                   source_fingerprint=rec.get("source_fingerprint", ""), file=str(path))
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
    versions = runs["method_version"].value_counts().sort_index()
    if len(versions) > 1 and not allow_mixed_versions:
        counts = ", ".join(f"{n} run(s) of method version {v}" for v, n in versions.items())
        raise MixedMethodError(
            f"runs of one matrix were computed by different methods ({counts}; this code is version "
            f"{METHOD_VERSION}). Retrain the old ones: CLTM_RETRAIN=other-code snakemake --cores N --forcerun finetune "
            "probe (plus your --configfile); or set matrix.allow_mixed_versions: true to assemble them anyway, "
            "marked as mixed in every figure")
    return runs.sort_values(["target", "condition", "seed"], kind="stable").reset_index(drop=True)


def read_square(path) -> pd.DataFrame:
    """A language x language table written by the matrix rule (cltm.csv, cltm_se.csv, ...), its row and column
    labels read as language codes (strings), whatever they look like."""
    frame = pd.read_csv(path, index_col=0)
    frame.index, frame.columns = frame.index.astype(str), frame.columns.astype(str)
    return frame
