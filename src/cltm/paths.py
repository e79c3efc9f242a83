"""The path scheme of results/ and the names of the conditions, in one place.

The one definition of the condition names (`single`, `dual`, `donor-<lang>`) and of every path the
package reads or writes under results/, imported by the package and by the workflow
(workflow/rules/*.smk), so that a path written by one is the path the others read. Standard library
only: Snakemake imports it while planning, which must not pay for torch.

A run as data (what it reads and writes) is `cltm.grid.spec.RunSpec`.
"""

from __future__ import annotations

import re
from pathlib import Path

SINGLE, DUAL = "single", "dual"
DONOR_PREFIX = "donor-"
# language codes as Common Voice writes them (`zh-CN`, `sv-SE`): hyphens allowed, so a donor condition
# is split at its prefix only
LANGUAGE_PATTERN = "[A-Za-z0-9-]+"
CONDITION_PATTERN = f"{SINGLE}|{DUAL}|{DONOR_PREFIX}{LANGUAGE_PATTERN}"

# the files of one run, relative to the working directory (as the workflow writes them)
RUN_STEM = "results/{task}/runs/{target}/{condition}/seed{seed}"
RUN_JSON = RUN_STEM + ".json"  # the run's record: the only proof that the run is done
RUN_SCORES = RUN_STEM + ".scores.tsv"  # per-clip predictions (gender) or trial scores (speaker)
RUN_LOG = "results/logs/finetune/{task}/{target}/{condition}/seed{seed}.log"
RUN_CHECKPOINT = "results/{task}/checkpoints/{target}/{condition}/seed{seed}.pt"  # removed when the run is done
# A cell = (task, target, condition): the unit of a Snakemake job, all its seeds (cltm.grid.cell). Its
# job log; each trained run also writes its own log at RUN_LOG.
CELL_LOG = "results/logs/finetune/{task}/{target}/{condition}.log"
# the records of a cell's runs together, what the matrix is assembled from (one file per cell, not per run)
CELL_JSON = "results/{task}/cells/{target}/{condition}.json"
# Finished runs are also kept here (hard links: no extra space), so that a cell job, whose outputs
# Snakemake deletes before it starts, gets back every run whose inputs are unchanged instead of
# training it again (cltm.grid.kept). Not a result: only the files under results/<task>/runs/ are.
KEPT_STEM = "results/.cltm/kept/{task}/{target}/{condition}/seed{seed}"
SETTINGS = "results/{task}/settings.json"
ENCODER = "results/encoder/model.safetensors"
SUBSETS = "results/subsets/{task}/{lang}.json"
SELECTION = "results/selection/{lang}.json"  # a language's selections, every task (before audio checks)
AUDIO = "results/audio/{lang}.npy"  # prepared clips of a language, read with its index beside it
AUDIO_INDEX = "results/audio/{lang}.tsv"
# a language's frozen-encoder features for the probe tasks, per encoder (the digest of its settings)
FEATURES = "results/features/{encoder}/{lang}.npy"
CONFIG_RECORD = "results/.cltm/config_files.json"  # the config files results/ was made with
ADOPTED = "results/.cltm/kept/.adopted"  # marks a results/ from before kept runs as adopted
EVENTS = "results/.cltm/events.jsonl"  # one line per cell job: runs trained, put back, resumed

# the learning curve's own runs (a rung n < N, or a seed the grid does not have)
LEARNING_CURVE_SUBSETS = "results/{task}/learning_curve/subsets/n{size}/{lang}.json"
LEARNING_CURVE_STEM = "results/{task}/learning_curve/runs/{target}/n{size}/{condition}/seed{seed}"
LEARNING_CURVE_RUN = LEARNING_CURVE_STEM + ".json"
LEARNING_CURVE_SCORES = LEARNING_CURVE_STEM + ".scores.tsv"
LEARNING_CURVE_CHECKPOINT = "results/{task}/learning_curve/checkpoints/{target}/n{size}/{condition}/seed{seed}.pt"

# what a task's matrix rules write: results/<task>/<table>, results/<task>/<figure>.{png,svg}
MATRIX_TABLES = ("runs.csv", "cltm.csv", "cltm_se.csv", "cltm_ci_low.csv", "cltm_ci_high.csv", "relative_change.csv",
                 "relative_change_se.csv", "baselines.csv", "cells.csv", "summary.json")
FIGURES = ("cltm", "relative_change", "baselines")
# ... and its analyses: results/<task>/analysis/<table>, results/<task>/analysis/<figure>.{png,svg}
ANALYSIS_TABLES = ("languages.tsv", "family_means.csv", "typology.csv", "distances.csv", "top_pairs.csv",
                   "seed_plan.csv", "summary.json")
ANALYSIS_FIGURES = ("typology", "language_map")
FIGURE_FORMATS = ("png", "svg")

# the planted known answer of the demo corpus (corpus.demo.plant): what was planted, written beside the corpus,
# and per task whose label column is the plant's, how its matrix recovered it (docs/statistics.md)
PLANT = "results/demo_corpus/plant.json"
KNOWN_ANSWER_TABLE = "results/{task}/known_answer.csv"  # one row per off-diagonal cell
KNOWN_ANSWER_JSON = "results/{task}/known_answer.json"  # the statistics and the verdict
KNOWN_ANSWER_FIGURE = "results/{task}/known_answer.{ext}"  # ext: FIGURE_FORMATS


def donor_condition(lang: str) -> str:
    """The bilingual condition of donor `lang`: `donor-<lang>`."""
    return f"{DONOR_PREFIX}{lang}"


def donor_of(condition: str) -> str | None:
    """The donor language of a `donor-<lang>` condition, else None (`single`, `dual`)."""
    return condition[len(DONOR_PREFIX):] if condition.startswith(DONOR_PREFIX) else None


def conditions_of(target: str, languages) -> list[str]:
    """A target's conditions in a matrix of `languages`: single, dual, and one donor per other language."""
    return [SINGLE, DUAL] + [donor_condition(d) for d in languages if d != target]


def is_condition(condition: str) -> bool:
    return re.fullmatch(CONDITION_PATTERN, condition) is not None


_RUN_FILE = re.compile(
    r"(?:.*/)?results/(?P<task>[^/]+)/runs/(?P<target>[^/]+)/(?P<condition>[^/]+)/seed(?P<seed>\d+)"
    r"(?P<suffix>\.json|\.scores\.tsv)$")


def parse_run_path(path: str | Path) -> dict | None:
    """{task, target, condition, seed, suffix} of a run's file (RUN_JSON or RUN_SCORES), else None."""
    m = _RUN_FILE.fullmatch(str(path).replace("\\", "/"))
    if not m or not is_condition(m["condition"]):
        return None
    return {**m.groupdict(), "seed": int(m["seed"])}


def run_path(task: str, target: str, condition: str, seed: int, suffix: str = ".json") -> str:
    """`results/<task>/runs/<target>/<condition>/seed<k><suffix>` (.json the record, .scores.tsv its scores)."""
    return RUN_STEM.format(task=task, target=target, condition=condition, seed=seed) + suffix


def learning_curve_path(task: str, target: str, size: int, condition: str, seed: int, suffix: str = ".json") -> str:
    """A learning-curve run of its own (`LEARNING_CURVE_STEM`): .json its record, .scores.tsv its scores."""
    return LEARNING_CURVE_STEM.format(task=task, target=target, size=size, condition=condition, seed=seed) + suffix


def scores_of(run: str) -> str:
    """A run's scores file, beside its record (`RUN_SCORES` beside `RUN_JSON`)."""
    if not run.endswith(".json"):
        raise ValueError(f"{run} is not a run JSON")
    return run[:-len(".json")] + ".scores.tsv"


_CELL_FILE = re.compile(r"(?:.*/)?results/(?P<task>[^/]+)/cells/(?P<target>[^/]+)/(?P<condition>[^/]+)\.json$")


def parse_cell_path(path: str | Path) -> dict | None:
    """{task, target, condition} of a cell file (`CELL_JSON`), else None."""
    m = _CELL_FILE.fullmatch(str(path).replace("\\", "/"))
    return m.groupdict() if m and is_condition(m["condition"]) else None
