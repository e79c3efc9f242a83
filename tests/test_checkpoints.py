"""A run stopped mid-way resumes from its checkpoint with exactly the result of an uninterrupted run."""

import copy

import numpy as np
import pytest
import torch

from conftest import TINY_ENCODER, tone
from cltm.train.checkpoints import Checkpoint, run_key
from cltm.model.encoder import build_encoder
from cltm.train.rng import RunGenerators
from cltm.model.heads import Classifier
from cltm.train.loop import fine_tune

CFG = {"epochs": 2, "batch_size": 2, "crop_seconds": 0.5, "lr": 2e-3, "schedule": "linear",
       "warmup_ratio": 0.1, "weight_decay": 0.05, "grad_clip": 1.0}


class Stop(Exception):
    """Stands in for SIGTERM: training ends abruptly between two steps."""


@pytest.fixture(scope="module")
def data():
    # time masking draws from numpy's generator, dropout from torch's: both must be restored
    encoder = build_encoder("random", config=TINY_ENCODER,
                            overrides={"layerdrop": 0.0, "mask_time_prob": 0.3, "hidden_dropout": 0.1}, init_seed=0)
    waves = [tone(f, 1.0, 16000) + 0.01 * np.random.default_rng(i).standard_normal(16000).astype(np.float32)
             for i, f in enumerate([110, 130, 150, 210, 230, 250, 120, 240])]
    labels = np.array([0, 0, 0, 1, 1, 1, 0, 1])
    return encoder, waves, labels


def train(data, checkpoint=None, stop_at=None, messages=None):
    encoder, waves, labels = data

    def log(message):
        if messages is not None:
            messages.append(message)
        if stop_at and f"step {stop_at}/" in message:
            raise Stop(message)

    with RunGenerators(7).active():  # as cltm.train.finetune.finetune_run: the run's own generators
        model = Classifier(copy.deepcopy(encoder), 2)
        loss = fine_tune(model, waves, labels, CFG, seed=7, device=torch.device("cpu"), log=log, checkpoint=checkpoint)
    return loss, {k: v.clone() for k, v in model.state_dict().items()}


def test_resumed_run_equals_uninterrupted_run(data, tmp_path):
    reference_loss, reference_weights = train(data)
    key = run_key(task="gender", seed=7)
    path = tmp_path / "seed7.pt"
    messages = []
    with pytest.raises(Stop):  # a report every step (8 steps); stops at step 5, after the save at step 4
        train(data, Checkpoint(path, key, every_s=1e-9, log=messages.append), stop_at=5)
    assert path.exists() and any("saved at step 4" in m for m in messages)
    resumed = Checkpoint(path, key, every_s=0, log=messages.append)  # 0: resume, but save no more
    loss, weights = train(data, resumed, messages=messages)
    assert "resumed from checkpoint at step 4/8" in messages
    assert loss == reference_loss
    assert all(torch.equal(weights[k], reference_weights[k]) for k in reference_weights)
    resumed.remove()
    assert not path.exists() and not list(tmp_path.glob("*.part"))


def test_resumed_run_equals_uninterrupted_run_whatever_the_process_drew_meanwhile(data, tmp_path):
    """Stopped, then resumed in the same process after the global generators were used and reseeded (other
    runs, other code): the run goes on with its own generators, the saved ones."""
    reference_loss, reference_weights = train(data)
    path = tmp_path / "seed7.pt"
    with pytest.raises(Stop):
        train(data, Checkpoint(path, run_key(task="gender", seed=7), every_s=1e-9, log=lambda m: None), stop_at=3)
    torch.manual_seed(123), np.random.seed(456), torch.rand(5), np.random.rand(5)
    outside = torch.get_rng_state(), np.random.get_state()[1].copy()
    loss, weights = train(data, Checkpoint(path, run_key(task="gender", seed=7), every_s=0, log=lambda m: None))
    assert loss == reference_loss
    assert all(torch.equal(weights[k], reference_weights[k]) for k in reference_weights)
    # and the process's generators are as the run found them
    assert torch.equal(torch.get_rng_state(), outside[0]) and np.array_equal(np.random.get_state()[1], outside[1])


def test_checkpoint_of_other_settings_is_ignored(data, tmp_path):
    path = tmp_path / "seed7.pt"
    with pytest.raises(Stop):
        train(data, Checkpoint(path, run_key(lr=1e-3), every_s=1e-9, log=lambda m: None), stop_at=3)
    messages = []
    loss, _ = train(data, Checkpoint(path, run_key(lr=2e-3), every_s=0, log=messages.append))
    assert any("belongs to other settings" in m for m in messages)
    assert loss == train(data)[0]  # trained from scratch
