"""How long does Snakemake take to plan a grid of L languages, and how much memory? Prints figures.

    python benchmarks/plan_scale.py [--languages 16 24 32 54] [--profile none slurm]
                                    [--workflow DIR] [--label NAME]

For each L: a Common Voice-shaped placeholder tree (an empty clip list per locale: a dry run only
checks that inputs exist), a config of L languages x 10 seeds x both tasks (2 x L x (L + 1) x 10 runs),
and one `snakemake -n` (with `--profile slurm` where asked; every planned job printed, as a user sees
it), timed (wall clock and the CPU time of the Snakemake process, which another load on the machine
disturbs less), with the peak memory (max RSS) of the Snakemake process. `--workflow DIR` plans the workflow of another checkout (e.g. an older commit:
`git worktree add /tmp/old <commit>`), so the README can show the design before and after.
The machine's CPU count and model are printed with the table.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml
from machine import machine

ROOT = Path(__file__).resolve().parents[1]
# the paper's 16 first (so L = 16 is the paper preset's grid), then Common Voice locales with data
LANGUAGES = ["ar", "en", "de", "ckb", "kmr", "fr", "ca", "es", "be", "ru", "uk", "eu", "zh-CN", "zh-TW", "ky", "tr",
             "it", "pl", "fa", "ja", "nl", "pt", "rw", "sw", "ta", "th", "cy", "hu", "lg", "mhr", "ka", "cs",
             "sv-SE", "fy-NL", "ro", "lt", "et", "sl", "el", "id", "mn", "ab", "tt", "ur", "bn", "ga-IE", "gl",
             "sk", "uz", "hi", "mr", "lv", "sr", "ha"]


def prepare(work: Path, workflow: Path, langs: list[str]) -> None:
    for item in ("Snakefile", "workflow", "config", "envs", "profiles", "src", "models"):
        src = workflow / item
        if src.exists() and not (work / item).exists():
            (shutil.copytree if src.is_dir() else shutil.copy)(src, work / item)
    if not (work / "slurm").exists():
        os.symlink("profiles/slurm", work / "slurm")
    for lang in langs:
        (work / "cv" / lang).mkdir(parents=True, exist_ok=True)
        (work / "cv" / lang / "validated.tsv").touch()
    (work / "scale.yaml").write_text(yaml.safe_dump({
        "languages": langs, "seeds": list(range(1, 11)),
        "corpus": {"type": "common_voice", "common_voice": {"root": str(work / "cv")}},
    }))


def plan(work: Path, profile: str | None) -> tuple[float, float, float, int, int]:
    """(wall seconds, CPU seconds, peak MB, jobs, bundles or 0) of one dry run."""
    cmd = [sys.executable, "-m", "snakemake", "-n", "--cores", "8"]  # a user's dry run: every job printed
    if profile:
        cmd += ["--profile", profile]
    cmd += ["--configfile", "scale.yaml"]
    env = {**os.environ, "CLTM_NEW_CONFIG": "1"}
    # a user's calls after the first find Python's byte code compiled: warm up with a one-job plan
    subprocess.run([*cmd[:3], "-n", "--cores", "1", "--configfile", "scale.yaml", "results/encoder/summary.json"],
                   cwd=work, env=env, capture_output=True)
    # wait4 for this child alone: RUSAGE_CHILDREN would take the maximum over every child so far
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=work, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    out = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.perf_counter() - t0
    if os.waitstatus_to_exitcode(status) != 0:
        sys.exit(f"snakemake failed:\n{out[-3000:]}")
    total = 0
    for line in out.splitlines():
        m = re.match(r"\s*total\s+(\d+)\s*$", line)
        if m:
            total = int(m.group(1))
            break
    groups = len(re.findall(r"Group job bundle", out)) if profile else 0
    return seconds, usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024, total, groups


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--languages", type=int, nargs="+", default=[16, 24, 32, 54])
    ap.add_argument("--profile", nargs="+", default=["none", "slurm"], choices=["none", "slurm"])
    ap.add_argument("--workflow", type=Path, default=ROOT, help="checkout whose workflow is planned")
    ap.add_argument("--label", default=None, help="name of the design in the table (default: the checkout's commit)")
    args = ap.parse_args()
    if max(args.languages) > len(LANGUAGES):
        sys.exit(f"at most {len(LANGUAGES)} languages")
    label = args.label or subprocess.run(["git", "-C", str(args.workflow), "log", "-1", "--format=%h"],
                                         capture_output=True, text=True).stdout.strip() or str(args.workflow)
    print(f"{label}: {machine()}")
    print(f"{'languages':>9} {'runs':>7} {'profile':>8} {'jobs':>7} {'bundles':>8} {'dry run (s)':>12} "
          f"{'CPU (s)':>8} {'peak (MB)':>10}")
    for n in args.languages:
        langs = LANGUAGES[:n]
        runs = 2 * n * (n + 1) * 10
        for profile in args.profile:
            with tempfile.TemporaryDirectory() as tmp:
                work = Path(tmp)
                prepare(work, args.workflow, langs)
                seconds, cpu, peak, jobs, groups = plan(work, None if profile == "none" else "slurm")
            print(f"{n:>9} {runs:>7,} {profile:>8} {jobs:>7,} {groups:>8,} {seconds:>12.1f} {cpu:>8.1f} {peak:>10.0f}",
                  flush=True)


if __name__ == "__main__":
    main()
