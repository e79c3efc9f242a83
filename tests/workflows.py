"""Running the workflow through Snakemake in a test: the reduced demo config, the command, dry-run plans,
and copies of a finished workflow (tests/conftest.py builds the shared finished runs once per session)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
SNAKEMAKE = [sys.executable, "-m", "snakemake"]

REDUCED = {
    "languages": ["en", "tr"],
    # no plant, so the planted task is off (needs_plant): it has its own run (tests/test_planted_workflow.py)
    "corpus": {"type": "demo", "demo": {"n_speakers_per_gender": 4, "utterances_per_speaker": 6, "seed": 7,
                                        "plant": None}},
    "data": {"test": {"speakers_per_gender": 2, "min_clips_per_speaker": 4, "max_clips_per_speaker": 4}},
    "tasks": {
        "gender": {"n_per_class": 3, "max_clips_per_speaker": 3,
                   "training": {"epochs": 2, "batch_size": 2, "crop_seconds": 0.5}},
        "speaker": {"n_utterances": 6, "max_utterances_per_speaker": 3, "max_positives_per_speaker": 4,
                    "training": {"epochs": 2, "batch_size": 2, "crop_seconds": 0.5}},
    },
    # no encoder key: the demo's own, the pretrained tiny HuBERT shipped in models/ (a local directory)
    "seeds": [1, 2],
}


def snakemake(workdir: Path, *args: str, check: bool = True, env: dict | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "CLTM_WORKER_IDLE": "30", **(env or {})}  # the warm worker leaves soon after the tests
    proc = subprocess.run([*SNAKEMAKE, *args], cwd=workdir, env=env, capture_output=True, text=True, timeout=1800)
    if check and proc.returncode != 0:
        raise AssertionError(f"snakemake {' '.join(args)} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-6000:]}")
    return proc


def write_config(workdir: Path, name: str, config: dict) -> str:
    path = workdir / name
    path.write_text(yaml.safe_dump(config))
    return str(path)


def planned(workdir: Path, *args: str) -> dict[str, int]:
    """Jobs per rule that a dry run plans, from its first job-stats table (a dry run prints it twice)."""
    return jobs_planned(snakemake(workdir, "-n", *args).stdout)


def jobs_planned(out: str) -> dict[str, int]:
    """Jobs per rule in a dry run's output (`planned`), for a test that reads the same output for more."""
    if "Nothing to be done" in out:
        return {}
    counts = {}
    for line in out.split("Job stats:")[1].splitlines()[3:]:
        parts = line.split()
        if len(parts) == 2 and parts[1].isdigit():
            counts[parts[0]] = int(parts[1])
        if parts and parts[0] == "total":
            break
    return counts


def copy_workflow(source: Path, dest: Path) -> Path:
    """A copy of a finished workflow (checkout, results/ and Snakemake's metadata) that behaves as the
    original: `cp -a` keeps mtimes (Snakemake compares them), symbolic links, and the hard links between
    the runs under results/ and their kept copies under results/.cltm/kept. Snakemake's locks are left
    out. Copies are independent: a test may change its own."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run(["cp", "-a", str(source), str(dest)], check=True)
    shutil.rmtree(dest / ".snakemake" / "locks", ignore_errors=True)
    return dest
