"""The known answer through Snakemake: the planted corpus in both modes recovers the plant; the null control
does not find one (issue 19; docs/demo.md, "The planted task"; docs/statistics.md, "The known answer").

One finished run of config/demo_planted.yaml is shared by the module (a session-sized workflow run: the
planted task fine-tuned and probed on the demo's six planted languages); the null control takes a copy of
it, so the encoder, audio index and kept runs are reused and only what the labels change is redone.

The shared run fine-tunes 10 seeds where the config ships 20, to keep CI within 20 minutes (10 more seeds
cost about 5 minutes on 2 cores). At the default data.seed 0 the verdict passes with 10 seeds (0 rows
flagged); over data seeds 0-4 it passes at 2 of 5 with 10 seeds and at 5 of 5 with 20 (docs/benchmarks.md,
"The known answer"), which is why the config ships 20. The probe twin runs its 30 seeds as shipped."""

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
    ten_seeds = write_config(work, "ten_finetune_seeds.yaml", {"tasks": {"planted": {"seeds": list(range(1, 11))}}})
    snakemake(work, "--cores", "2", "--configfile", "config/demo_planted.yaml", ten_seeds)
    return work


def known_answer(work: Path, task: str) -> dict:
    return json.loads((work / "results" / task / "known_answer.json").read_text())


def verdict_lines(ka: dict) -> str:
    return "\n  ".join(line["text"] for line in ka["verdict"]["lines"])


@pytest.mark.parametrize("task", TASKS)
def test_each_mode_recovers_the_plant(planted_run, task):
    """The known answer is recovered in both modes, by the verdict's own thresholds: the exact Mantel p
    against the planted distance at most 0.01, every adjacent (15 degree) cell positive, most cells whose
    rules are more than 90 degrees apart negative, at most one flagged row (docs/demo.md gives the rate over
    data seeds)."""
    ka = known_answer(planted_run, task)
    assert ka["synthetic"] and not ka["verdict"]["null_control"]
    assert ka["mantel"]["exact"] and ka["mantel"]["p_value"] <= 0.01, verdict_lines(ka)
    assert ka["mantel"]["rho"] < -0.5, verdict_lines(ka)
    assert ka["verdict"]["passed"], verdict_lines(ka)
    agree = ka["sign_agreement"]
    assert agree["share"] > agree["chance"], verdict_lines(ka)
    lines = {line["check"]: line for line in ka["verdict"]["lines"]}
    assert set(lines) == {"mantel", "adjacent_positive", "opposite_negative", "flagged_rows"}
    assert ka["verdict"]["passed"] == all(line["passed"] for line in lines.values())
    # the table behind it: one row per off-diagonal cell, the measured cells those of the matrix
    table = pd.read_csv(planted_run / "results" / task / "known_answer.csv")
    cltm = pd.read_csv(planted_run / "results" / task / "cltm.csv", index_col=0)
    assert len(table) == 30
    for row in table.itertuples():
        assert row.cltm == pytest.approx(cltm.loc[row.target, row.donor])
    assert (planted_run / "results" / task / "known_answer.png").stat().st_size > 10_000


def test_the_plant_file_and_the_labels_agree(planted_run):
    """The plant file's rule decides each clip's label in the corpus the runs were trained on, and every
    voice has clips of both classes."""
    plant = json.loads((planted_run / "results" / "demo_corpus" / "plant.json").read_text())
    assert plant["synthetic"] and plant["unit"] == "clip" and len(plant["pairs"]) == 30
    for lang, info in plant["languages"].items():
        validated = pd.read_csv(planted_run / "results" / "demo_corpus" / lang / "validated.tsv", sep="\t")
        assert len(validated) == info["clips"] and (validated["accents"] == "rule_yes").sum() == info["rule_yes"]
        assert (validated.groupby("client_id")["accents"].nunique() == 2).all()


def test_probe_and_fine_tuning_agree_on_the_plant(planted_run):
    """On a corpus with a planted effect, the probe matrix ranks the cells as fine-tuning does."""
    result = json.loads((planted_run / "results" / "compare" / "planted_probe_vs_planted.json").read_text())
    every, unflagged = result["all_cells"], result["unflagged_rows"]
    # the relative change (no denominator to blow up) over every cell, the CLTM over the rows neither flags
    assert every["relative_change"]["cells"] == 30 and every["relative_change"]["ci95"][0] > 0.3, result
    assert unflagged["cltm"]["cells"] >= 15 and unflagged["cltm"]["ci95"][0] > 0, result
    assert every["sign_agreement"] > every["sign_agreement_chance"], result


def test_no_planted_run_trains_on_a_test_voice(planted_run):
    assert assert_no_leakage(planted_run) > 0


def test_the_null_control_does_not_reject(planted_run, tmp_path):
    """Every language labelled by the same rule: the true CLTM is 1 everywhere, so the Mantel test against
    the layout's distance must not reject; the spread between donors is reported. Measured (probe, 30 seeds):
    p 0.72 at the default data.seed 0, 0.41-0.96 at data seeds 1-4 (0 rejections in 5), pooled donor-spread
    F 0.98-4.0 (docs/benchmarks.md). Probe mode only (the planted task itself as a probe), so that the control costs the
    suite about two minutes: only the labels change (the cues do not depend on the rules), though the workflow
    rewrites the corpus and redoes its audio and features from it, and the encoder is the planted run's."""
    work = copy_workflow(planted_run, tmp_path / "null")
    probe_only = write_config(work, "probe_only.yaml",  # the planted task probed with the demo's 30 seeds
                              {"tasks": {"planted": {"mode": "probe", "seeds": list(range(1, 31))}, "planted_probe": None}})
    snakemake(work, "--cores", "2", "--configfile", "config/demo_planted.yaml", "config/demo_planted_null.yaml",
              probe_only, env={"CLTM_NEW_CONFIG": "1"})
    plant = json.loads((work / "results" / "demo_corpus" / "plant.json").read_text())
    assert plant["null"] and {p["planted_distance_deg"] for p in plant["pairs"]} == {0.0}
    ka = known_answer(work, "planted")
    assert ka["verdict"]["null_control"] and "adjacent_positive" not in {x["check"] for x in ka["verdict"]["lines"]}
    assert ka["mantel"]["p_value"] > 0.01, verdict_lines(ka)
    pooled = ka["donor_spread"]["pooled"]
    assert pooled["rows"] == 6 and pooled["f"] >= 0
