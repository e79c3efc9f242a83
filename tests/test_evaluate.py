"""Evaluation without a host sync per batch (cltm.train.evaluate): outputs stay on the device and come back in
one copy, in clip order, equal to evaluating each clip alone and copying it back at once (the path before):
bit for bit where clips go one at a time (a group-normalised encoder in fp32), to float rounding where
padding is exact and clips share padded batches; for both task kinds."""

from __future__ import annotations

import copy

import numpy as np
import pandas as pd
import torch

from conftest import TINY_ENCODER
from cltm.data.audio import change_speed, trim_silence
from cltm.model.encoder import build_encoder
from cltm.model.heads import Classifier
from cltm.tasks import make_task
from cltm.train.evaluate import eval_batches, evaluate
from cltm.train.features import encode_clips

CPU = torch.device("cpu")
LAYER_NORM = {**TINY_ENCODER, "model_type": "wav2vec2", "feat_extract_norm": "layer", "do_stable_layer_norm": True}


def alone(model: Classifier, waves, fn) -> torch.Tensor:
    """The reference: each clip through the model alone, copied to the host at once."""
    model.eval()
    with torch.inference_mode():
        return torch.stack([fn(*model.inputs.pad([w])).float().cpu()[0] for w in waves])


def models():
    """A group-normalised HuBERT (clips one at a time in fp32) and a layer-normalised wav2vec2 (padded batches)."""
    group = build_encoder("random", config=TINY_ENCODER, overrides={"layerdrop": 0.0}, init_seed=0)
    layer = build_encoder("random", config=LAYER_NORM, overrides={"layerdrop": 0.0}, init_seed=0)
    assert not group.speech_inputs.padded_batches and layer.speech_inputs.padded_batches
    return {"group": group, "layer": layer}


def test_both_task_kinds_evaluate_as_each_clip_alone(golden_inputs, capsys):
    cfg, stores, selections, _, _, _ = golden_inputs
    store = stores["en"]
    diffs = {}
    for name, encoder in models().items():
        # classification: class probabilities per clip, then the task's scores
        task_cfg = cfg["tasks"]["gender"]
        task, sel = make_task("gender", task_cfg), selections["gender"]["en"]
        model = Classifier(copy.deepcopy(encoder), 2, task.pooling)
        waves = [store[u] for u in sel["test"]]
        assert len({w.size for w in waves}) > 1  # clips of many lengths: batches are sorted, order restored
        if name == "layer":
            assert any(len(idx) > 1 for idx, _, _ in eval_batches(waves, model.inputs))
        _, scores = evaluate(task, model, store, sel, task_cfg, CPU)
        proba = torch.softmax(alone(model, waves, model), dim=-1).numpy()
        _, want = task.score(store, sel["test"], proba)
        diffs[f"{name} classification"] = _largest(scores, want)

        # speaker verification: embeddings of the trimmed clips at each test-time speed, averaged, then trials
        task_cfg = {**cfg["tasks"]["speaker"], "tta_speeds": [1.0, 1.02]}
        task, sel = make_task("speaker", task_cfg), selections["speaker"]["en"]
        model = Classifier(copy.deepcopy(encoder), 4, task.pooling)
        trimmed = [trim_silence(store[u], task_cfg.get("trim_db")) for u in sel["test"]]
        _, scores = evaluate(task, model, store, sel, task_cfg, CPU)
        embeddings = torch.stack([alone(model, [change_speed(w, s) for w in trimmed], model.embed)
                                  for s in task.tta_speeds]).mean(dim=0)
        _, want = task.score(sel["test"], embeddings, sel)
        diffs[f"{name} speaker verification"] = _largest(scores, want)
    with capsys.disabled():
        print("\nlargest difference from each clip alone: " + ", ".join(f"{k} {v:.2e}" for k, v in diffs.items()))
    assert diffs["group classification"] == 0 and diffs["group speaker verification"] == 0  # bit for bit
    assert diffs["layer classification"] < 1e-5 and diffs["layer speaker verification"] < 1e-5


def _largest(got: pd.DataFrame, want: pd.DataFrame) -> float:
    """The largest difference between two score tables of the same rows (every other column equal)."""
    assert list(got.columns) == list(want.columns) and len(got) == len(want)
    numeric = [c for c in got.columns if pd.api.types.is_float_dtype(got[c])]
    other = [c for c in got.columns if c not in numeric]
    pd.testing.assert_frame_equal(got[other].reset_index(drop=True), want[other].reset_index(drop=True))
    return float(max(np.abs(got[c].to_numpy() - want[c].to_numpy()).max() for c in numeric))


def test_features_come_back_in_clip_order_in_one_copy():
    """Frozen-encoder features (probe mode): each clip's row equals the clip alone, whatever the batching."""
    encoder = models()["layer"]
    rng = np.random.default_rng(0)
    waves = [rng.standard_normal(n).astype(np.float32) for n in (3000, 5200, 2400, 5200, 4100)]
    batched = encode_clips(encoder, waves, stats=("mean", "std"), batch=4)
    each = np.concatenate([encode_clips(encoder, [w], stats=("mean", "std")) for w in waves])
    np.testing.assert_allclose(batched, each, rtol=0, atol=1e-5)
