"""Each encoder family through Snakemake itself, from a local model directory, in a copy of the repository.

One results/ folder is shared: a copy of the session's finished reduced run (tests/conftest.py), whose
data are prepared; then each family's encoder job and one run per task follow (the encoder source changes,
so results/encoder/ and those runs are redone); one family, an XLS-R-like wav2vec2 with a layer-normalised
feature encoder (padded batches of whole utterances), then runs the whole reduced grid to its matrices."""

from __future__ import annotations

import copy
import json
import math
from pathlib import Path

import pandas as pd
import pytest

from families import FAMILIES, PADDED, save_family
from workflows import REDUCED, copy_workflow, snakemake, write_config

RUNS = ["results/gender/runs/en/single/seed1.json", "results/speaker/runs/tr/donor-en/seed1.json"]
CLASSES = {"hubert": "HubertModel", "wav2vec2": "Wav2Vec2Model", "wavlm": "WavLMModel",
           "data2vec-audio": "Data2VecAudioModel"}


def family_config(source: Path, **training) -> dict:
    cfg = copy.deepcopy(REDUCED)
    cfg["seeds"] = [1]
    for task in ("gender", "speaker"):
        cfg["tasks"][task]["training"].update(training)
    # the demo's overrides (layerdrop, mask_time_prob, dropouts) stay: they are keys of every family's config
    cfg["encoder"] = {"source": str(source)}
    return cfg


@pytest.fixture(scope="module")
def checkout(reduced_run, tmp_path_factory) -> Path:
    return copy_workflow(reduced_run, tmp_path_factory.mktemp("families") / "checkout")


@pytest.fixture(scope="module")
def family_results(checkout) -> dict:
    results = {}
    for family in FAMILIES:
        source = save_family(checkout / "pretrained" / family, family, seed=3)
        cfg = write_config(checkout, f"{family}.yaml", family_config(source))
        snakemake(checkout, *RUNS, "--cores", "2", "--configfile", cfg, env={"CLTM_NEW_CONFIG": "1"})  # targets first: --configfile takes several
        results[family] = {
            "summary": json.loads((checkout / "results/encoder/summary.json").read_text()),
            "log": (checkout / "results/logs/encoder.log").read_text(),
            "runs": [json.loads((checkout / r).read_text()) for r in RUNS],
        }
    return results


@pytest.mark.parametrize("family", FAMILIES)
def test_each_family_runs_through_snakemake(family_results, family):
    model_type, _, preprocessor = FAMILIES[family]
    got = family_results[family]
    summary = got["summary"]
    assert summary["model_type"] == model_type and summary["model_class"] == CLASSES[model_type]
    assert summary["inputs"]["padded_batches"] is (family in PADDED)
    assert summary["inputs"]["do_normalize"] is bool(preprocessor and preprocessor["do_normalize"])
    assert CLASSES[model_type] in got["log"]
    assert ("padded batches" if family in PADDED else "no padding") in got["log"]
    for run in got["runs"]:
        assert 0 <= run["value"] <= 1 and math.isfinite(run["loss"]["last"])
    # every family's run differs (another model), so none was left over from the family before
    assert len({json.dumps(family_results[f]["runs"][0]["loss"]) for f in family_results}) == len(family_results)


def test_a_whole_grid_with_padded_whole_utterances(checkout, family_results):
    """XLS-R-like (layer-normalised feature encoder, stable layer norm): batches of 2 whole utterances,
    padded with an attention mask, then the matrices (the tables; figures and analysis of a grid are the
    reduced run's, tests/test_workflow.py)."""
    source = checkout / "pretrained" / "xls-r"
    cfg = write_config(checkout, "xls-r-whole.yaml", family_config(source, crop_seconds=None))
    matrices = [f"results/{task}/{table}" for task in ("gender", "speaker") for table in ("runs.csv", "cltm.csv")]
    # targets first: --configfile takes several
    snakemake(checkout, *matrices, "--cores", "2", "--configfile", cfg, env={"CLTM_NEW_CONFIG": "1"})
    summary = json.loads((checkout / "results/encoder/summary.json").read_text())
    assert summary["model_class"] == "Wav2Vec2Model" and summary["do_stable_layer_norm"] is True
    for task in ("gender", "speaker"):
        runs = pd.read_csv(checkout / f"results/{task}/runs.csv")
        assert len(runs) == 2 * 3 and runs["value"].between(0, 1).all()
        cltm = pd.read_csv(checkout / f"results/{task}/cltm.csv", index_col=0)
        assert list(cltm.index) == ["en", "tr"] and cltm.loc["en", "en"] == 1.0
    run = json.loads((checkout / "results/gender/runs/en/dual/seed1.json").read_text())
    assert run["sizes"]["train_clips"] == 12 and math.isfinite(run["loss"]["last"])
