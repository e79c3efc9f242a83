"""The path scheme has one home, cltm.paths: what the rules spell out agrees with it."""

from __future__ import annotations

import re
from pathlib import Path

from cltm.paths import CELL_JSON, LEARNING_CURVE_CHECKPOINT, parse_cell_path, parse_run_path, run_path, scores_of

ROOT = Path(__file__).resolve().parents[1]


def test_the_learning_curve_checkpoint_in_the_rule_is_the_scheme_s():
    """The learning-curve rule spells its checkpoint path out in its shell command (the command is the rule's
    code for Snakemake's rerun triggers, so it stays as it was); it must be cltm.paths' path."""
    rule = (ROOT / "workflow" / "rules" / "analysis.smk").read_text()
    spelled = re.search(r'--checkpoint (\S+)"', rule).group(1)
    as_wildcards = LEARNING_CURVE_CHECKPOINT.replace("{", "{wildcards.")
    assert spelled == as_wildcards


def test_run_and_cell_paths_round_trip():
    path = run_path("gender", "zh-CN", "donor-sv-SE", 3)
    assert parse_run_path(path) == {"task": "gender", "target": "zh-CN", "condition": "donor-sv-SE", "seed": 3,
                                    "suffix": ".json"}
    assert parse_run_path(scores_of(path))["suffix"] == ".scores.tsv"
    cell = CELL_JSON.format(task="age", target="en", condition="dual")
    assert parse_cell_path(cell) == {"task": "age", "target": "en", "condition": "dual"}
    assert parse_cell_path("results/age/cells/en/bogus.json") is None
    assert parse_run_path("results/age/runs/en/dual/seedx.json") is None
