"""How many SLURM jobs does a paper-scale grid become under profiles/slurm? Prints figures.

    python benchmarks/slurm_bundles.py

Builds the paper's grid (16 targets x 17 conditions (single, dual, 15 donors) x 10 seeds x 2 tasks
= 5,440 fine-tuning runs) over a placeholder Common Voice tree (empty clip lists: nothing is read),
lets Snakemake plan it with `--profile slurm` in a dry run, and counts the SLURM jobs it would submit:
one per fine-tuning cell (a task, target and condition with its 10 seeds: 544 cells, each asking for
10 x the per-run `runtime`), one per CPU job.
"""

from __future__ import annotations

import collections
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
LANGUAGES = ["ar", "en", "de", "ckb", "kmr", "fr", "ca", "es", "be", "ru", "uk", "eu", "zh-CN", "zh-TW", "ky", "tr"]


def plan(work: Path) -> tuple[collections.Counter, float]:
    cmd = [sys.executable, "-m", "snakemake", "-n", "--profile", "slurm", "--configfile", "paper_scale.yaml"]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=work, capture_output=True, text=True, env={**os.environ, "CLTM_NEW_CONFIG": "1"})
    if proc.returncode != 0:
        sys.exit(f"snakemake failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    out = proc.stdout + proc.stderr
    counts = collections.Counter()
    counts["groups"] = len(re.findall(r"Group job", out))
    for line in out.split("Job stats:")[1].split("Reasons")[0].splitlines():
        m = re.match(r"(\w+)\s+(\d+)$", line.strip())
        if m and m.group(1) not in ("total", "all"):
            counts[m.group(1)] = int(m.group(2))
    return counts, time.perf_counter() - t0


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        for item in ("Snakefile", "workflow", "config", "envs", "profiles", "src"):
            (shutil.copytree if (ROOT / item).is_dir() else shutil.copy)(ROOT / item, work / item)
        os.symlink("profiles/slurm", work / "slurm")
        for lang in LANGUAGES:  # placeholders: a dry run only checks that the inputs exist
            (work / "cv" / lang).mkdir(parents=True)
            (work / "cv" / lang / "validated.tsv").touch()
        (work / "paper_scale.yaml").write_text(yaml.safe_dump({
            "languages": LANGUAGES, "seeds": list(range(1, 11)),
            "corpus": {"type": "common_voice", "common_voice": {"root": str(work / "cv")}},
        }))
        print(f"paper-scale grid: {len(LANGUAGES)} targets x {len(LANGUAGES) + 1} conditions x 10 seeds x 2 tasks")
        counts, seconds = plan(work)
        cells = counts.pop("finetune")
        groups = counts.pop("groups")
        cpu = sum(counts.values())  # every other job (the local rules of data.smk among them)
        print(f"{'cells':>6} {'runs':>6} {'GPU jobs':>9} {'CPU jobs':>9} {'jobs':>6} {'job groups':>11} {'plan (s)':>9}")
        print(f"{cells:>6} {cells * 10:>6} {cells:>9} {cpu:>9} {cells + cpu:>6} {groups:>11} {seconds:>9.1f}")
    print("each cell's SLURM job asks for 10 seeds x the per-run runtime (by the task's kind: 30 min gender, "
          "120 min speaker; README)")


if __name__ == "__main__":
    main()
