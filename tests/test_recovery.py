"""`kill -9` of Snakemake mid-job, then the README's recovery, through real Snakemake (issue 8).

What the next plain invocation says depends on how far the killed job got: a stale lock
("Directory cannot be locked") or, when an output was half-written, incomplete files. The README's
two commands recover from both: `snakemake --unlock`, then the usual command with `--rerun-incomplete`."""

from __future__ import annotations

import os
import signal
import subprocess
import time

from conftest import copy_checkout
from workflows import REDUCED, SNAKEMAKE, snakemake, write_config


def test_kill_9_then_the_documented_recovery(tmp_path):
    work = copy_checkout(tmp_path / "checkout")
    write_config(work, "reduced.yaml", REDUCED)
    target = ("results/manifests/en.tsv", "--configfile", "reduced.yaml")
    clips = work / "results/demo_corpus/en/clips"
    # its own session, so that kill -9 takes Snakemake and its job at once (a crash, a node lost)
    proc = subprocess.Popen([*SNAKEMAKE, "--cores", "1", *target], cwd=work, start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            env={**os.environ, "CLTM_WORKER_IDLE": "30"})
    try:
        deadline = time.monotonic() + 120
        while not (clips.is_dir() and any(clips.iterdir())):  # the synthesis job is writing its clips folder
            assert proc.poll() is None and time.monotonic() < deadline, "the job ended before it could be killed"
            time.sleep(0.1)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    assert not (work / "results/demo_corpus/en/validated.tsv").exists()  # killed mid-job

    stuck = snakemake(work, "--cores", "1", *target, check=False)
    assert stuck.returncode != 0
    said = stuck.stdout + stuck.stderr
    assert "--rerun-incomplete" in said or "--unlock" in said
    also = snakemake(work, "--cores", "1", "--rerun-incomplete", *target, check=False)
    assert also.returncode != 0 and "--unlock" in also.stdout + also.stderr  # the stale lock stays

    # the README's recovery ("Recovering after a crash")
    snakemake(work, "--unlock")
    snakemake(work, "--cores", "1", "--rerun-incomplete", *target)
    assert (work / "results/manifests/en.tsv").exists()
    assert "Nothing to be done" in snakemake(work, "-n", *target).stdout
