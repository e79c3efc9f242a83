"""The workflow on a real SLURM cluster through `--profile slurm`, and the profiles' plans.

A single-node cluster (munged, slurmctld, slurmd, two fake GPUs) is installed from Debian packages
and started by tests/slurm/testbed.py. On a machine where that is impossible (not root, no apt) the
cluster tests skip with the reason, except in CI (`CI=true`), where they fail. The test cluster has
no accounting, so tests/slurm/profile adds `slurm-status-command: squeue` and its own small
partition and resources on top of profiles/slurm.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent / "slurm"))
import testbed  # noqa: E402

from test_workflow import REDUCED, write_config  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SNAKEMAKE = [sys.executable, "-m", "snakemake"]
PROFILES = ["--profile", "slurm", "--profile", "tests/slurm/profile"]
RUNS = 2 * 2 * 3 * 2  # tasks x targets x (single, dual, one donor) x seeds
CELLS = RUNS // 2  # one finetune job per cell, with both seeds
# On the cluster: the reduced demo's gender task (gender.yaml). Its speaker task would add six more cells, SLURM
# jobs of the same kind (over a minute on 2 cores); it runs through Snakemake in tests/test_workflow.py, and the
# profiles' plans above are of both tasks.
GENDER = {**REDUCED, "tasks": {**REDUCED["tasks"], "speaker": None}}
CLUSTER_RUNS = 2 * 3 * 2  # targets x (single, dual, one donor) x seeds
CLUSTER_CELLS = CLUSTER_RUNS // 2


def checkout(dest: Path) -> Path:
    """What a user has after cloning: the workflow files and the profiles (the package is installed)."""
    dest.mkdir(parents=True, exist_ok=True)
    shutil.copy(ROOT / "Snakefile", dest)
    for folder in ("workflow", "config", "profiles", "models"):
        shutil.copytree(ROOT / folder, dest / folder, symlinks=True)
    for link in ("slurm", "workstation"):
        os.symlink(os.readlink(ROOT / link), dest / link)
    shutil.copytree(ROOT / "tests/slurm/profile", dest / "tests/slurm/profile")
    write_config(dest, "reduced.yaml", REDUCED)
    write_config(dest, "gender.yaml", GENDER)
    return dest


def run(work: Path, *args: str, env: dict | None = None, check: bool = True) -> subprocess.CompletedProcess:
    with subprocess.Popen([*SNAKEMAKE, *args], cwd=work, env={**os.environ, **(env or {})}, text=True,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE) as popen:
        try:
            out, err = popen.communicate(timeout=2400)
        except subprocess.TimeoutExpired:
            popen.send_signal(signal.SIGINT)  # Snakemake then cancels its SLURM jobs
            out, err = popen.communicate(timeout=120)
            raise AssertionError(f"snakemake {' '.join(args)} timed out:\n{out[-3000:]}\n{err[-6000:]}") from None
    proc = subprocess.CompletedProcess(popen.args, popen.returncode, out, err)
    if check and proc.returncode != 0:
        raise AssertionError(f"snakemake {' '.join(args)} failed:\n{proc.stdout[-4000:]}\n{proc.stderr[-8000:]}")
    return proc


# ---------------------------------------------------------------- plans (no cluster needed)


def test_slurm_profile_asks_one_gpu_per_cell(tmp_path):
    """One SLURM job per cell (its seeds' runs together); no Snakemake job groups for the grid (they
    doubled planning at thesis scale: README, "Thesis scale")."""
    work = checkout(tmp_path / "checkout")
    for profiles in (PROFILES, ["--profile", "slurm"]):  # the test cluster's, and the shipped profile alone
        proc = run(work, "-n", *profiles, "--configfile", "reduced.yaml")
        out = proc.stdout + proc.stderr
        assert "Group job" not in out, out[-3000:]
        stats = dict(re.findall(r"^(\w+)\s+(\d+)$", out.split("Job stats:")[1], re.M))
        assert int(stats["finetune"]) == CELLS


def test_workstation_profile_plans_the_grid_locally(tmp_path):
    work = checkout(tmp_path / "checkout")
    proc = run(work, "-n", "--profile", "workstation", "--configfile", "reduced.yaml")
    out = proc.stdout + proc.stderr
    assert "Group job" not in out and "slurm" not in out.lower()
    assert re.search(rf"^finetune\s+{CELLS}$", out, re.M)


# ---------------------------------------------------------------- the real cluster


@pytest.fixture(scope="session")
def cluster(tmp_path_factory):
    """The single-node test cluster: started here, stopped (by PID) at the end of the session."""
    reason = testbed.unavailable_reason()
    if reason is None and importlib.util.find_spec("snakemake_executor_plugin_slurm") is None:
        reason = "snakemake-executor-plugin-slurm is not installed (pip install -e .)"
    if reason:
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI must run the SLURM tests, but: {reason}")
        pytest.skip(reason)
    scratch = testbed.start_cluster(log=lambda m: print(m, file=sys.stderr))
    yield scratch
    testbed.stop_cluster(scratch)
    shutil.rmtree(scratch, ignore_errors=True)


def slurm_jobs(output: str) -> dict[str, str]:
    """SLURM job id -> its log path, from the plugin's submission lines."""
    return dict(re.findall(r"submitted with SLURM jobid (\d+) \(log: (\S+)\)", output))


def scontrol(jobid: str) -> str:
    return subprocess.run(["scontrol", "show", "job", jobid], capture_output=True, text=True, check=True).stdout


@pytest.fixture(scope="module")
def on_cluster(cluster, tmp_path_factory):
    """A checkout after the whole reduced demo (its gender task: gender.yaml) ran through `--profile slurm` on
    the test cluster. Tests only
    read it; a test that runs the workflow again does so in its own copy (`own_copy`), so that no test
    depends on the order they run in or on what another's failing run left behind."""
    work = checkout(tmp_path_factory.mktemp("slurm") / "checkout")
    workers = tmp_path_factory.mktemp("workers")
    env = {"CLTM_WORKER_IDLE": "90", "CLTM_WORKER_DIR": str(workers)}  # exported to the jobs (--export=ALL)
    t0 = time.monotonic()
    proc = run(work, "--cores", "2", *PROFILES, "--configfile", "gender.yaml", env=env)
    print(f"reduced demo through SLURM: {time.monotonic() - t0:.0f} s", file=sys.stderr)
    return {"work": work, "out": proc.stdout + proc.stderr, "env": env, "workers": workers}


def own_copy(on_cluster, tmp_path_factory) -> tuple[Path, dict]:
    """A copy of the finished checkout (times kept, so Snakemake sees the same finished workflow; results/
    included, its kept runs too) and the jobs' environment with a workers folder of its own, for a test that
    runs the workflow again: what it changes, its workers' logs, and whatever a stopped or failing run of it
    leaves stay with the copy."""
    work = Path(shutil.copytree(on_cluster["work"], tmp_path_factory.mktemp("copy") / "checkout", symlinks=True,
                                ignore=shutil.ignore_patterns("*.sock")))
    return work, {**on_cluster["env"], "CLTM_WORKER_DIR": str(tmp_path_factory.mktemp("workers"))}


def test_demo_runs_through_slurm_in_bundles(on_cluster):
    work, out = on_cluster["work"], on_cluster["out"]
    assert not (work / "results/speaker").exists()
    for task, metric in (("gender", "macro_f1"),):
        runs = pd.read_csv(work / f"results/{task}/runs.csv")
        assert len(runs) == CLUSTER_RUNS and runs["metric"].eq(metric).all() and runs["value"].between(0, 1).all()
        cltm = pd.read_csv(work / f"results/{task}/cltm.csv", index_col=0)
        assert list(cltm.index) == ["en", "tr"] == list(cltm.columns)
        assert cltm.loc["en", "en"] == 1.0 and cltm.loc["tr", "tr"] == 1.0
        mean = runs.groupby(["target", "condition"])["value"].mean()
        den = mean["tr", "dual"] - mean["tr", "single"]
        if abs(den) > 1e-9:
            assert cltm.loc["tr", "en"] == pytest.approx((mean["tr", "donor-en"] - mean["tr", "single"]) / den, rel=1e-5)
        assert (work / f"results/{task}/cltm.png").stat().st_size > 10_000
        assert not list((work / f"results/{task}").glob("checkpoints/**/*.pt"))  # removed with each result

    jobs = slurm_jobs(out)
    bundles = {j: log for j, log in jobs.items() if "/rule_finetune/" in log}  # one SLURM job per cell
    cpu_jobs = {j: log for j, log in jobs.items() if "/rule_" in log and j not in bundles}
    assert len(bundles) == CLUSTER_CELLS, out[-3000:]  # 12 runs in 6 cells
    rules = {part[5:] for log in cpu_jobs.values() for part in Path(log).parts if part.startswith("rule_")}
    assert rules == {"synthesize_demo", "manifest", "speakers", "test_speakers", "select", "data_summary",
                     "prepare_audio", "data_report", "preflight", "encoder", "settings", "assemble", "plot", "analyse",
                     "analysis_plots"}
    for jobid, log in bundles.items():
        info = scontrol(jobid)
        assert "gres:gpu:1" in info and "JobState=COMPLETED" in info, info  # one GPU for the cell's runs
        assert Path(log).exists()  # kept: slurm-keep-successful-logs
        assert "Finished jobid" in Path(log).read_text()
    for jobid in cpu_jobs:
        info = scontrol(jobid)
        assert "gpu" not in info.lower(), info  # CPU work asks for CPUs only
        assert "JobState=COMPLETED" in info
    # the runs of one cell share one warm worker, private to its SLURM job
    started = [line for log in on_cluster["workers"].glob("*.sock.log") for line in log.read_text().splitlines()
               if "serving" in line]
    served = [re.search(r"for SLURM job (\d+)", line).group(1) for line in started]
    assert sorted(served) == sorted(bundles), started


def test_one_run_rerun_and_a_packed_cell_on_the_cluster(on_cluster, tmp_path_factory):
    """One workflow run, two SLURM jobs at once, each as it would be alone:
    - one run named by its file (`-f`, the `run` rule) is trained again in one SLURM job with the same result,
      and the other run of its cell is left as it was;
    - a cell packed at runs_per_gpu 2 (`-f` on its cell file: its job trains both runs again, their kept copies
      dropped first) trains its two runs at once in its one SLURM job on its one GPU, and gives the run JSONs
      (all but timing) and scores that they gave one after the other."""
    work, env = own_copy(on_cluster, tmp_path_factory)
    target = "results/gender/runs/en/single/seed1.json"
    before = json.loads((work / target).read_text())
    other = (work / "results/gender/runs/en/single/seed2.json").read_bytes()  # the same cell: put back as it was
    packed = [f"results/gender/runs/tr/dual/seed{s}.json" for s in (1, 2)]

    def result(path):
        rec = json.loads((work / path).read_text())
        return {k: v for k, v in rec.items() if k not in ("timing", "wall_s")}, (work / path.replace(
            ".json", ".scores.tsv")).read_bytes()

    packed_before = [result(r) for r in packed]
    proc = run(work, target, "results/gender/cells/tr/dual.json", "-f", "--cores", "2", *PROFILES, "--set-resources",
               "finetune:runs_per_gpu=2", "-p", "--configfile", "gender.yaml", env=env)
    out = proc.stdout + proc.stderr
    assert "2 of 2 steps (100%) done" in out and len(slurm_jobs(out)) == 2, out[-3000:]
    jobs = slurm_jobs(out).values()
    assert sum("/rule_run/" in log for log in jobs) == 1 and sum("/rule_finetune/" in log for log in jobs) == 1, jobs

    after = json.loads((work / target).read_text())
    assert after["metrics"] == before["metrics"] and after["loss"] == before["loss"]
    assert (work / "results/gender/runs/en/single/seed2.json").read_bytes() == other

    assert "--pack 2" in out, out[-3000:]
    log = (work / "results/logs/finetune/gender/tr/dual.log").read_text()
    assert "training 2, 2 at a time" in log, log
    assert [result(r) for r in packed] == packed_before


def test_stopped_run_resumes_from_its_checkpoint(on_cluster, tmp_path, tmp_path_factory):
    """scancel (SIGTERM, as for preemption) a run mid-way: no result appears; rerun: it resumes from its
    checkpoint and gives exactly the result of an uninterrupted run. In its own copy of the checkout: it
    changes the gender settings there, and a run stopped on purpose leaves a checkpoint and no result."""
    # another config file in the same results/, on purpose
    work, env = own_copy(on_cluster, tmp_path_factory)
    env.update(CLTM_CHECKPOINT_SECONDS="1", CLTM_NEW_CONFIG="1")
    long = json.loads(json.dumps(GENDER))
    long["tasks"]["gender"]["training"]["epochs"] = 50  # 150 steps (3 per epoch): long enough to stop mid-way
    long["seeds"] = [1]  # the cell's job then holds that one run
    config = write_config(work, "long.yaml", long)
    target = "results/gender/runs/en/single/seed1.json"
    checkpoint = work / "results/gender/checkpoints/en/single/seed1.pt"
    log = work / "results/logs/finetune/gender/en/single/seed1.log"
    args = [target, "--cores", "2", *PROFILES, "--configfile", config]  # the target first: --configfile takes several
    first = subprocess.Popen([*SNAKEMAKE, *args], cwd=work, env={**os.environ, **env}, stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 1200
        while not (checkpoint.exists() and log.exists() and "checkpoint saved at step" in log.read_text()):
            if first.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"no checkpoint was written:\n{first.stdout.read()[-4000:] if first.poll() is not None else ''}")
            time.sleep(0.2)
        jobid = subprocess.run(["squeue", "-h", "-o", "%i %k"], capture_output=True, text=True).stdout
        jobid = [line.split()[0] for line in jobid.splitlines() if line.strip()]  # the run's job, alone
        assert len(jobid) == 1, jobid
        subprocess.run(["scancel", jobid[0]], check=True)  # SIGTERM to the job, as preemption does
        out, _ = first.communicate(timeout=600)
    finally:
        if first.poll() is None:
            first.send_signal(signal.SIGINT)
            first.wait(60)
    assert first.returncode != 0, out[-3000:]
    assert not (work / target).exists()  # nothing that looks like a result
    assert checkpoint.exists()
    saved_at = int(re.findall(r"checkpoint saved at step (\d+)", log.read_text())[-1])
    assert 0 < saved_at < 150

    rerun = run(work, *args, env=env)
    text = log.read_text()
    resumed_at = int(re.search(r"resumed from checkpoint at step (\d+)/150", text).group(1))
    assert resumed_at >= saved_at and "1 of 1 steps (100%) done" in rerun.stdout + rerun.stderr
    assert not checkpoint.exists()
    resumed = json.loads((work / target).read_text())

    # the same run, uninterrupted, in a process of its own: the same numbers
    ref = tmp_path / "ref"
    proc = subprocess.run([sys.executable, "-m", "cltm.worker", "finetune", "--settings", "results/gender/settings.json",
                           "--task", "gender", "--target", "en", "--condition", "single", "--seed", "1",
                           "--encoder", "results/encoder/model.safetensors", "--subsets", "results/subsets/gender/en.json",
                           "--audio", "results/audio/en.npy", "--run", str(ref / "run.json"),
                           "--scores", str(ref / "scores.tsv")], cwd=work, env={**os.environ, "CLTM_WORKER": "0"},
                          capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    reference = json.loads((ref / "run.json").read_text())
    assert resumed["loss"] == reference["loss"] and resumed["metrics"] == reference["metrics"]
    assert resumed["loss"]["steps"] == 150


def test_no_run_on_the_cluster_trains_on_its_targets_test_voices(on_cluster):
    from leakage import assert_no_leakage

    assert assert_no_leakage(on_cluster["work"]) == CLUSTER_RUNS
