"""The trainer and the tasks on real (synthetic-speech) audio with a tiny real HuBERT."""

import copy

import numpy as np
import pandas as pd
import pytest
import torch

from conftest import TINY_ENCODER
from cltm.data.audio import AudioStore
from cltm.data.prepare import prepare_language
from cltm.data.corpora import read_common_voice
from cltm.model.encoder import build_encoder
from cltm.data.plan import select_language
from cltm.data.selection import training_items
from cltm.train.finetune import finetune_run
from cltm.train.loop import lr_lambda, make_batch

FAST = {"epochs": 2, "batch_size": 4, "crop_seconds": 1.0, "lr": 2e-3, "schedule": "linear",
        "warmup_ratio": 0.1, "weight_decay": 0.0, "grad_clip": 1.0}


@pytest.fixture(scope="module")
def prepared(demo_release, tmp_path_factory, default_config):
    cfg = copy.deepcopy(default_config)
    cfg["data"]["test"].update(speakers_per_gender=2, min_clips_per_speaker=4, max_clips_per_speaker=4)
    cfg["tasks"]["gender"].update(n_per_class=3, max_clips_per_speaker=3, training=FAST)
    cfg["tasks"]["speaker"].update(n_utterances=8, max_utterances_per_speaker=4, max_positives_per_speaker=6,
                                   training=FAST)
    out = tmp_path_factory.mktemp("prepared")
    stores, selections = {}, {"gender": {}, "speaker": {}}
    for lang in ("en", "tr"):
        m = read_common_voice(demo_release, lang)
        sel = select_language(cfg, m, lang)
        wanted = {u for s in sel.values() for u in s["test"] + s["single"] + s["extra"]}
        prepare_language(m, wanted, out / f"{lang}.npy", out / f"{lang}.tsv", log=lambda s: None)
        stores[lang] = AudioStore(out / f"{lang}.npy", out / f"{lang}.tsv")
        for task in sel:
            selections[task][lang] = sel[task]
    encoder = build_encoder("random", config=TINY_ENCODER, overrides={"layerdrop": 0.0}, init_seed=0)
    return cfg, stores, selections, encoder


def _run(prepared, task, condition, seed):
    cfg, stores, selections, encoder = prepared
    return finetune_run(task, cfg["tasks"][task], target="en", condition=condition, seed=seed,
                   encoder=copy.deepcopy(encoder), stores=stores, selections=selections[task],
                   device=torch.device("cpu"), log=lambda s: None)


def test_training_sets_are_nested(prepared):
    _, _, selections, _ = prepared
    sel = selections["gender"]
    single = training_items("en", "single", sel)
    dual = training_items("en", "dual", sel)
    donor = training_items("en", "donor-tr", sel)
    assert dual[: len(single)] == single and len(dual) == 2 * len(single)
    assert donor[: len(single)] == single and {l for l, _ in donor[len(single):]} == {"tr"}
    with pytest.raises(ValueError, match="names the target itself"):
        training_items("en", "donor-en", sel)


def test_gender_run_is_reproducible(prepared):
    a, pa = _run(prepared, "gender", "dual", seed=3)
    b, pb = _run(prepared, "gender", "dual", seed=3)
    c, _ = _run(prepared, "gender", "dual", seed=4)
    assert a["metrics"] == b["metrics"] and a["loss"] == b["loss"]
    pd.testing.assert_frame_equal(pa, pb)
    assert a["loss"] != c["loss"]
    assert set(a["metrics"]) == {"macro_f1", "accuracy", "roc_auc"} and a["value"] == a["metrics"]["macro_f1"]
    assert 0 <= a["metrics"]["roc_auc"] <= 1  # a two-class run logs its threshold-free ROC-AUC too
    assert a["sizes"]["train_clips"] == 12 and a["sizes"]["donor_clips"] == 0 and a["sizes"]["classes"] == 2
    assert list(pa.columns) == ["utt_id", "label", "predicted", "p_female"] and len(pa) == a["sizes"]["test_clips"]


def test_speaker_run_scores_trials_and_donor_speakers_are_extra_classes(prepared):
    single, _ = _run(prepared, "speaker", "single", seed=1)
    rec, scores = _run(prepared, "speaker", "donor-tr", seed=1)
    assert rec["sizes"]["classes"] > single["sizes"]["classes"]
    assert rec["sizes"]["donor_clips"] == 8 and rec["donor"] == "tr"
    assert set(rec["metrics"]) == {"roc_auc", "eer", "min_dcf_p0.01", "min_dcf_p0.05"}
    assert list(scores.columns) == ["enroll", "test", "score", "label"]
    assert scores["score"].between(-1 - 1e-6, 1 + 1e-6).all() and len(scores) == rec["sizes"]["trials"]
    again, scores2 = _run(prepared, "speaker", "donor-tr", seed=1)
    assert again["metrics"] == rec["metrics"] and np.array_equal(scores["score"], scores2["score"])


def test_schedule_and_crops():
    f = lr_lambda("linear", total_steps=100, warmup_ratio=0.1)
    assert f(0) == pytest.approx(0.1) and f(9) == pytest.approx(1.0) and f(55) == pytest.approx(0.5) and f(100) == 0
    assert lr_lambda("constant", 10, 0.0)(7) == 1.0
    g = torch.Generator().manual_seed(0)
    batch, mask = make_batch([np.ones(30000, np.float32), np.ones(20000, np.float32)], crop=16000, generator=g)
    assert batch.shape == (2, 16000) and mask is None
    batch, mask = make_batch([np.ones(30000, np.float32), np.ones(12000, np.float32)], crop=16000, generator=g)
    assert batch.shape == (2, 12000) and mask is None  # never padded: cropped to the shortest clip


def test_frozen_feature_encoder_keeps_its_weights(prepared):
    cfg, stores, selections, encoder = prepared
    task_cfg = copy.deepcopy(cfg["tasks"]["speaker"])
    task_cfg["training"]["freeze_feature_encoder"] = True
    from cltm.model.heads import Classifier
    from cltm.train.loop import fine_tune

    model = Classifier(copy.deepcopy(encoder), 2, "last4")
    before = copy.deepcopy(model.state_dict())
    waves = [stores["en"][u] for u in selections["speaker"]["en"]["single"][:4]]
    fine_tune(model, waves, np.array([0, 0, 1, 1]), task_cfg["training"], seed=0, device=torch.device("cpu"),
              log=lambda s: None)
    after = model.state_dict()
    cnn = [k for k in after if k.startswith("encoder.feature_extractor.")]
    assert cnn and all(torch.equal(before[k], after[k]) for k in cnn)
    assert not torch.equal(before["head.weight"], after["head.weight"])
    assert any(not torch.equal(before[k], after[k]) for k in after if k.startswith("encoder.encoder.layers."))


# LayerDrop: the model's own config (encoder.overrides: null, as the paper preset) keeps HuBERT's
# layerdrop; in transformers 5 a skipped layer is left out of `hidden_states` altogether.
NO_DROPOUT = {"hidden_dropout": 0.0, "attention_dropout": 0.0, "activation_dropout": 0.0, "feat_proj_dropout": 0.0,
              "mask_time_prob": 0.0}


def _layerdrop_classifier(pooling, layerdrop, layers=2, **config):
    from cltm.model.heads import Classifier

    encoder = build_encoder("random", config={**TINY_ENCODER, "num_hidden_layers": layers, **config},
                            overrides={"layerdrop": layerdrop}, init_seed=0)
    return Classifier(encoder, 3, pooling)


@pytest.mark.parametrize("stable", [False, True])
def test_pooled_layers_are_the_named_layers_whatever_layerdrop_skips(stable):
    """Under LayerDrop every pooled state is the named layer's output, a skipped layer passing its input
    on (the identity): compared with an eval-mode pass in which the same layers are made identities."""
    from cltm.model.heads import Classifier

    model = _layerdrop_classifier("last4", 0.5, layers=3, do_stable_layer_norm=stable, **NO_DROPOUT)
    gender = Classifier(model.encoder, 2, "last")  # the gender head's pooling, on the same encoder
    x = torch.randn(1, 4000)
    model.train()
    skipped_patterns = set()
    for seed in range(6):
        torch.manual_seed(seed)
        skip = [bool(torch.rand([]) < 0.5) for _ in model.encoder.encoder.layers]  # the encoder's own draws
        skipped_patterns.add(tuple(skip))
        torch.manual_seed(seed)
        with torch.no_grad():
            last, states = model.layer_states(x)
            torch.manual_seed(seed)
            pooled = model.embed(x)
            torch.manual_seed(seed)
            pooled_last = gender.embed(x)
        assert len(states) == 4 and torch.equal(states[-1], last)
        model.eval()
        handles = [layer.register_forward_hook(lambda m, args, out: args[0], prepend=True)  # before transformers' recorder
                   for layer, s in zip(model.encoder.encoder.layers, skip) if s]
        with torch.no_grad():
            ref = model.encoder(x, output_hidden_states=True)
        for h in handles:
            h.remove()
        model.train()
        expected = list(ref.hidden_states)
        expected[-1] = ref.last_hidden_state
        assert len(expected) == 4
        for got, want in zip(states, expected):
            torch.testing.assert_close(got, want)
        torch.testing.assert_close(pooled, torch.stack(expected).mean(dim=0).mean(dim=1))
        torch.testing.assert_close(pooled_last, expected[-1].mean(dim=1))  # the last layer's output
    assert (True, True, True) in skipped_patterns and len(skipped_patterns) > 3  # all-skipped steps were seen


def test_without_layerdrop_the_pooled_states_are_transformers_hidden_states():
    model = _layerdrop_classifier("last4", 0.0, layers=4).eval()
    x = torch.randn(1, 4000)
    with torch.no_grad():
        ref = model.encoder(x, output_hidden_states=True).hidden_states
        torch.testing.assert_close(model.embed(x), torch.stack(ref[-4:]).mean(dim=0).mean(dim=1))


def test_training_with_layerdrop_never_loses_the_pooled_layers():
    """layerdrop 0.5 on a 2-layer model: a quarter of the steps skip every layer (the old code then
    crashed with 'stack expects a non-empty TensorList'); every step pools the same 3 states."""
    from cltm.train.loop import fine_tune

    model = _layerdrop_classifier("last4", 0.5)
    counts, all_skipped = [], []
    original = model.layer_states

    def counting(waves, attention_mask=None):
        last, states = original(waves, attention_mask)
        counts.append(len(states))
        all_skipped.append(all(torch.equal(s, states[0]) for s in states))
        return last, states

    model.layer_states = counting
    rng = np.random.default_rng(0)
    steps = 60  # a few seconds on an idle CPU (these 2-core machines are shared: up to a minute)
    waves = [rng.standard_normal(4000).astype(np.float32) for _ in range(steps)]
    cfg = {"epochs": 1, "batch_size": 1, "crop_seconds": None, "lr": 1e-3, "schedule": "constant",
           "warmup_ratio": 0.0, "weight_decay": 0.0, "grad_clip": 1.0}
    loss = fine_tune(model, waves, rng.integers(0, 3, steps), cfg, seed=0, device=torch.device("cpu"),
                     log=lambda s: None)
    assert loss["steps"] == steps and np.isfinite(loss["last"])
    assert counts == [3] * steps and sum(all_skipped) >= 5  # steps that skipped both layers were trained through
