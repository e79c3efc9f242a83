"""The demo's pretrained stand-in encoder: the HuBERT-style pretraining and the model shipped in models/."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from safetensors.torch import load_file
from transformers import HubertConfig, HubertModel

from cltm.model.encoder import build_encoder
from cltm.demo.pretrain import TINY_CONFIG, assign_clusters, kmeans, mfcc_features, pretrain, span_mask

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = ROOT / "models" / "tiny-hubert-synth"


def test_mfcc_frames_are_on_the_encoders_frame_grid():
    model = HubertModel(HubertConfig(**TINY_CONFIG)).eval()
    rng = np.random.default_rng(0)
    for n in (400, 719, 720, 16000, 16321, 23456):
        wave = rng.normal(size=n).astype(np.float32)
        frames = model(torch.from_numpy(wave)[None]).last_hidden_state.shape[1]
        feats = mfcc_features(wave)
        assert feats.shape == (frames, 39)
        assert np.isfinite(feats).all() and np.allclose(feats.mean(0), 0, atol=1e-4)


def test_kmeans_finds_separated_clusters():
    rng = np.random.default_rng(1)
    centres = np.array([[0, 0], [10, 0], [0, 10]], dtype=float)
    points = np.concatenate([c + rng.normal(scale=0.5, size=(100, 2)) for c in centres])
    found = kmeans(points, 3, 10, rng)
    assert sorted(np.abs(found[:, None] - centres[None]).sum(-1).min(0).round(0)) == [0, 0, 0]
    labels = assign_clusters(points, found)
    assert all(len(set(labels[i * 100:(i + 1) * 100])) == 1 for i in range(3))


def test_span_mask_covers_about_the_asked_share():
    gen = torch.Generator().manual_seed(0)
    share = np.mean([span_mask(100, 0.5, 5, gen).float().mean().item() for _ in range(50)])
    assert 0.3 < share <= 0.5  # spans may overlap, never exceed prob x frames
    assert span_mask(3, 0.1, 5, gen).any()  # a clip shorter than a span still gets one


SMALL = dict(languages=["de", "eu"], speakers_per_gender=2, utterances_per_speaker=4, clusters=8,
             kmeans_iterations=5, steps=60, batch_size=4, crop_seconds=1.0, warmup_steps=10, lr=2e-3)


@pytest.fixture
def one_thread():
    """One intra-op thread for the pretraining test, and the process's own count back afterwards."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def test_pretraining_learns_saves_a_loadable_encoder_and_is_deterministic(tmp_path, one_thread):
    first = pretrain(tmp_path / "a", log=lambda m: None, **SMALL)
    assert first["clips"] == 2 * 2 * 2 * 4 and first["recipe"]["steps"] == 60
    assert first["final_loss"] < first["first_loss"] < first["chance_loss"] + 0.3
    for name in ("config.json", "model.safetensors", "preprocessor_config.json", "pretraining.json", "README.md"):
        assert (tmp_path / "a" / name).is_file()
    assert "SYNTHETIC" in (tmp_path / "a" / "README.md").read_text()
    encoder = build_encoder(str(tmp_path / "a"), overrides={"layerdrop": 0.0})  # the local-directory path
    assert encoder.config.hidden_size == TINY_CONFIG["hidden_size"]
    assert not encoder.speech_inputs.do_normalize  # pre-trained on the waveform as it is
    assert encoder(torch.zeros(1, 16000)).last_hidden_state.shape == (1, 49, TINY_CONFIG["hidden_size"])
    pretrain(tmp_path / "b", log=lambda m: None, **SMALL)
    a, b = load_file(tmp_path / "a" / "model.safetensors"), load_file(tmp_path / "b" / "model.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_unknown_pretraining_setting_is_named(tmp_path):
    try:
        pretrain(tmp_path, log=lambda m: None, step=10)
    except ValueError as err:
        assert "step" in str(err) and "steps" in str(err)
    else:
        raise AssertionError("an unknown setting was accepted")


def test_shipped_demo_encoder_is_the_documented_pretrained_model():
    config = yaml.safe_load((ROOT / "config" / "config.yaml").read_text())
    assert config["encoder"]["source"] == "models/tiny-hubert-synth"
    summary = json.loads((SHIPPED / "pretraining.json").read_text())
    assert not set(summary["recipe"]["languages"]) & set(config["languages"])  # pretraining saw none of the matrix
    assert summary["final_loss"] < summary["chance_loss"] - 0.5  # it learned, well beyond chance
    encoder = build_encoder(str(SHIPPED), overrides=config["encoder"]["overrides"])
    for key, value in config["encoder"]["config"].items():  # the sizes the config documents
        assert getattr(encoder.config, key) == value, key
    assert sum(p.numel() for p in encoder.parameters()) == summary["parameters"]
    assert not encoder.speech_inputs.do_normalize and encoder.speech_inputs.read_from.endswith("preprocessor_config.json")
