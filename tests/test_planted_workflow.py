"""The known answer through Snakemake: the planted corpus in both modes recovers the plant; the null control
does not find one (issue 19; docs/demo.md, "The planted task"; docs/statistics.md, "The known answer").

One finished run of config/demo_planted.yaml is shared by the module (a session-sized workflow run: the
planted task fine-tuned and probed on the demo's six planted languages); the null control takes a copy of
it, so the encoder, audio index and kept runs are reused and only what the labels change is redone."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from conftest import copy_checkout
from workflows import copy_workflow, snakemake, write_config

from leakage import assert_no_leakage

TASKS = ("planted", "planted_probe")


@pytest.fixture(scope="module")
def planted_run(tmp_path_factory) -> Path:
    work = copy_checkout(tmp_path_factory.mktemp("planted_run") / "checkout")
    snakemake(work, "--cores", "2", "--configfile", "config/demo_planted.yaml")
    return work


def known_answer(work: Path, task: str) -> dict:
    return json.loads((work / "results" / task / "known_answer.json").read_text())


def verdict_lines(ka: dict) -> str:
    return "\n  ".join(line["text"] for line in ka["verdict"]["lines"])


@pytest.mark.parametrize("task", TASKS)
def test_each_mode_recovers_the_plant(planted_run, task):
    """Mantel p <= 0.01 against the planted distance, every adjacent-angle cell positive, most opposite-angle
    cells negative, at most one row flagged: the verdict of the default thresholds (analysis.known_answer)."""
    ka = known_answer(planted_run, task)
    assert ka["synthetic"] and not ka["verdict"]["null_control"]
    assert ka["mantel"]["exact"] and ka["mantel"]["p_value"] <= 0.01, verdict_lines(ka)
    assert ka["adjacent"]["positive"] == ka["adjacent"]["cells"] > 0, verdict_lines(ka)
    assert ka["opposite"]["negative"] > ka["opposite"]["cells"] / 2, verdict_lines(ka)
    assert len(ka["flagged_rows"]) <= 1, verdict_lines(ka)
    assert ka["verdict"]["passed"], verdict_lines(ka)
    # the table behind it: one row per off-diagonal cell, the measured cells those of the matrix
    table = pd.read_csv(planted_run / "results" / task / "known_answer.csv")
    cltm = pd.read_csv(planted_run / "results" / task / "cltm.csv", index_col=0)
    assert len(table) == 30
    for row in table.itertuples():
        assert row.cltm == pytest.approx(cltm.loc[row.target, row.donor])
    assert (planted_run / "results" / task / "known_answer.png").stat().st_size > 10_000


def test_the_plant_file_and_the_labels_agree(planted_run):
    """The plant file's rule decides each speaker's label in the corpus the runs were trained on."""
    plant = json.loads((planted_run / "results" / "demo_corpus" / "plant.json").read_text())
    assert plant["synthetic"] and len(plant["pairs"]) == 30
    for lang, info in plant["languages"].items():
        validated = pd.read_csv(planted_run / "results" / "demo_corpus" / lang / "validated.tsv", sep="\t")
        per_speaker = validated.drop_duplicates("client_id")
        assert (per_speaker["accents"] == "rule_yes").sum() == info["rule_yes"]
        assert set(per_speaker["accents"]) == {"rule_no", "rule_yes"}


def test_probe_and_fine_tuning_agree_on_the_plant(planted_run):
    """On a corpus with a planted effect, the probe matrix ranks the cells as fine-tuning does."""
    result = json.loads((planted_run / "results" / "compare" / "planted_probe_vs_planted.json").read_text())
    cltm = result["all_cells"]["cltm"]
    assert cltm["cells"] == 30 and cltm["rho"] > 0.3 and cltm["ci95"][0] > 0, result
    assert result["all_cells"]["sign_agreement"] > result["all_cells"]["sign_agreement_chance"], result


def test_no_planted_run_trains_on_a_test_voice(planted_run):
    assert assert_no_leakage(planted_run) > 0


def test_the_null_control_does_not_reject(planted_run, tmp_path):
    """Every language labelled by the same rule: the true CLTM is 1 everywhere, so the Mantel test against
    the layout's distance must not reject; the spread between donors is reported."""
    work = copy_workflow(planted_run, tmp_path / "null")
    snakemake(work, "--cores", "2", "--configfile", "config/demo_planted.yaml", "config/demo_planted_null.yaml")
    plant = json.loads((work / "results" / "demo_corpus" / "plant.json").read_text())
    assert plant["null"] and {p["planted_distance_deg"] for p in plant["pairs"]} == {0.0}
    for task in TASKS:
        ka = known_answer(work, task)
        assert ka["verdict"]["null_control"]
        assert ka["mantel"]["p_value"] > 0.01, verdict_lines(ka)
        pooled = ka["donor_spread"]["pooled"]
        assert pooled["rows"] == 6 and pooled["f"] >= 0
