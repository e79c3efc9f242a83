"""The workflow through Snakemake itself, on a reduced demo config, in a copy of the repository."""

from __future__ import annotations

import copy
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

# the helpers live in tests/workflows.py; other test modules import them from here too
from workflows import REDUCED, ROOT, SNAKEMAKE, copy_workflow, jobs_planned, planned, snakemake, write_config  # noqa: F401


@pytest.fixture(scope="module")
def workflow(reduced_run, tmp_path_factory) -> Path:
    """A user's checkout (workflow files only; the package is installed) after a full reduced run: this
    module's copy of the session's run, for the tests that only read it (or add files of their own)."""
    return copy_workflow(reduced_run, tmp_path_factory.mktemp("workflow") / "checkout")


@pytest.fixture
def finished(reduced_run, tmp_path) -> Path:
    """A copy of the finished reduced run (results and Snakemake's metadata, mtimes kept) for one test to
    change, so that no test depends on what another did before it."""
    return copy_workflow(reduced_run, tmp_path / "work")


def test_matrices_are_assembled_from_every_run(workflow):
    for task, metric in (("gender", "macro_f1"), ("speaker", "roc_auc")):
        runs = pd.read_csv(workflow / f"results/{task}/runs.csv")
        assert len(runs) == 2 * 3 * 2  # targets x (single, dual, one donor) x seeds: nothing filtered
        assert set(runs["condition"]) == {"single", "dual", "donor-en", "donor-tr"}
        assert runs["metric"].eq(metric).all() and runs["value"].between(0, 1).all()
        cltm = pd.read_csv(workflow / f"results/{task}/cltm.csv", index_col=0)
        se = pd.read_csv(workflow / f"results/{task}/cltm_se.csv", index_col=0)
        assert list(cltm.index) == ["en", "tr"] and list(cltm.columns) == ["en", "tr"]
        assert cltm.loc["en", "en"] == 1.0 and cltm.loc["tr", "tr"] == 1.0 and not (se < 0).any().any()
        # the off-diagonal cell is the formula over the seed means of the runs table; so little training
        # can leave single and dual equal (a zero denominator): then the cell is infinite and flagged
        mean = runs.groupby(["target", "condition"])["value"].mean()
        num, den = mean["en", "donor-tr"] - mean["en", "single"], mean["en", "dual"] - mean["en", "single"]
        base = pd.read_csv(workflow / f"results/{task}/baselines.csv", index_col="target")
        if abs(den) > 1e-9:
            assert cltm.loc["en", "tr"] == pytest.approx(num / den, rel=1e-5)
        else:
            assert not np.isfinite(cltm.loc["en", "tr"]) or num == 0
            assert base.loc["en", "flagged"]
        assert base.loc["tr", "denominator"] == pytest.approx(mean["tr", "dual"] - mean["tr", "single"], rel=1e-5)
        assert base["flagged"].dtype == bool
        cells = pd.read_csv(workflow / f"results/{task}/cells.csv")
        assert len(cells) == 4 and {"cltm", "cltm_se", "relative_change", "flagged"} <= set(cells.columns)
        summary = json.loads((workflow / f"results/{task}/summary.json").read_text())
        assert summary["runs"] == 12 and summary["synthetic_demo"] is True
        for fig in ("cltm", "relative_change", "baselines"):
            assert (workflow / f"results/{task}/{fig}.png").stat().st_size > 10_000
            assert "SYNTHETIC DEMO DATA" in (workflow / f"results/{task}/{fig}.svg").read_text()
    run = json.loads((workflow / "results/speaker/runs/tr/donor-en/seed2.json").read_text())
    assert run["sizes"]["donor_clips"] == 6 and run["synthetic_demo"] is True
    assert {"roc_auc", "eer", "min_dcf_p0.01", "min_dcf_p0.05"} == set(run["metrics"])
    scores = pd.read_csv(workflow / "results/speaker/runs/tr/donor-en/seed2.scores.tsv", sep="\t")
    assert list(scores.columns) == ["enroll", "test", "score", "label"] and len(scores) == run["sizes"]["trials"]


def test_the_written_errors_are_the_paired_formula_over_the_runs(workflow):
    """cltm_se.csv is the paired delta method over runs.csv, written out here from the runs (to 6 digits):
    L_s = g_A A_s + g_B B_s + g_D D_s with the gradient at the means, SE = sd(L_s) / sqrt(n); the intervals
    are Fieller's; summary.json is strict JSON with the new fields."""
    from scipy.stats import t as student

    for task in ("gender", "speaker"):
        runs = pd.read_csv(workflow / f"results/{task}/runs.csv")
        se = pd.read_csv(workflow / f"results/{task}/cltm_se.csv", index_col=0)
        low = pd.read_csv(workflow / f"results/{task}/cltm_ci_low.csv", index_col=0)
        high = pd.read_csv(workflow / f"results/{task}/cltm_ci_high.csv", index_col=0)
        by = runs.pivot_table(index=["target", "condition"], columns="seed", values="value")
        for target, donor in (("en", "tr"), ("tr", "en")):
            A, B, D = (by.loc[(target, c)].to_numpy() for c in ("single", f"donor-{donor}", "dual"))
            num, den = B.mean() - A.mean(), D.mean() - A.mean()
            if abs(den) < 1e-12:
                continue
            g = ((B.mean() - D.mean()) / den**2, 1 / den, -num / den**2)
            lin = g[0] * A + g[1] * B + g[2] * D
            # the tables hold 6 significant digits: 10.6154 for 10.6153846 is 1.4e-6 off
            assert se.loc[target, donor] == pytest.approx(lin.std(ddof=1) / np.sqrt(len(A)), rel=1e-5, abs=1e-9)
            # Fieller: the roots of (x - m y)^2 = t^2 Var(x - m y), x = B - A, y = D - A, paired
            x, y, n = B - A, D - A, len(A)
            t2 = student.ppf(0.975, n - 1) ** 2
            cov = np.cov(x, y, ddof=1) / n
            qa, qb, qc = y.mean() ** 2 - t2 * cov[1, 1], -2 * (x.mean() * y.mean() - t2 * cov[0, 1]), \
                x.mean() ** 2 - t2 * cov[0, 0]
            if qa > 0 and qb * qb - 4 * qa * qc >= 0:
                roots = sorted(np.roots([qa, qb, qc]).real)
                assert [low.loc[target, donor], high.loc[target, donor]] == pytest.approx(roots, rel=1e-5)
            else:
                assert low.loc[target, donor] == -np.inf and high.loc[target, donor] == np.inf
        summary = json.loads((workflow / f"results/{task}/summary.json").read_text(),
                             parse_constant=lambda c: pytest.fail(f"summary.json holds {c}: not strict JSON"))
        assert summary["flag_alpha"] == 0.05 and summary["ci_level"] == 0.95
        assert {"share_sign_certain", "spectral_radius", "condition_number", "row_gini", "column_entropy",
                "family_positive_mass", "uncertainty_covers"} <= set(summary)


def test_one_run_is_rebuilt_by_its_file_with_the_same_result(finished):
    target = "results/gender/runs/tr/donor-en/seed1.json"
    before = json.loads((finished / target).read_text())
    other = (finished / "results/gender/runs/tr/single/seed1.json").stat().st_mtime_ns
    same_cell = (finished / "results/gender/runs/tr/donor-en/seed2.json").read_bytes()  # with its timing
    proc = snakemake(finished, "--cores", "1", "--configfile", "reduced.yaml", "-f", target)
    assert "1 of 1 steps (100%) done" in proc.stdout + proc.stderr  # the run rule: that run alone
    after = json.loads((finished / target).read_text())
    assert after["metrics"] == before["metrics"] and after["loss"] == before["loss"]  # same seed, same result
    assert after["wall_s"] != before["wall_s"] or after["timing"] != before["timing"]  # trained again
    assert (finished / "results/gender/runs/tr/single/seed1.json").stat().st_mtime_ns == other
    assert (finished / "results/gender/runs/tr/donor-en/seed2.json").read_bytes() == same_cell
    # its record in the cell file, which the matrix is assembled from, is the new one
    cell = json.loads((finished / "results/gender/cells/tr/donor-en.json").read_text())
    assert [r["record"] for r in cell["runs"] if r["record"]["seed"] == 1] == [after]
    snakemake(finished, "--cores", "2", "--configfile", "reduced.yaml")  # reassembles from the rebuilt run
    dry = snakemake(finished, "-n", "--configfile", "reduced.yaml")
    assert "Nothing to be done" in dry.stdout + dry.stderr


def test_report_lint_and_graphs(workflow):
    snakemake(workflow, "--configfile", "reduced.yaml", "--report", "report.html")
    report = (workflow / "report.html").read_text(errors="replace")
    assert "SYNTHETIC DEMO DATA" in report and "cltm.png" in report
    lint = snakemake(workflow, "--configfile", "reduced.yaml", "--lint", check=False)
    assert lint.returncode == 0, lint.stdout + lint.stderr
    graph = snakemake(workflow, "--configfile", "reduced.yaml", "--rulegraph").stdout
    assert "finetune" in graph and "assemble" in graph and graph.strip().startswith("digraph")


def test_bad_config_key_is_named(workflow):
    bad = json.loads(json.dumps(REDUCED))
    bad["tasks"]["gender"]["training"]["learning_rate"] = 0.1
    proc = snakemake(workflow, "-n", "--configfile", write_config(workflow, "bad.yaml", bad), check=False)
    assert proc.returncode != 0
    out = proc.stdout + proc.stderr
    assert "tasks.gender.training" in out and "learning_rate" in out


def test_worker_and_direct_process_give_the_same_run(workflow, tmp_path):
    args = ["finetune", "--settings", "results/speaker/settings.json", "--task", "speaker", "--target", "en",
            "--condition", "donor-tr", "--seed", "2", "--encoder", "results/encoder/model.safetensors",
            "--subsets", "results/subsets/speaker/en.json", "results/subsets/speaker/tr.json",
            "--audio", "results/audio/en.npy", "results/audio/tr.npy", "--threads", "1"]
    reference = json.loads((workflow / "results/speaker/runs/en/donor-tr/seed2.json").read_text())
    for mode in ("1", "0"):
        out = tmp_path / f"mode{mode}"
        env = {**os.environ, "CLTM_WORKER": mode, "CLTM_WORKER_IDLE": "30"}
        proc = subprocess.run([sys.executable, "-m", "cltm.worker", *args, "--run", str(out / "run.json"),
                               "--scores", str(out / "scores.tsv")], cwd=workflow, env=env, capture_output=True,
                              text=True, timeout=600)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        assert "speaker en donor-tr seed 2" in proc.stdout + proc.stderr  # the job's log comes back
        run = json.loads((out / "run.json").read_text())
        assert run["metrics"] == reference["metrics"] and run["loss"] == reference["loss"]


def test_worker_reports_a_failing_job(workflow, tmp_path):
    proc = subprocess.run([sys.executable, "-m", "cltm.worker", "finetune", "--settings", "missing.json",
                           "--task", "gender", "--target", "en", "--condition", "single", "--seed", "1",
                           "--encoder", "x", "--subsets", "x", "--audio", "x", "--run", str(tmp_path / "r.json"),
                           "--scores", str(tmp_path / "s.tsv")], cwd=workflow, capture_output=True, text=True,
                          env={**os.environ, "CLTM_WORKER_IDLE": "30"}, timeout=600)
    assert proc.returncode != 0 and "missing.json" in proc.stdout + proc.stderr
    assert not (tmp_path / "r.json").exists()


def _forked_runs(worker_dir: Path) -> set[int]:
    """PIDs of runs forked by the warm worker of `worker_dir` (its CLTM_WORKER_DIR: the test's own, so runs of
    another test process's worker are not counted): `cltm.worker serve` processes whose parent is one too."""
    import psutil

    def serving(proc) -> bool:
        return (proc is not None and "cltm.worker" in proc.cmdline() and "serve" in proc.cmdline()
                and proc.environ().get("CLTM_WORKER_DIR") == str(worker_dir))

    def forked(proc) -> bool:
        try:  # processes come and go while we look: one that vanished is not a run
            return serving(proc) and serving(proc.parent())
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            return False

    return {p.pid for p in psutil.process_iter() if forked(p)}


def test_killed_client_takes_its_run_with_it(workflow, tmp_path):
    """Snakemake (or SLURM) killing a job kills the client; its run in the worker must stop too and leave no
    result, or a later job could find a run JSON written by a run nobody waits for."""
    spec = json.loads((workflow / "results/speaker/settings.json").read_text())
    # 20,000 epochs: an hour of training, logging progress only every 6,000 steps, so a run that misses
    # its client's death would go on without writing (and failing on) its closed output for a minute
    spec["settings"]["task"]["training"]["epochs"] = 20000
    settings = tmp_path / "settings.json"
    settings.write_text(json.dumps(spec))
    workers = Path(tempfile.mkdtemp(prefix="cltm-w"))  # a worker of its own (a short path: a socket's is limited)
    before = _forked_runs(workers)
    client = subprocess.Popen(
        [sys.executable, "-m", "cltm.worker", "finetune", "--settings", str(settings), "--task", "speaker",
         "--target", "en", "--condition", "single", "--seed", "1", "--encoder", "results/encoder/model.safetensors",
         "--subsets", "results/subsets/speaker/en.json", "--audio", "results/audio/en.npy", "--threads", "1",
         "--run", str(tmp_path / "run.json"), "--scores", str(tmp_path / "scores.tsv")],
        cwd=workflow, env={**os.environ, "CLTM_WORKER_IDLE": "30", "CLTM_WORKER_DIR": str(workers)},
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        # the job's log streams back; wait until it starts training. Read what arrives, not whole lines: the
        # client holds back the last bytes it received (they could begin its exit mark), so the end of the
        # line "... training clips, 2 classes, device cpu" would come only with the next output, at step 6,000
        seen = b""
        while b"training clips" not in seen:
            chunk = os.read(client.stdout.fileno(), 65536)
            if not chunk:
                raise AssertionError(f"the run ended before training (exit {client.wait()}):\n{seen[-3000:].decode()}")
            seen += chunk
        runs = _forked_runs(workers) - before
        assert len(runs) == 1, runs
    finally:
        client.kill()
        client.wait()
    deadline = time.monotonic() + 10
    while _forked_runs(workers) & runs and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not _forked_runs(workers) & runs, "the run kept training after its client was killed"
    assert not (tmp_path / "run.json").exists() and not (tmp_path / "scores.tsv").exists()


def _reordered(config):
    if isinstance(config, dict):
        return {k: _reordered(config[k]) for k in reversed(list(config))}
    return config


def test_the_same_config_in_another_key_order_reruns_nothing(finished):
    write_config(finished, "reduced.yaml", _reordered(REDUCED))  # the same file, every mapping reversed
    assert planned(finished, "--configfile", "reduced.yaml") == {}


def test_a_setting_written_with_its_current_value_reruns_nothing(finished, default_config):
    same = json.loads(json.dumps(REDUCED))
    same["tasks"]["speaker"]["training"]["lr"] = default_config["tasks"]["speaker"]["training"]["lr"]
    write_config(finished, "reduced.yaml", same)
    assert planned(finished, "--configfile", "reduced.yaml") == {}
    changed = json.loads(json.dumps(same))
    changed["tasks"]["speaker"]["training"]["lr"] /= 2  # a real change reruns that task's runs, all of them
    write_config(finished, "reduced.yaml", changed)
    jobs = planned(finished, "--configfile", "reduced.yaml")
    # one job per cell: targets x conditions, each with both seeds
    assert jobs["finetune"] == 2 * 3 and "select" not in jobs and "prepare_audio" not in jobs


def test_adding_a_language_adds_only_its_runs(finished):
    bigger = json.loads(json.dumps(REDUCED))
    bigger["languages"] = ["en", "tr", "fi"]
    write_config(finished, "reduced.yaml", bigger)
    out = snakemake(finished, "-n", "--configfile", "reduced.yaml").stdout
    jobs = jobs_planned(out)
    # per task: fi's own 4 cells (conditions), plus en and tr with fi as donor (one job per cell)
    assert jobs["finetune"] == 2 * (4 + 2)
    assert jobs["select"] == jobs["prepare_audio"] == 1  # fi's; en and tr keep their selections and audio
    cells = [line.split("output: ")[1].split(",")[0] for line in out.splitlines() if "output: results/" in line
             and "/cells/" in line]
    assert cells and all("/fi/" in c or "donor-fi" in c for c in cells), cells


def test_one_cell_without_the_config_file_is_refused(finished):
    target = "results/gender/runs/en/donor-tr/seed1.json"
    proc = snakemake(finished, "--cores", "1", "-f", target, check=False)
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0 and "--configfile" in out and "reduced.yaml" in out
    assert planned(finished, "--configfile", "reduced.yaml") == {}  # nothing was rewritten
    assert planned(finished, target, "-f", "--configfile", "reduced.yaml") == {"run": 1, "total": 1}


def test_a_deleted_run_json_is_put_back_by_naming_it(finished):
    """The matrix is assembled from the cell files, which hold every run's record: a deleted run JSON
    reruns nothing; named, it is put back from its kept copy, byte for byte, without training."""
    run = finished / "results/gender/runs/tr/dual/seed2.json"
    before = run.read_bytes()
    run.unlink()
    assert planned(finished, "--configfile", "reduced.yaml") == {}
    snakemake(finished, "results/gender/runs/tr/dual/seed2.json", "--cores", "1", "--configfile", "reduced.yaml")
    assert run.read_bytes() == before
    log = (finished / "results/logs/finetune/gender/tr/dual/seed2.job.log").read_text()
    assert "gender tr dual seed 2: kept" in log and "training" not in log


def test_a_new_seed_trains_only_that_seed(finished):
    """Every cell's job reruns for a new seed (its outputs gained a file), but it trains only the new one:
    the finished runs are put back from the kept ones, unchanged."""
    more = json.loads(json.dumps(REDUCED))
    more["seeds"] = [1, 2, 3]
    write_config(finished, "reduced.yaml", more)
    assert planned(finished, "--configfile", "reduced.yaml")["finetune"] == 2 * 2 * 3  # every cell
    cell = "results/speaker/cells/en/dual.json"
    before = {s: (finished / f"results/speaker/runs/en/dual/seed{s}.json").read_bytes() for s in (1, 2)}
    snakemake(finished, cell, "-f", "--cores", "1", "--configfile", "reduced.yaml")  # the cell's job
    log = (finished / "results/logs/finetune/speaker/en/dual.log").read_text()
    assert "0 of 3 run(s) kept; training 3" in log  # -f on a cell file: the whole cell trained again
    assert {s: json.loads((finished / f"results/speaker/runs/en/dual/seed{s}.json").read_text())["metrics"]
            for s in (1, 2)} == {s: json.loads(b)["metrics"] for s, b in before.items()}  # same seeds, same results
    assert [r["record"]["seed"] for r in json.loads((finished / cell).read_text())["runs"]] == [1, 2, 3]
    before = {s: (finished / f"results/speaker/runs/en/single/seed{s}.json").read_bytes() for s in (1, 2)}
    snakemake(finished, "results/speaker/cells/en/single.json", "--cores", "1", "--configfile", "reduced.yaml")
    log = (finished / "results/logs/finetune/speaker/en/single.log").read_text()
    assert "2 of 3 run(s) kept; training 1" in log and "run 1/1: speaker en single seed 3" in log
    # byte for byte, timings included: put back, not trained again
    assert {s: (finished / f"results/speaker/runs/en/single/seed{s}.json").read_bytes() for s in (1, 2)} == before


def test_short_language_stops_before_any_training(finished):
    """On a copy of its own: the failing selection removes the copy's subsets, as it should."""
    greedy = json.loads(json.dumps(REDUCED))
    greedy["tasks"]["gender"]["n_per_class"] = 40
    proc = snakemake(finished, "--cores", "2", "--keep-going", "--configfile",
                     write_config(finished, "greedy.yaml", greedy), check=False, env={"CLTM_NEW_CONFIG": "1"})
    assert proc.returncode != 0
    for lang in ("en", "tr"):
        log = (finished / f"results/logs/select/{lang}.log").read_text()
        assert "no training was started" in log and f"language '{lang}', task gender" in log and "preflight" in log
    assert "rule finetune" not in proc.stdout + proc.stderr


def test_no_run_trains_on_its_targets_test_voices(workflow):
    from leakage import assert_no_leakage

    assert assert_no_leakage(workflow) == 2 * 2 * 3 * 2  # tasks x targets x conditions x seeds
    checks = pd.read_csv(workflow / "results/speaker_checks.tsv", sep="\t")
    assert checks.empty  # the demo's speakers are distinct per language and labelled consistently


def test_reading_the_matrix_outputs(workflow):
    for task in ("gender", "speaker"):
        summary = json.loads((workflow / f"results/{task}/summary.json").read_text())
        assert {"family_positive_mass", "family_means", "donor_strength_positive_sum",
                "donor_strength_mean", "strength_definitions"} <= set(summary)
        assert summary["families"] == {"en": "Indo-European", "tr": "Turkic"}
        analysis = workflow / f"results/{task}/analysis"
        typology = pd.read_csv(analysis / "typology.csv")
        said = json.loads((analysis / "summary.json").read_text())
        base = pd.read_csv(workflow / f"results/{task}/baselines.csv")
        assert said["every_row_flagged"] == bool(base["flagged"].all())
        if said["every_row_flagged"]:  # 2 seeds: t(0.975, 1) = 12.7 SEs, so every row is usually flagged
            assert typology["note"].tolist() == ["not computed: every row flagged"]
            assert said["language_map"]["note"] == "not computed: every row flagged"
            assert "not computed: every row flagged" in (analysis / "language_map.svg").read_text()
        else:
            assert set(typology["distance"]) == {"genetic", "geographic", "syntactic", "phonological", "inventory",
                                                 "featural"}
        assert pd.read_csv(analysis / "languages.tsv", sep="\t")["code"].tolist() == ["en", "tr"]
        assert len(pd.read_csv(analysis / "seed_plan.csv")) == 2
        for fig in ("typology", "language_map"):
            assert "SYNTHETIC DEMO DATA" in (analysis / f"{fig}.svg").read_text()
        assert "Indo-European" in (workflow / f"results/{task}/cltm.svg").read_text()  # the family legend


def test_learning_curves_on_request(finished):
    cfg = json.loads(json.dumps(REDUCED))
    cfg["analysis"] = {"learning_curve": {"factors": [0.5, 1.0], "seeds": [1, 2]}}
    path = write_config(finished, "lc.yaml", cfg)
    # target first: --configfile takes many; another config file in the same results/, on purpose
    snakemake(finished, "learning_curves", "--cores", "2", "--configfile", path, env={"CLTM_NEW_CONFIG": "1"})
    for task, sizes in (("gender", [2, 3]), ("speaker", [3, 6])):
        curve = pd.read_csv(finished / f"results/{task}/learning_curve.csv")
        assert sorted(curve["size"].unique()) == sizes and set(curve["target"]) == {"en", "tr"}
        assert (curve["n_single"] == 2).all() and (curve["n_dual"] == 2).all()
        rec = json.loads((finished / f"results/{task}/learning_curve.json").read_text())
        assert rec["n_current"] == sizes[-1] and "every_target_clears" in rec
        sub = json.loads((finished / f"results/{task}/learning_curve/subsets/n{sizes[0]}/en.json").read_text())
        full = json.loads((finished / f"results/subsets/{task}/en.json").read_text())
        assert set(sub["single"]) < set(full["single"]) and set(sub["extra"]) < set(full["extra"])
    run = json.loads((finished / "results/gender/learning_curve/runs/en/n2/dual/seed1.json").read_text())
    assert run["sizes"]["target_clips"] == 2 * 2 * 2  # 2 per class, doubled
    # the rung n = N is the grid's own runs
    assert not (finished / "results/gender/learning_curve/runs/en/n3").exists()



def test_a_local_code_edit_is_named_and_retrained_on_request(finished):
    """A user edits the training code (every run's learning rate at half) without bumping the method
    version: the next workflow run names the kept runs that other code made and the command that retrains
    them; that command retrains them with the edited code (the records carry the new fingerprint)."""
    import cltm

    src = finished / "src"
    shutil.copytree(Path(cltm.__file__).parent, src / "cltm", ignore=shutil.ignore_patterns("__pycache__"))
    loop = src / "cltm" / "train" / "loop.py"
    text = loop.read_text()
    assert "    def factor(step: int) -> float:\n" in text
    loop.write_text(text.replace("    def factor(step: int) -> float:\n",
                                 "    def factor(step: int) -> float:\n        return 0.5\n", 1))
    env = {"PYTHONPATH": str(src)}  # the checkout's own package, as a user's edited clone has it
    out = snakemake(finished, "--cores", "2", "--configfile", "reduced.yaml", "-R", "finetune", env=env)
    said = out.stderr
    assert "kept run(s) were made by other code" in said and "CLTM_RETRAIN=other-code" in said
    assert "gender: 0 run(s) trained" in said and "put back from kept runs (12 of them made by other code)" in said
    before = json.loads((finished / "results/gender/runs/en/single/seed1.json").read_text())
    # the command, here for one cell (with --forcerun finetune probe every cell would run and retrain)
    out = snakemake(finished, "results/gender/cells/en/single.json", "--cores", "2", "--configfile", "reduced.yaml",
                    "-f", env={**env, "CLTM_RETRAIN": "other-code"})
    assert "kept run(s) dropped" in out.stderr and "gender: 2 run(s) trained" in out.stderr
    after = json.loads((finished / "results/gender/runs/en/single/seed1.json").read_text())
    assert after["source_fingerprint"] != before["source_fingerprint"]
    assert after["loss"] != before["loss"]  # trained again, with the halved learning rate


def test_another_task_s_n_leaves_this_task_s_runs_kept(finished):
    """Changing the gender task's N redoes the language's selection and audio (they are per language), but
    the speaker task's subsets and its own clips of the prepared audio are the same: its cells' jobs put every
    run back, none is trained (the end-of-run lines count them)."""
    cfg = copy.deepcopy(REDUCED)
    cfg["tasks"]["gender"]["n_per_class"] = 2
    write_config(finished, "reduced.yaml", cfg)
    # the speaker matrix only: selection and audio are redone for both languages, the gender grid is not trained
    out = snakemake(finished, "results/speaker/cltm.csv", "--cores", "2", "--configfile", "reduced.yaml")
    assert "speaker: 0 run(s) trained (0 resumed from a checkpoint), 12 put back from kept runs" in out.stderr
    plan = json.loads((finished / "results/selection/en.json").read_text())
    assert len(plan["gender"]["single"]) == 2 * 2  # the language's selection was redone: gender's changed
