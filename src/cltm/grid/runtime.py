"""The time a cell's cluster job asks for (the finetune rule's `runtime`, minutes): from measured time
where there is one, else the task kind's default per run (`cltm.defaults.RUNTIME_MINUTES`).

A cell asks for seeds x the time of one run. Measured time, in order: the `wall_s` of runs of finished
cells of the task with the same settings (their records carry the settings digest; the latest cell files
are read), else `preflight.seconds_per_run.<task>` (docs/data.md, "Preflight"). A run's time scales with
its training set: a single run trains on N clips, dual and donor runs on 2N, so a measured run is scaled
by that ratio (`TRAINING_SHARE`; evaluation does not scale, so the estimate errs long). Then times
`MARGIN`, plus `OVERHEAD_MINUTES` for the job's start-up, and times `attempt`: a retried job asks for more.
Standard library only: Snakemake evaluates it while planning.
"""

from __future__ import annotations

import functools
import json
import math
from pathlib import Path

from cltm.paths import CELL_JSON, SINGLE

MARGIN = 1.5  # measured times vary (clip lengths, node load); a job over its limit is killed and retried
OVERHEAD_MINUTES = 5  # the job's start: the worker's imports, the encoder's load, CUDA, the cell file
SAMPLE = 20  # finished cells read at most (the newest), so that planning a thesis-scale grid stays fast
READ_AT_MOST = 100  # cell files opened at most while looking for SAMPLE of the same settings


def training_share(condition: str) -> int:
    """A condition's training set in units of N: single 1, dual and donor-<lang> 2."""
    return 1 if condition == SINGLE else 2


@functools.lru_cache(maxsize=None)
def _measured_by_digest(task: str, root: str) -> dict[str, float]:
    """{settings digest: the longest wall_s per unit of training set} over the runs of the newest
    finished cells of `task` (at most SAMPLE cells per digest, READ_AT_MOST files). Read once per process:
    Snakemake plans every job in one."""
    pattern = CELL_JSON.format(task=task, target="*", condition="*")
    files = sorted(Path(root).glob(pattern), key=lambda p: p.stat().st_mtime, reverse=True)[:READ_AT_MOST]
    longest: dict[str, float] = {}
    cells: dict[str, int] = {}
    for path in files:
        try:
            runs = json.loads(path.read_text()).get("runs") or []
        except (OSError, ValueError, AttributeError):
            continue
        seen = set()
        for run in runs:
            record = run.get("record") if isinstance(run, dict) else None
            if not isinstance(record, dict) or not record.get("wall_s") or not record.get("config_digest"):
                continue
            digest = record["config_digest"]
            if cells.get(digest, 0) >= SAMPLE:
                continue
            per_n = float(record["wall_s"]) / training_share(record.get("condition", SINGLE))
            longest[digest] = max(longest.get(digest, 0.0), per_n)
            seen.add(digest)
        for digest in seen:
            cells[digest] = cells.get(digest, 0) + 1
    return longest


def measured_seconds_per_n(task: str, digest, root: str = ".") -> float | None:
    """The longest `wall_s` per unit of training set (`training_share`) among the runs of the newest
    finished cells of `task` made with the settings digest `digest` (a string, or a function giving it,
    called only where the task has finished cells); None without one."""
    found = _measured_by_digest(task, str(root))
    if not found:
        return None
    return found.get(digest() if callable(digest) else digest)


def cell_runtime_minutes(*, seeds: int, attempt: int, condition: str, default_minutes: float,
                         measured_per_n: float | None = None, preflight_seconds: float | None = None,
                         margin: float = MARGIN) -> int:
    """Minutes a cell's job asks for: seeds x (seconds per run) x margin + the job's start-up, times
    attempt, from `measured_per_n` (seconds per run and unit of training set, `measured_seconds_per_n`),
    else `preflight_seconds` (a dual run's, as docs/data.md measures it), else `default_minutes` per run
    (today's figures, without margin or start-up) x seeds x attempt."""
    seeds, attempt = max(1, int(seeds)), max(1, int(attempt))
    if measured_per_n:
        per_run = measured_per_n * training_share(condition)
    elif preflight_seconds:
        per_run = float(preflight_seconds)
    else:
        return int(math.ceil(default_minutes * seeds)) * attempt
    return int(math.ceil(OVERHEAD_MINUTES + seeds * per_run * margin / 60)) * attempt


def finetune_runtime(config: dict, task: str, condition: str, digest, seeds: int, attempt: int,
                     default_minutes: float, root: str = ".") -> int:
    """The finetune rule's `runtime` for the cell (task, condition) of a workflow's `config`: measured time
    of finished cells with the settings digest `digest` (or a function giving it), else the config's
    `preflight.seconds_per_run`, else the default (`cell_runtime_minutes`)."""
    preflight = ((config.get("preflight") or {}).get("seconds_per_run") or {}).get(task)
    return cell_runtime_minutes(seeds=seeds, attempt=attempt, condition=condition, default_minutes=default_minutes,
                                measured_per_n=measured_seconds_per_n(task, digest, root),
                                preflight_seconds=preflight)
