"""The third task, age group, through Snakemake itself: the shipped config/demo_age.yaml, reduced, in a
copy of the repository (the same helpers as test_workflow)."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from workflows import snakemake, write_config
from conftest import copy_checkout

# merged over config/config.yaml and config/demo_age.yaml: 8 speakers per gender (a third of each gender
# per age group), 2 test speakers per gender; en and es can supply 2 x 3 clips per age group
REDUCED_AGE = {
    "languages": ["en", "es"],
    "corpus": {"type": "demo", "demo": {"n_speakers_per_gender": 8, "utterances_per_speaker": 5, "seed": 7}},
    "data": {"test": {"speakers_per_gender": 2, "min_clips_per_speaker": 4, "max_clips_per_speaker": 4}},
    "tasks": {"age": {"n_per_class": 3, "max_clips_per_speaker": 3,
                      "training": {"epochs": 2, "batch_size": 2, "crop_seconds": 0.5}}},
    "seeds": [1, 2],
}
CLASSES = ["under_30", "30_to_59", "60_plus"]


@pytest.fixture(scope="module")
def age_workflow(tmp_path_factory):
    work = copy_checkout(tmp_path_factory.mktemp("checkout_age"))
    cfg = write_config(work, "reduced_age.yaml", REDUCED_AGE)
    snakemake(work, "--cores", "2", "--configfile", str(work / "config" / "demo_age.yaml"), cfg)
    return work


def test_the_age_task_runs_end_to_end(age_workflow):
    work = age_workflow
    assert not (work / "results" / "gender").exists() and not (work / "results" / "speaker").exists()
    runs = pd.read_csv(work / "results/age/runs.csv")
    assert len(runs) == 2 * 3 * 2  # targets x (single, dual, one donor) x seeds
    assert runs["metric"].eq("macro_f1").all() and runs["value"].between(0, 1).all()
    cltm = pd.read_csv(work / "results/age/cltm.csv", index_col=0)
    assert list(cltm.index) == ["en", "es"] and cltm.loc["en", "en"] == 1.0
    for fig in ("cltm", "relative_change", "baselines"):
        assert (work / f"results/age/{fig}.png").stat().st_size > 0
    assert "Age group" in (work / "results/age/cltm.svg").read_text()

    record = json.loads((work / "results/age/runs/en/dual/seed1.json").read_text())
    assert record["task"] == "age" and record["sizes"]["classes"] == 3 and record["sizes"]["train_clips"] == 2 * 3 * 3
    scores = pd.read_csv(work / "results/age/runs/en/dual/seed1.scores.tsv", sep="\t")
    assert list(scores.columns) == ["utt_id", "label", "predicted", *(f"p_{c}" for c in CLASSES)]
    assert set(scores["label"]) == set(CLASSES)  # every age group is in the test set

    # the label column travelled from validated.tsv through the manifest into the audio index
    validated = pd.read_csv(work / "results/demo_corpus/en/validated.tsv", sep="\t", dtype=str, keep_default_na=False)
    assert set(validated["age"]) <= {"teens", "twenties", "thirties", "forties", "fifties", "sixties", "seventies",
                                     "eighties"}
    manifest = pd.read_csv(work / "results/manifests/en.tsv", sep="\t", dtype=str, keep_default_na=False)
    index = pd.read_csv(work / "results/audio/en.tsv", sep="\t", dtype=str, keep_default_na=False)
    assert "age" in manifest.columns and "age" in index.columns
    speakers = pd.read_csv(work / "results/selection/speakers.tsv", sep="\t", dtype=str, keep_default_na=False)
    assert "labels_age" in speakers.columns
    capacity = pd.read_csv(work / "results/preflight/capacity.tsv", sep="\t")
    assert capacity["ready"].all() and set(capacity["task"]) == {"age"}
    assert "under_30" in capacity["train_clips_usable"].iloc[0]

    # the finished workflow is up to date
    again = snakemake(work, "--cores", "1", "-n", "--configfile", str(work / "config" / "demo_age.yaml"),
                      str(work / "reduced_age.yaml"))
    assert "Nothing to be done" in again.stdout + again.stderr
