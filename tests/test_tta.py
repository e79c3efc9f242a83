"""Test-time augmentation for speaker verification (tasks.<task>.tta_speeds, the paper's protocol): each test
clip embedded at several speeds, the embeddings averaged before scoring, in fine-tuning and probe modes."""

from __future__ import annotations

import copy

import numpy as np
import torch

from cltm.config import digest, run_settings
from cltm.data.audio import change_speed
from cltm.tasks import make_task
from cltm.train.features import extract_features, feature_plan
from cltm.train.finetune import finetune_run
from cltm.train.probe import run_probe
from test_golden import QUIET  # the golden runs' inputs: golden_inputs, a session fixture (tests/conftest.py)

PAPER = [1.0, 0.98, 1.02]


def test_a_clip_at_another_speed_lasts_one_over_the_speed():
    wave = np.sin(np.arange(16000) * 2 * np.pi * 200 / 16000).astype(np.float32)
    assert change_speed(wave, 1.0) is wave
    for speed in (0.98, 1.02):
        assert abs(change_speed(wave, speed).size - 16000 / speed) <= 2


def test_the_setting_reaches_the_digest_and_defaults_to_one_speed(default_config):
    cfg = copy.deepcopy(default_config)
    before = digest(run_settings(cfg, "speaker"))
    assert make_task("speaker", cfg["tasks"]["speaker"]).tta_speeds == (1.0,)
    cfg["tasks"]["speaker"]["tta_speeds"] = PAPER
    assert digest(run_settings(cfg, "speaker")) != before
    assert make_task("speaker", cfg["tasks"]["speaker"]).tta_speeds == tuple(PAPER)


def test_tta_changes_the_fine_tuned_scores_and_is_recorded(golden_inputs):
    cfg, stores, selections, encoder, _, _ = golden_inputs
    runs = {}
    for speeds in ([1.0], PAPER):
        task_cfg = {**cfg["tasks"]["speaker"], "tta_speeds": speeds}
        runs[len(speeds)] = finetune_run("speaker", task_cfg, target="en", condition="single", seed=1,
                                         encoder=copy.deepcopy(encoder), stores=stores,
                                         selections=selections["speaker"], device=torch.device("cpu"), **QUIET)
    (one, s1), (three, s3) = runs[1], runs[3]
    assert one["tta_speeds"] == [1.0] and three["tta_speeds"] == PAPER
    assert one["loss"] == three["loss"]  # the same training: only the test embeddings differ
    assert not np.allclose(s1["score"], s3["score"])


def test_tta_in_probe_mode_reads_the_test_clips_at_each_speed(golden_inputs, tmp_path):
    cfg, stores, selections, _, _, _ = golden_inputs
    from cltm.model.encoder import load_encoder
    from conftest import ROOT

    encoder = load_encoder(ROOT / "models" / "tiny-hubert-synth")
    task_cfg = {**cfg["tasks"]["speaker"], "mode": "probe", "tta_speeds": PAPER}
    tasks = {"speaker": make_task("speaker", task_cfg)}
    features = {}
    for lang in ("en", "tr"):
        plan = feature_plan(tasks, {"speaker": selections["speaker"][lang]})
        assert set(plan["speeds"]) == {(20.0, 0.98), (20.0, 1.02)}
        features[lang] = extract_features(encoder, stores[lang], plan["utt_ids"], tmp_path / f"{lang}.npy",
                                          tmp_path / f"{lang}.tsv", stats=plan["stats"], trim=plan["trim"],
                                          speeds=plan["speeds"], **QUIET)
    test = selections["speaker"]["en"]["test"]
    assert len(features["en"]) == len(plan["utt_ids"]) + 3 * len(test) or len(features["en"]) > len(plan["utt_ids"])
    assert not np.allclose(features["en"].rows(test, 20, 0.98), features["en"].rows(test, 20))
    with_tta, s3 = run_probe("speaker", task_cfg, target="en", condition="single", seed=1, features=features,
                             selections=selections["speaker"], **QUIET)
    plain, s1 = run_probe("speaker", {**task_cfg, "tta_speeds": [1.0]}, target="en", condition="single", seed=1,
                          features=features, selections=selections["speaker"], **QUIET)
    assert with_tta["tta_speeds"] == PAPER and with_tta["loss"] == plain["loss"]
    assert not np.allclose(s1["score"], s3["score"])
