"""The training loop's GPU path, tested on the CPU (and on CUDA where there is one): a resumed optimiser's
state on its parameters' device and dtype, fused AdamW only on CUDA, `training.deterministic`, and no
clip silently cut by whole-clip batches."""

from __future__ import annotations

import copy
import json

import numpy as np
import pytest
import torch

from conftest import TINY_ENCODER, tone
from cltm.config import ConfigError, check_paths, validate_config
from cltm.config.validate import pads_exactly_config, whole_clip_problem
from cltm.model.encoder import build_encoder, pads_exactly
from cltm.model.heads import Classifier
from cltm.train.checkpoints import Checkpoint, run_key
from cltm.train.loop import fine_tune, make_batch, make_optimiser
from cltm.train.rng import RunGenerators

CFG = {"epochs": 2, "batch_size": 2, "crop_seconds": 0.5, "lr": 2e-3, "schedule": "linear",
       "warmup_ratio": 0.1, "weight_decay": 0.05, "grad_clip": 1.0}
DEVICES = ["cpu", pytest.param("cuda", marks=pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA"))]


class Stop(Exception):
    """Stands in for SIGTERM between two steps."""


@pytest.fixture(scope="module")
def data():
    encoder = build_encoder("random", config=TINY_ENCODER,
                            overrides={"layerdrop": 0.0, "mask_time_prob": 0.3, "hidden_dropout": 0.1}, init_seed=0)
    waves = [tone(f, 1.0, 16000) + 0.01 * np.random.default_rng(i).standard_normal(16000).astype(np.float32)
             for i, f in enumerate([110, 130, 150, 210, 230, 250, 120, 240])]
    return encoder, waves, np.array([0, 0, 0, 1, 1, 1, 0, 1])


def train(data, device, cfg=CFG, checkpoint=None, stop_at=None):
    encoder, waves, labels = data

    def log(message):
        if stop_at and f"step {stop_at}/" in message:
            raise Stop(message)

    with RunGenerators(7, device).active():
        model = Classifier(copy.deepcopy(encoder), 2)
        loss = fine_tune(model, waves, labels, cfg, seed=7, device=device, log=log, checkpoint=checkpoint)
    return loss, {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}


def layout(optimiser) -> dict:
    """(device, dtype) of every state tensor of every parameter, by the parameter's position."""
    params = [p for group in optimiser.param_groups for p in group["params"]]
    return {(i, key): (value.device, value.dtype) for i, p in enumerate(params)
            for key, value in optimiser.state.get(p, {}).items() if torch.is_tensor(value)}


@pytest.mark.parametrize("device_name", DEVICES)
def test_a_resumed_optimiser_state_sits_on_its_parameters_device_and_dtype(data, tmp_path, monkeypatch, device_name):
    """The checkpoint is read onto the CPU (map_location), the model is moved to the device before the
    optimiser's state is loaded, and Optimizer.load_state_dict casts each state tensor to its parameter's
    device and dtype: the moments (exp_avg, exp_avg_sq) on the parameter's device and dtype, `step` where
    this AdamW keeps it (the CPU, or the device for the fused kernel), as in the uninterrupted run."""
    device = torch.device(device_name)
    seen = {}
    real = torch.optim.AdamW

    class Recording(real):
        def step(self, *args, **kwargs):
            out = super().step(*args, **kwargs)
            seen.setdefault("after_step", layout(self))
            return out

        def load_state_dict(self, state_dict):
            super().load_state_dict(state_dict)
            seen["resumed"] = layout(self)
            seen["params"] = [(p.device, p.dtype) for g in self.param_groups for p in g["params"]]
            seen["fused"] = bool(self.defaults.get("fused"))

    monkeypatch.setattr(torch.optim, "AdamW", Recording)
    reference_loss, reference_weights = train(data, device)
    uninterrupted = seen.pop("after_step")
    path = tmp_path / "seed7.pt"
    with pytest.raises(Stop):
        train(data, device, checkpoint=Checkpoint(path, run_key(seed=7), every_s=1e-9, log=lambda m: None), stop_at=5)
    seen.clear()
    loss, weights = train(data, device, checkpoint=Checkpoint(path, run_key(seed=7), every_s=0, log=lambda m: None))
    resumed = seen["resumed"]
    assert resumed and resumed == uninterrupted
    for (i, key), (where, dtype) in resumed.items():
        if key == "step":
            assert where == (device if seen["fused"] else torch.device("cpu")), (i, key, where)
        else:
            assert (where.type, dtype) == (seen["params"][i][0].type, seen["params"][i][1]), (i, key)
    assert seen["fused"] is (device.type == "cuda")
    if device.type == "cpu":  # bit for bit; on CUDA too with training.deterministic (benchmarks/gpu_check.sh)
        assert loss == reference_loss
        assert all(torch.equal(weights[k], reference_weights[k]) for k in reference_weights)


def test_adamw_is_fused_on_cuda_only():
    cpu = make_optimiser([torch.nn.Parameter(torch.zeros(3))], CFG, torch.device("cpu"))
    assert not cpu.defaults.get("fused") and type(cpu) is torch.optim.AdamW
    if torch.cuda.is_available():
        gpu = make_optimiser([torch.nn.Parameter(torch.zeros(3, device="cuda"))], CFG, torch.device("cuda"))
        assert gpu.defaults["fused"] is True


def test_deterministic_training_gives_the_cpu_s_numbers_and_restores_the_settings(data, monkeypatch):
    from cltm.train import loop

    before = (torch.are_deterministic_algorithms_enabled(), torch.backends.cudnn.deterministic,
              torch.backends.cudnn.benchmark)
    plain = train(data, torch.device("cpu"))
    seen = []
    original = loop.deterministic_kernels

    def spy(on, device):
        seen.append((on, torch.are_deterministic_algorithms_enabled()))
        return original(on, device)

    monkeypatch.setattr(loop, "deterministic_kernels", spy)
    deterministic = train(data, torch.device("cpu"), cfg={**CFG, "deterministic": True})
    assert seen == [(True, False)]
    assert deterministic[0] == plain[0]
    assert all(torch.equal(deterministic[1][k], plain[1][k]) for k in plain[1])
    assert (torch.are_deterministic_algorithms_enabled(), torch.backends.cudnn.deterministic,
            torch.backends.cudnn.benchmark) == before


def test_deterministic_kernels_are_on_for_the_time_of_the_call(monkeypatch):
    from cltm.model.device import deterministic_kernels

    monkeypatch.delenv("CUBLAS_WORKSPACE_CONFIG", raising=False)
    with deterministic_kernels(True, torch.device("cpu")):
        assert torch.are_deterministic_algorithms_enabled() and torch.backends.cudnn.deterministic
        assert not torch.backends.cudnn.benchmark
    assert not torch.are_deterministic_algorithms_enabled()
    with deterministic_kernels(True, torch.device("cuda")):  # sets cuBLAS's workspace, touches no device
        import os

        assert os.environ["CUBLAS_WORKSPACE_CONFIG"] == ":4096:8"
    with deterministic_kernels(False, torch.device("cpu")):
        assert not torch.are_deterministic_algorithms_enabled()


def test_the_run_record_carries_deterministic_where_given():
    from cltm.records import run_record
    from cltm.tasks import make_task

    task = make_task("gender", {"n_per_class": 1, "max_clips_per_speaker": 1, "training": CFG})
    common = dict(target="en", condition="single", seed=1, metrics={"macro_f1": 0.5, "accuracy": 0.5},
                  items=[("en", "u1")], metas=[{"speaker": "s1"}], train_samples=16000, n_classes=2,
                  selections={"en": {"test": ["u2"], "test_speakers": ["s2"]}}, loss={}, sample_rate=16000,
                  timing={}, device="cpu", precision="fp32", torch_version="x")
    assert "deterministic" not in run_record(task, **common)
    assert run_record(task, **common, deterministic=True)["deterministic"] is True
    assert run_record(task, **common, deterministic=False)["deterministic"] is False


# ---------------------------------------------------------------- no clip silently cut (issue 20, section 2)


WHOLE = {**CFG, "batch_size": 2, "crop_seconds": None}


def test_whole_clip_batches_of_an_encoder_without_a_mask_stop_before_training(data):
    encoder, waves, labels = data
    lines = []
    model = Classifier(copy.deepcopy(encoder), 2)
    with pytest.raises(ConfigError) as err:
        fine_tune(model, waves, labels, WHOLE, seed=1, device=torch.device("cpu"), log=lines.append, task_name="gender")
    text = str(err.value)
    assert "tasks.gender.training.batch_size" in text and "tasks.gender.training.crop_seconds" in text
    assert "batch_size: 1" in text and "crop_seconds (e.g." in text
    assert lines == []  # nothing trained
    # batch 1 (the paper protocol) and crops stay allowed
    for ok in ({**WHOLE, "batch_size": 1, "epochs": 1}, {**WHOLE, "crop_seconds": 0.5, "epochs": 1}):
        fine_tune(Classifier(copy.deepcopy(encoder), 2), waves[:2], labels[:2], ok, seed=1,
                  device=torch.device("cpu"), log=lines.append)


def test_make_batch_never_cuts_whole_clips():
    waves = [np.ones(n, np.float32) for n in (16000, 12000)]
    with pytest.raises(ValueError, match="cut to the shortest"):
        make_batch(waves, None, torch.Generator().manual_seed(0))
    x, mask = make_batch([np.ones(9000, np.float32)] * 2, None, torch.Generator().manual_seed(0))
    assert x.shape == (2, 9000) and mask is None  # equal lengths: nothing cut


def _config(default_config, training: dict, encoder: dict) -> dict:
    cfg = copy.deepcopy(default_config)
    cfg["encoder"] = encoder
    for task in ("gender", "speaker"):
        cfg["tasks"][task]["training"] = {**cfg["tasks"][task]["training"], **training}
    return cfg


def test_config_validation_refuses_whole_clip_batches_where_the_encoder_is_known(default_config, tmp_path):
    whole = {"batch_size": 4, "crop_seconds": None}
    random_group = {"source": "random", "config": TINY_ENCODER, "init_seed": 0}
    with pytest.raises(ConfigError) as err:
        validate_config(_config(default_config, whole, random_group))
    text = str(err.value)
    for task in ("gender", "speaker"):
        assert f"'tasks.{task}.training.batch_size' (4)" in text and f"'tasks.{task}.training.crop_seconds'" in text
    # a layer-normalised feature encoder pads exactly (an attention mask): whole clips are fine
    layer = {**random_group, "config": {**TINY_ENCODER, "feat_extract_norm": "layer"}}
    validate_config(_config(default_config, whole, layer))
    validate_config(_config(default_config, {"batch_size": 4, "crop_seconds": 1.0}, random_group))
    validate_config(_config(default_config, {"batch_size": 1, "crop_seconds": None}, random_group))
    # the overrides count too
    validate_config(_config(default_config, whole, {**random_group, "overrides": {"feat_extract_norm": "layer"}}))
    # a probe task trains no encoder
    probe = _config(default_config, whole, random_group)
    probe["tasks"]["speaker"]["mode"] = "probe"
    with pytest.raises(ConfigError) as err:
        validate_config(probe)
    assert "tasks.gender.training" in str(err.value) and "tasks.speaker.training" not in str(err.value)


def test_a_local_encoder_directory_s_config_is_read_by_the_path_check(default_config, tmp_path):
    model = tmp_path / "model"
    model.mkdir()
    (model / "config.json").write_text(json.dumps({"model_type": "hubert", "feat_extract_norm": "group"}))
    cfg = _config(default_config, {"batch_size": 2, "crop_seconds": None}, {"source": str(model), "init_seed": 0})
    cfg["corpus"] = {"type": "demo"}
    validate_config(cfg)  # the directory's config is read with the paths
    with pytest.raises(ConfigError, match="'tasks.gender.training.batch_size' \\(2\\)"):
        check_paths(cfg)
    (model / "config.json").write_text(json.dumps({"model_type": "wav2vec2", "feat_extract_norm": "layer"}))
    check_paths(cfg)


@pytest.mark.parametrize("config", [
    {"model_type": "hubert"}, {"model_type": "hubert", "feat_extract_norm": "layer"},
    {"model_type": "wav2vec2", "feat_extract_norm": "layer", "do_stable_layer_norm": True}, {"model_type": "wavlm"},
    {"model_type": "data2vec-audio"}, {"model_type": "data2vec-audio", "num_conv_pos_embeddings": 1},
])
def test_the_light_rule_is_the_encoder_s(config):
    from transformers import AutoConfig

    full = AutoConfig.for_model(config["model_type"], **{k: v for k, v in config.items() if k != "model_type"})
    assert pads_exactly_config(config) is pads_exactly(full)
    assert (whole_clip_problem({"batch_size": 2, "crop_seconds": None}, pads_exactly(full)) is None) is pads_exactly(full)
