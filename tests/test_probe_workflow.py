"""Probe mode through Snakemake: a probe instance of each task beside its fine-tuning task (subsets_from),
on the reduced demo config, in a copy of the repository (config/demo_probe.yaml is the same on the demo).
The probe tasks are added to a copy of the session's finished reduced run (tests/conftest.py): their
fine-tuning twins are already there, so only the features, the probe runs and what reads them are made."""

from __future__ import annotations

import json
import math

import pandas as pd
import pytest
import yaml

from workflows import REDUCED, ROOT, copy_workflow, planned, snakemake, write_config

PROBE = json.loads(json.dumps(REDUCED))
PROBE["tasks"].update(yaml.safe_load((ROOT / "config/demo_probe.yaml").read_text())["tasks"])


@pytest.fixture(scope="module")
def probed(reduced_run, tmp_path_factory):
    """The reduced run (gender, speaker) with the probe twins added by `--configfile probe.yaml` (another
    config file in the same results/, on purpose: CLTM_NEW_CONFIG=1 once), run to the end."""
    work = copy_workflow(reduced_run, tmp_path_factory.mktemp("probe") / "checkout")
    write_config(work, "probe.yaml", PROBE)
    proc = snakemake(work, "--cores", "2", "--configfile", "probe.yaml", env={"CLTM_NEW_CONFIG": "1"})
    assert "rule finetune" not in proc.stdout + proc.stderr  # the twins' runs were kept: nothing fine-tuned again
    return work


@pytest.fixture
def probe_copy(probed, tmp_path):
    """A copy of the finished probe workflow for one test to change."""
    return copy_workflow(probed, tmp_path / "work")


def test_probe_and_finetune_matrices_side_by_side(probed):
    for task, metric in (("gender_probe", "macro_f1"), ("speaker_probe", "roc_auc")):
        runs = pd.read_csv(probed / f"results/{task}/runs.csv")
        assert len(runs) == 12 and runs["metric"].eq(metric).all() and runs["value"].between(0, 1).all()
        cltm = pd.read_csv(probed / f"results/{task}/cltm.csv", index_col=0)
        assert list(cltm.index) == ["en", "tr"] and cltm.loc["en", "en"] == 1.0
        assert (probed / f"results/{task}/cltm.png").stat().st_size > 10_000
        run = json.loads((probed / f"results/{task}/runs/tr/donor-en/seed1.json").read_text())
        assert run["mode"] == "probe" and math.isclose(sum(run["layer_weights"]), 1.0, rel_tol=1e-5)
        assert len(run["layer_weights"]) == 5  # the tiny encoder: 4 layers and its input
        twin = json.loads((probed / f"results/{task.removesuffix('_probe')}/runs/tr/donor-en/seed1.json").read_text())
        assert twin["mode"] == "finetune" and twin["sizes"] == run["sizes"]  # the same clips, test set, trials
        scores = pd.read_csv(probed / f"results/{task}/runs/tr/donor-en/seed1.scores.tsv", sep="\t")
        twin_scores = pd.read_csv(probed / f"results/{task.removesuffix('_probe')}/runs/tr/donor-en/seed1.scores.tsv",
                                  sep="\t")
        assert list(scores.columns) == list(twin_scores.columns) and len(scores) == len(twin_scores)
        weights = pd.read_csv(probed / f"results/{task}/layer_weights.csv", index_col="target")
        assert list(weights.index) == ["en", "tr", "all"] and list(weights["runs"]) == [6, 6, 12]
        layers = weights.drop(columns="runs")
        assert layers.shape[1] == 5 and (layers.sum(axis=1) - 1).abs().max() < 1e-5  # a mean of softmaxes
        assert (probed / f"results/{task}/layer_weights.png").stat().st_size > 5_000
    assert not (probed / "results/subsets/gender_probe").exists()  # no selection of its own
    assert len(list((probed / "results/features").glob("*/en.npy"))) == 1


def test_the_report_compares_probe_with_finetuning(probed):
    for probe, twin in (("gender_probe", "gender"), ("speaker_probe", "speaker")):
        result = json.loads((probed / f"results/compare/{probe}_vs_{twin}.json").read_text())
        assert result["probe"] == probe and result["finetune"] == twin and result["synthetic_demo"] is True
        cells = result["all_cells"]
        assert cells["cells"] == 2  # 2 languages: 2 off-diagonal cells (too few for a rank correlation)
        assert cells["relative_change"]["rho"] is None and 0 <= cells["sign_agreement"] <= 1
        assert (probed / f"results/compare/{probe}_vs_{twin}.png").stat().st_size > 10_000
        assert "SYNTHETIC DEMO DATA" in (probed / f"results/compare/{probe}_vs_{twin}.svg").read_text()
    snakemake(probed, "--configfile", "probe.yaml", "--report", "report.html")
    assert "probe vs fine-tuning" in (probed / "report.html").read_text(errors="replace")


def test_probe_runs_train_on_no_test_voice(probed):
    from leakage import assert_no_leakage

    assert assert_no_leakage(probed) == 4 * 12  # 4 tasks x 12 runs


def test_probe_settings_rerun_only_probe_runs(probed):
    changed = json.loads(json.dumps(PROBE))
    changed["tasks"]["gender_probe"]["probe"] = {"lr": 0.02}
    write_config(probed, "changed.yaml", changed)
    jobs = planned(probed, "--configfile", "changed.yaml")
    assert jobs["probe"] == 6 and "features" not in jobs and "finetune" not in jobs
    changed = json.loads(json.dumps(PROBE))
    changed["tasks"]["gender"]["training"]["lr"] = 1e-3  # fine-tuning only: the probe twin trains no encoder
    write_config(probed, "changed.yaml", changed)
    jobs = planned(probed, "--configfile", "changed.yaml")
    assert jobs["finetune"] == 6 and "probe" not in jobs and "features" not in jobs
    changed = json.loads(json.dumps(PROBE))
    changed["encoder"] = {"overrides": {"layerdrop": 0.0, "mask_time_prob": 0.05, "hidden_dropout": 0.0,
                                        "attention_dropout": 0.0, "activation_dropout": 0.0, "final_dropout": 0.01}}
    write_config(probed, "changed.yaml", changed)
    jobs = planned(probed, "--configfile", "changed.yaml")
    assert jobs["features"] == 2 and jobs["probe"] == 12 and jobs["finetune"] == 12  # another encoder: its own features


def test_one_probe_run_is_rebuilt_by_its_file(probe_copy):
    target = "results/speaker_probe/runs/en/single/seed2.json"
    before = json.loads((probe_copy / target).read_text())
    other = (probe_copy / "results/speaker_probe/runs/en/single/seed1.json").read_bytes()
    proc = snakemake(probe_copy, target, "-f", "--cores", "1", "--configfile", "probe.yaml")
    assert "1 of 1 steps (100%) done" in proc.stdout + proc.stderr
    after = json.loads((probe_copy / target).read_text())
    assert after["metrics"] == before["metrics"] and after["layer_weights"] == before["layer_weights"]
    assert (probe_copy / "results/speaker_probe/runs/en/single/seed1.json").read_bytes() == other
    cell = json.loads((probe_copy / "results/speaker_probe/cells/en/single.json").read_text())
    assert [r["record"] for r in cell["runs"] if r["record"]["seed"] == 2] == [after]


def test_a_twin_naming_no_task_is_refused(probed):
    bad = json.loads(json.dumps(PROBE))
    bad["tasks"]["gender_probe"]["subsets_from"] = "gendr"
    proc = snakemake(probed, "-n", "--configfile", write_config(probed, "bad.yaml", bad), check=False)
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0 and "tasks.gender_probe.subsets_from" in out and "gendr" in out
