"""Benchmark: the embedded demo from an empty results/, as a new user runs it after install.

    .venv/bin/python benchmarks/demo_time.py [--cores 2] [--keep DIR]

Copies the checkout's files (tracked and untracked, not ignored: no results/, no .snakemake/) into
a temporary directory, runs `snakemake --cores N` there (what `make demo` runs; `--curves` adds the
learning curves, as `make curves` does) with this interpreter's environment, and
prints the wall time, the number of jobs and runs, where the time went (before the first
fine-tuning job, the fine-tuning phase, after it) and per-run figures from the run JSONs, and
the demo's quality figures (for how many targets dual beats single). Figures, not a pass/fail test.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parents[1]


def copy_checkout(dest: Path) -> None:
    files = subprocess.run(["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=ROOT, check=True,
                           capture_output=True).stdout.decode().split("\0")
    for name in filter(None, files):
        src = ROOT / name
        if src.is_file():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / name)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cores", type=int, default=2)
    parser.add_argument("--curves", action="store_true", help="also the learning curves (make curves)")
    parser.add_argument("--keep", type=Path, help="run in this (new) directory and keep it")
    args = parser.parse_args()
    work = args.keep or Path(tempfile.mkdtemp(prefix="cltm-demo-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    copy_checkout(work)
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}:{os.environ['PATH']}")
    t0 = time.time()
    targets = ["all", "learning_curves"] if args.curves else []
    proc = subprocess.run(["snakemake", *targets, "--cores", str(args.cores)], cwd=work, env=env,
                          capture_output=True, text=True)
    wall = time.time() - t0
    if proc.returncode:
        print(proc.stdout[-3000:], proc.stderr[-3000:], sep="\n")
        print(f"snakemake failed (exit {proc.returncode}) after {wall:.0f} s; files in {work}")
        return 1
    paths = sorted(work.glob("results/*/runs/*/*/seed*.json"))
    runs = [json.loads(p.read_text()) for p in paths]
    jobs = sum(line.startswith("Finished jobid") for line in (proc.stdout + proc.stderr).splitlines())
    ends = [p.stat().st_mtime for p in paths]  # in the order of `runs`
    first_start = min(e - r["wall_s"] for e, r in zip(ends, runs))
    print(f"demo wall time: {wall:.0f} s ({wall / 60:.1f} min) on {os.cpu_count()} CPUs, --cores {args.cores}")
    curve_runs = len(list(work.glob("results/*/learning_curve/runs/*/*/*/seed*.json")))
    print(f"jobs: {jobs}, fine-tuning runs: {len(runs)} of the grid and {curve_runs} of the learning curves")
    print(f"  before the first run: {first_start - t0:.0f} s; runs: {max(ends) - first_start:.0f} s; "
          f"after the last run: {t0 + wall - max(ends):.0f} s")
    frame = pd.DataFrame([{"task": r["task"], "train_s": r["timing"]["train_s"], "eval_s": r["timing"]["eval_s"],
                           "wall_s": r["wall_s"]} for r in runs])
    print("per run (mean seconds, inside the job):")
    print(frame.groupby("task").mean().round(2).to_string())
    for task in sorted(frame["task"].unique()):
        base = pd.read_csv(work / "results" / task / "baselines.csv")
        wins = int((base["perf_dual"] > base["perf_single"]).sum())
        print(f"{task}: dual beats single for {wins}/{len(base)} targets (SYNTHETIC DEMO DATA): " + ", ".join(
            f"{t} {s:.3f}->{d:.3f}" for t, s, d in zip(base["target"], base["perf_single"], base["perf_dual"])))
    if not args.keep:
        shutil.rmtree(work)
    return 0


if __name__ == "__main__":
    sys.exit(main())
