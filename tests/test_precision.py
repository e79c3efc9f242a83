"""Precision (fp32 | tf32 | bf16), the loss read back every k steps, and batched evaluation of equal-length
clips, with the shipped tiny HuBERT (models/tiny-hubert-synth) on real (synthetic-speech) audio."""

import copy
import math

import numpy as np
import pytest
import torch

from conftest import ROOT
from cltm.data.audio import AudioStore
from cltm.data.prepare import prepare_language
from cltm.config import ConfigError, digest, load_schema, run_settings, validate_config
from cltm.model.precision import PRECISIONS
from cltm.data.corpora import read_common_voice
from cltm.model.encoder import load_encoder
from cltm.train.rng import RunGenerators
from cltm.data.plan import select_language
from cltm.train.finetune import finetune_run
from cltm.model.heads import Classifier
from cltm.train.evaluate import embed_clips, eval_batches, predict_proba
from cltm.train.loop import fine_tune

TINY = ROOT / "models" / "tiny-hubert-synth"
EASY = {"epochs": 4, "batch_size": 4, "crop_seconds": 1.0, "lr": 2e-3, "schedule": "constant",
        "warmup_ratio": 0.0, "weight_decay": 0.0, "grad_clip": 1.0}
CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def gender_data(demo_release, tmp_path_factory, default_config):
    """Twelve training clips (two classes) and the test clips of English, from the synthetic demo corpus."""
    cfg = copy.deepcopy(default_config)
    cfg["data"]["test"].update(speakers_per_gender=2, min_clips_per_speaker=4, max_clips_per_speaker=4)
    cfg["tasks"]["gender"].update(n_per_class=3, max_clips_per_speaker=3, training=EASY)
    cfg["tasks"]["speaker"].update(n_utterances=8, max_utterances_per_speaker=4, max_positives_per_speaker=6)
    m = read_common_voice(demo_release, "en")
    sel = select_language(cfg, m, "en")
    wanted = {u for s in sel.values() for u in s["test"] + s["single"] + s["extra"]}
    out = tmp_path_factory.mktemp("precision")
    prepare_language(m, wanted, out / "en.npy", out / "en.tsv", log=lambda s: None)
    store = AudioStore(out / "en.npy", out / "en.tsv")
    g = sel["gender"]
    train = g["single"] + g["extra"]
    labels = np.array([int(store.meta(u)["gender"] == "female") for u in train])
    return cfg, store, sel, [store[u] for u in train], labels, [store[u] for u in g["test"]]


def _train(data, cfg, seed=3, **kw):
    _, _, _, waves, labels, _ = data
    with RunGenerators(seed).active():
        model = Classifier(load_encoder(TINY), 2)
        loss = fine_tune(model, waves, labels, cfg, seed=seed, device=CPU, log=lambda m: None, **kw)
    return model, loss


def test_the_loss_read_back_every_k_steps_gives_the_summary_of_a_read_every_step(gender_data):
    """fp32 (no key, or the key) with the loss read every step (the code path before batching the reads)
    and every k steps, k dividing the steps or not: the same summary and the same model, bit for bit."""
    m1, every_step = _train(gender_data, EASY, sync_every=1)
    m5, every_5 = _train(gender_data, {**EASY, "precision": "fp32"}, sync_every=5)
    _, default = _train(gender_data, EASY)
    assert every_step == every_5 == default
    assert every_step["steps"] == 12 and len(every_step["epoch_means"]) == 4
    assert all(torch.equal(a, b) for a, b in zip(m1.state_dict().values(), m5.state_dict().values()))


def test_a_non_finite_loss_still_names_its_step(gender_data):
    """Read back after all 12 steps, the first non-finite loss is still reported with its own step."""
    broken = list(gender_data)
    broken[3] = [w * np.float32("nan") for w in gender_data[3]]
    with pytest.raises(FloatingPointError, match=r"loss became nan at step 1/12"):
        _train(broken, EASY, sync_every=100)


def test_bf16_trains_on_an_easy_problem(gender_data):
    """Autocast to bfloat16 on the CPU: the loss stays finite and falls; the result differs from fp32's (the
    setting is used) and evaluation returns float32 probabilities."""
    model, loss = _train(gender_data, {**EASY, "precision": "bf16"})
    assert torch.backends.mkldnn.enabled  # bf16 autocast on CPU needs oneDNN (fp32 training turns it off)
    _, fp32 = _train(gender_data, EASY)
    assert all(math.isfinite(v) for v in [loss["first"], loss["last"], *loss["epoch_means"]])
    assert loss["epoch_means"][-1] < loss["epoch_means"][0]
    assert loss != fp32
    proba = predict_proba(model, gender_data[5], CPU, "bf16")
    assert proba.dtype == np.float32 and np.allclose(proba.sum(axis=1), 1, atol=1e-5)


def test_tf32_on_cpu_is_fp32(gender_data):
    assert _train(gender_data, {**EASY, "precision": "tf32"})[1] == _train(gender_data, EASY)[1]


def test_equal_length_clips_are_evaluated_together_each_as_alone(gender_data):
    """A group-normalised encoder (no attention mask): in tf32 / bf16, clips of exactly equal length share a
    batch, no padding, each clip's embedding and probabilities the ones it gets alone (tf32 on the CPU
    computes in fp32, so the comparison is exact math); in fp32 every clip still goes alone, as before."""
    model, _ = _train(gender_data, EASY)
    model.eval()
    test = gender_data[5]
    rng = np.random.default_rng(0)
    waves = [w[:16000] for w in test[:5]] + [w[:12000] for w in test[5:8]] + [test[8][:9000]]
    waves = [waves[i] for i in rng.permutation(len(waves))]
    assert not model.inputs.padded_batches
    batches = [idx for idx, _, mask in eval_batches(waves, model.inputs, equal_lengths=True)]
    assert sorted(len(b) for b in batches) == [1, 3, 5]
    assert all(len(idx) == 1 for idx, _, _ in eval_batches(waves, model.inputs))
    with torch.inference_mode():
        alone = torch.cat([model.embed(torch.from_numpy(model.inputs.prepare(w))[None]) for w in waves])
        proba_alone = torch.softmax(torch.cat([model(torch.from_numpy(model.inputs.prepare(w))[None])
                                               for w in waves]), -1).numpy()
    torch.testing.assert_close(embed_clips(model, waves, CPU, "tf32"), alone, rtol=0, atol=1e-5)
    np.testing.assert_allclose(predict_proba(model, waves, CPU, "tf32"), proba_alone, rtol=0, atol=1e-5)
    assert np.array_equal(predict_proba(model, waves, CPU), proba_alone)  # fp32: clip by clip, bit for bit


def test_a_run_records_its_precision(gender_data):
    cfg, store, sel, *_ = gender_data
    task = copy.deepcopy(cfg["tasks"]["gender"])
    task["training"] = {**EASY, "epochs": 1, "precision": "bf16"}
    record, scores = finetune_run("gender", task, target="en", condition="single", seed=1, encoder=load_encoder(TINY),
                             stores={"en": store}, selections={"en": sel["gender"]}, device=CPU, log=lambda m: None)
    assert record["precision"] == "bf16" and math.isfinite(record["value"]) and len(scores) > 0
    task["training"] = {**EASY, "epochs": 1}
    assert finetune_run("gender", task, target="en", condition="single", seed=1, encoder=load_encoder(TINY),
                   stores={"en": store}, selections={"en": sel["gender"]}, device=CPU,
                   log=lambda m: None)[0]["precision"] == "fp32"


def test_precision_is_a_training_key_without_a_written_default(default_config):
    """The schema lists the precisions; a wrong one is named by its key; leaving it out keeps the
    settings digest of every shipped config (no default is filled in)."""
    enum = load_schema()["$defs"]["training"]["properties"]["precision"]["enum"]
    assert tuple(enum) == PRECISIONS
    cfg = copy.deepcopy(default_config)
    cfg["tasks"]["speaker"]["training"]["precision"] = "fp16"
    with pytest.raises(ConfigError, match=r"tasks\.speaker\.training\.precision"):
        validate_config(cfg)
    cfg = copy.deepcopy(default_config)
    before = {t: digest(run_settings(cfg, t)) for t in ("gender", "speaker")}
    validate_config(cfg)
    from snakemake.utils import validate  # a schema default would be written in by Snakemake's validation

    validate(cfg, str(ROOT / "workflow" / "schemas" / "config.schema.yaml"), set_default=True)
    assert "precision" not in cfg["tasks"]["gender"]["training"]
    assert {t: digest(run_settings(cfg, t)) for t in ("gender", "speaker")} == before
    cfg["tasks"]["gender"]["training"]["precision"] = "bf16"
    validate_config(cfg)
    assert digest(run_settings(cfg, "gender")) != before["gender"]


def test_the_runs_table_has_the_precision_of_each_run(tmp_path):
    """load_runs: a precision column; run JSONs written before the key are fp32."""
    import json

    from cltm.analysis.table import load_runs
    from test_errors import RUN

    (tmp_path / "old.json").write_text(json.dumps(RUN))
    (tmp_path / "new.json").write_text(json.dumps({**RUN, "seed": 2, "precision": "bf16"}))
    runs = load_runs([tmp_path / "old.json", tmp_path / "new.json"])
    assert runs["precision"].tolist() == ["fp32", "bf16"]


def test_tf32_on_cuda_covers_the_whole_training_and_is_restored():
    """The TF32 switches (process-global) are set for the time of a training or evaluation, forward and
    backward, and put back afterwards; nothing changes for fp32 / bf16 or on the CPU. (Flags only: no GPU.)"""
    from cltm.model.precision import matmul_precision

    before = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = False
    try:
        with matmul_precision(torch.device("cuda"), "tf32"):
            assert torch.backends.cuda.matmul.allow_tf32 and torch.backends.cudnn.allow_tf32
        assert torch.backends.cuda.matmul.allow_tf32 is False
        for device, precision in (("cuda", "fp32"), ("cuda", "bf16"), ("cpu", "tf32")):
            with matmul_precision(torch.device(device), precision):
                assert torch.backends.cuda.matmul.allow_tf32 is False
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = before
