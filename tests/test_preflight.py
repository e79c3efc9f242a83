"""Preflight on metadata: which languages can supply the regimes, the grid size and its cost."""

import pytest

from conftest import make_manifest
from cltm.data.preflight import grid, language_capacity, preflight


def _cfg(config):
    config["languages"] = ["en", "de", "fr"]
    config["tasks"]["gender"].update(n_per_class=6, max_clips_per_speaker=3)
    config["tasks"]["speaker"].update(n_utterances=12, max_utterances_per_speaker=4, max_positives_per_speaker=5)
    config["data"]["test"].update(speakers_per_gender=2, min_clips_per_speaker=4, max_clips_per_speaker=5)
    config["seeds"] = [1, 2, 3]
    return config


def test_capacity_names_what_is_short(config):
    cfg = _cfg(config)
    rows = {r["task"]: r for r in language_capacity(cfg, make_manifest("en", 8, 8), "en")}
    assert rows["gender"]["ready"] and rows["speaker"]["ready"]
    # 6 training speakers per gender x 3 clips = 18 usable per class, 12 needed
    assert rows["gender"]["spare_clips"] == 18 - 12 and rows["gender"]["train_clips_usable"] == "18 male, 18 female"
    assert rows["speaker"]["spare_clips"] == 12 * 4 - 24
    assert rows["gender"]["test_speakers_eligible_female"] == 8
    short = {r["task"]: r for r in language_capacity(cfg, make_manifest("de", 4, 8, unlabelled=4), "de")}
    assert not short["gender"]["ready"] and "language 'de', task gender" in short["gender"]["problem"]
    assert short["gender"]["spare_clips"] == 2 * 3 - 12 and short["speaker"]["ready"]  # unlabelled voices count here


def test_grid_and_cost(config):
    cfg = _cfg(config)
    cfg["tasks"]["speaker"]["languages"] = ["en", "de"]
    runs = grid(cfg).set_index("task")
    assert runs.loc["gender", "runs"] == 3 * 4 * 3 and runs.loc["speaker", "runs"] == 2 * 3 * 3
    cfg["preflight"] = {"seconds_per_run": {"gender": 600, "speaker": None}}
    manifests = {"en": make_manifest("en", 8, 8), "de": make_manifest("de", 4, 8), "fr": make_manifest("fr", 8, 8)}
    capacity, runs, text = preflight(cfg, manifests)
    assert runs.set_index("task").loc["gender", "gpu_hours"] == pytest.approx(36 * 600 / 3600)
    assert "NOT READY" in text and "language 'de', task gender" in text
    assert "gender: 3 targets x 4 conditions x 3 seeds = 36 runs; 36 x 600 s = 6 GPU hours" in text
    assert "cost unknown: set preflight.seconds_per_run.speaker" in text
    assert "snakemake --cores 1 results/speaker/runs/en/dual/seed1.json" in text  # how to measure it
    assert len(capacity) == 3 + 2


def test_paper_preset_grid(config):
    import yaml

    from conftest import ROOT

    paper = yaml.safe_load((ROOT / "config" / "paper.yaml").read_text())
    runs = grid(paper).set_index("task")
    assert runs.loc["gender", "runs"] == runs.loc["speaker", "runs"] == 16 * 17 * 10


def test_capacity_leaves_out_other_languages_test_speakers(config):
    """A shared speaker id is one person: preflight counts training clips as selection will, without any
    language's test speakers, and says how many clips that removed."""
    cfg = _cfg(config)
    cfg["languages"] = ["en", "es"]
    en, es = make_manifest("en", 8, 8), make_manifest("es", 8, 8)
    es["speaker"] = es["speaker"].str.replace("es-", "en-", regex=False)
    capacity, _, _ = preflight(cfg, {"en": en, "es": es})
    rows = capacity.set_index(["language", "task"])
    for lang in ("en", "es"):
        gender = rows.loc[(lang, "gender")]
        assert gender["ready"] and gender["shared_speakers"] == 16 and gender["excluded_clips"] == 8 * gender["excluded_speakers"]
        usable = [int(x.split()[0]) for x in gender["train_clips_usable"].split(", ")]
        assert sum(usable) == 3 * (2 * 6 - gender["excluded_speakers"])
