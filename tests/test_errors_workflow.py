"""Start-up errors and damaged state through real Snakemake, on a copy of the checkout (issue 8).

Dry runs and cheap targets only: no fine-tuning runs here."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

from workflows import REDUCED, ROOT, snakemake, write_config
from conftest import copy_checkout


@pytest.fixture(scope="module")
def checkout(tmp_path_factory) -> Path:
    work = copy_checkout(tmp_path_factory.mktemp("checkout"))
    write_config(work, "reduced.yaml", REDUCED)
    return work


def output(proc) -> str:
    return proc.stdout + proc.stderr


def test_missing_relative_encoder_folder_stops_at_start_up(checkout):
    proc = snakemake(checkout, "-n", "--configfile", "reduced.yaml", "--config",
                     "encoder={source: models/does-not-exist}", check=False)
    assert proc.returncode != 0
    assert "encoder.source': the directory models/does-not-exist does not exist" in output(proc)
    assert "rule " not in proc.stdout  # no job was planned


def test_yaml_syntax_error_is_named_with_file_and_line(checkout):
    bad = checkout / "broken.yaml"
    bad.write_text("languages: [en, tr]\nseeds: [1, 2\ndevice: cpu\n")
    # Snakemake reads --configfile before the workflow exists, and names neither file nor line ...
    proc = snakemake(checkout, "-n", "--configfile", "broken.yaml", check=False)
    assert proc.returncode != 0 and "not valid JSON or YAML" in output(proc)
    # ... so the README's check command does
    check = subprocess.run([sys.executable, "-m", "cltm.config", "broken.yaml"], cwd=checkout, capture_output=True,
                           text=True)
    assert check.returncode == 1
    assert "config file broken.yaml, line 3, column 7: YAML syntax error" in check.stderr
    assert "started at line 2" in check.stderr, check.stderr
    ok = subprocess.run([sys.executable, "-m", "cltm.config", "reduced.yaml"], cwd=checkout, capture_output=True,
                        text=True)
    assert ok.returncode == 0 and "valid" in ok.stdout, ok.stderr
    bad.write_text("tasks: {gender: {n_per_klass: 3}}\n")
    check = subprocess.run([sys.executable, "-m", "cltm.config", "broken.yaml"], cwd=checkout, capture_output=True,
                           text=True)
    assert check.returncode == 1 and "tasks.gender" in check.stderr and "n_per_klass" in check.stderr


def test_cuda_without_a_gpu_stops_before_any_job(checkout):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    proc = snakemake(checkout, "--cores", "1", "--configfile", "reduced.yaml", "--config", "device=cuda",
                     check=False)
    assert proc.returncode != 0
    assert "config key 'device' is cuda, but this machine has no usable CUDA GPU" in output(proc)
    assert "--profile slurm" in output(proc)
    assert not (checkout / "results").exists()  # not even the demo corpus was started
    dry = snakemake(checkout, "-n", "--configfile", "reduced.yaml", "--config", "device=cuda")  # plans fine
    assert "finetune" in dry.stdout


def test_snakefile_from_another_directory(checkout, tmp_path):
    proc = snakemake(tmp_path, "-s", str(checkout / "Snakefile"), "-n", check=False)
    assert proc.returncode == 0, output(proc)[-3000:]
    assert "finetune" in proc.stdout and "required property" not in output(proc)


def test_one_task_only(checkout):
    gender_only = json.loads(json.dumps(REDUCED))
    gender_only["tasks"]["speaker"] = None
    proc = snakemake(checkout, "-n", "--configfile", write_config(checkout, "gender_only.yaml", gender_only))
    out = proc.stdout
    assert "results/gender/cltm.png" in out and "results/gender/summary.json" in out
    assert "results/speaker/" not in out and "results/subsets/speaker/" not in out
    stats = dict(line.split() for line in out.split("Job stats:")[1].split("total")[0].splitlines()[3:] if line.strip())
    assert stats["settings"] == "1" and stats["assemble"] == "1"  # one task's settings and matrix
    none = json.loads(json.dumps(gender_only))
    none["tasks"]["gender"] = None
    proc = snakemake(checkout, "-n", "--configfile", write_config(checkout, "none.yaml", none), check=False)
    assert proc.returncode != 0 and "every task is disabled" in output(proc)


def test_checkout_and_interpreter_with_a_space(tmp_path):
    """Snakemake does not quote the interpreter of `script:` jobs: a venv inside a checkout whose path holds a
    space made every such job exit 127."""
    work = copy_checkout(tmp_path / "my checkout")
    write_config(work, "reduced.yaml", REDUCED)
    venv = work / ".venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"
    purelib = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                             capture_output=True, text=True, check=True).stdout.strip()
    # this interpreter's packages (and cltm's source: the editable install's own .pth is not read from there)
    Path(purelib, "outer.pth").write_text(sysconfig.get_paths()["purelib"] + "\n" + str(ROOT / "src") + "\n")
    env = {**os.environ, "CLTM_WORKER_IDLE": "30"}
    proc = subprocess.run([str(python), "-m", "snakemake", "--cores", "2", "results/preflight/summary.txt",
                           "--configfile", "reduced.yaml"], cwd=work, env=env, capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, output(proc)[-4000:]
    assert "total: " in (work / "results/preflight/summary.txt").read_text()


def _fake_runs(work: Path) -> list[Path]:
    """Run JSONs of the gender grid of REDUCED (en, tr; 3 conditions; 2 seeds) with made-up values."""
    paths = []
    for target, other in (("en", "tr"), ("tr", "en")):
        for cond in ("single", "dual", f"donor-{other}"):
            for seed in (1, 2):
                value = {"single": 0.6, "dual": 0.8}.get(cond, 0.7) + 0.01 * seed
                path = work / f"results/gender/runs/{target}/{cond}/seed{seed}.json"
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_text(json.dumps({
                    "task": "gender", "target": target, "condition": cond,
                    "donor": other if cond.startswith("donor") else None, "seed": seed, "metric": "macro_f1",
                    "value": value, "metrics": {"macro_f1": value, "accuracy": value}, "sizes": {"train_clips": 6},
                    "loss": {"first": 0.7, "last": 0.5}, "timing": {"train_s": 1.0, "eval_s": 0.5}, "wall_s": 2.0,
                    "device": "cpu", "config_digest": "abc"}))
                paths.append(path)
    return paths


def _fake_cells(work: Path, runs: list[Path]) -> list[Path]:
    """The cell files (what the matrix is assembled from) of those runs, as their cell jobs write them."""
    cells = {}
    for path in runs:
        rec = json.loads(path.read_text())
        cells.setdefault(work / f"results/gender/cells/{rec['target']}/{rec['condition']}.json", []).append(
            {"file": str(path.relative_to(work)), "record": rec})
    for cell, items in cells.items():
        cell.parent.mkdir(parents=True, exist_ok=True)
        cell.write_text(json.dumps({"task": "gender", "runs": items}))
    return list(cells)


def test_damaged_run_json_is_named_and_leaves_no_old_figures(tmp_path):
    work = copy_checkout(tmp_path / "checkout")
    gender_only = json.loads(json.dumps(REDUCED))
    gender_only["tasks"]["speaker"] = None
    write_config(work, "gender.yaml", gender_only)
    cells = _fake_cells(work, _fake_runs(work))
    # only assembly and plots may run: the cell files above stand in for fine-tuning
    args = ("--cores", "1", "--allowed-rules", "assemble", "plot", "--configfile", "gender.yaml", "--",
            "results/gender/cltm.png")
    snakemake(work, *args)
    figures = [work / f"results/gender/{f}.{e}" for f in ("cltm", "relative_change", "baselines")
               for e in ("png", "svg")]
    assert all(f.exists() for f in figures)
    damaged = cells[-1]
    damaged.write_text(damaged.read_text()[:60])  # cut short
    proc = snakemake(work, *args, check=False)
    assert proc.returncode != 0
    rel = damaged.relative_to(work)
    log = (work / "results/logs/assemble/gender.log").read_text()
    for text in (output(proc), log):
        assert f"cell file {rel} is not valid JSON" in text and f"rm {rel}" in text
    assert not any(f.exists() for f in figures), "figures of the previous assembly left beside failed tables"
    assert not (work / "results/gender/cltm.csv").exists()
