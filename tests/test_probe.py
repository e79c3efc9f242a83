"""Probe mode: frozen-encoder features (cltm.train.features) and probe runs (cltm.train.probe) on real and synthetic data."""

from __future__ import annotations

import copy

import numpy as np
import pandas as pd
import pytest
import torch

from conftest import ROOT, TINY_ENCODER
from cltm.data.audio import AudioStore
from cltm.data.prepare import prepare_language
from cltm.config import ConfigError, run_settings, validate_config
from cltm.data.corpora import read_common_voice
from cltm.demo.features import synthetic_language
from cltm.model.encoder import build_encoder, load_encoder
from cltm.train.features import FeatureStore, encode_clips, extract_features, feature_plan
from cltm.defaults import PROBE
from cltm.train.probe import probe_settings, run_probe
from cltm.data.plan import select_language
from cltm.tasks import configured_tasks, make_task
from cltm.train.finetune import finetune_run

QUIET = dict(log=lambda s: None)
FAST = {"epochs": 1, "batch_size": 4, "crop_seconds": 0.5, "lr": 1e-3, "schedule": "constant",
        "warmup_ratio": 0.0, "weight_decay": 0.0, "grad_clip": 1.0}


@pytest.fixture(autouse=True)
def one_thread():
    """Bit-for-bit equality holds for one thread count; one thread is also the fastest for small heads."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def prepared(demo_release, tmp_path_factory, default_config):
    """Real synthetic speech of en and tr, the shipped tiny encoder, one feature store per language."""
    cfg = copy.deepcopy(default_config)
    cfg["data"]["test"].update(speakers_per_gender=2, min_clips_per_speaker=4, max_clips_per_speaker=4)
    cfg["tasks"]["gender"].update(n_per_class=3, max_clips_per_speaker=3, training=FAST, mode="probe")
    cfg["tasks"]["speaker"].update(n_utterances=8, max_utterances_per_speaker=4, max_positives_per_speaker=6,
                                   training=FAST, mode="probe")
    out = tmp_path_factory.mktemp("probe_prepared")
    encoder = load_encoder(ROOT / "models" / "tiny-hubert-synth")
    tasks = configured_tasks(cfg)
    audio, features, selections = {}, {}, {"gender": {}, "speaker": {}}
    for lang in ("en", "tr"):
        m = read_common_voice(demo_release, lang)
        sel = select_language(cfg, m, lang)
        wanted = {u for s in sel.values() for u in s["test"] + s["single"] + s["extra"]}
        prepare_language(m, wanted, out / f"{lang}.npy", out / f"{lang}.tsv", **QUIET)
        audio[lang] = AudioStore(out / f"{lang}.npy", out / f"{lang}.tsv")
        plan = feature_plan(tasks, sel)
        features[lang] = extract_features(encoder, audio[lang], plan["utt_ids"], out / f"{lang}.features.npy",
                                          out / f"{lang}.features.tsv", stats=plan["stats"], trim=plan["trim"],
                                          **QUIET)
        for task in sel:
            selections[task][lang] = sel[task]
    return cfg, audio, features, selections, encoder


def _probe(prepared, task, condition="single", seed=1, target="en"):
    cfg, _, features, selections, _ = prepared
    return run_probe(task, cfg["tasks"][task], target=target, condition=condition, seed=seed, features=features,
                     selections=selections[task], **QUIET)


def _without_timing(record: dict) -> dict:
    return {k: v for k, v in record.items() if k != "timing"}


# ---------------------------------------------------------------------------------------------- features


@pytest.mark.parametrize("norm", ["layer", "group"])
def test_features_of_a_clip_in_a_batch_equal_the_clip_alone(norm):
    # layer-normalised feature encoder: clips of different lengths padded into one batch (with a mask);
    # group-normalised: one clip at a time whatever the batch size
    encoder = build_encoder("random", config={**TINY_ENCODER, "feat_extract_norm": norm},
                            overrides={"layerdrop": 0.0}, init_seed=0)
    rng = np.random.default_rng(0)
    waves = [0.1 * rng.standard_normal(n).astype(np.float32) for n in (8000, 5600, 12000, 4000, 9100)]
    batched = encode_clips(encoder, waves, stats=("mean", "std"), batch=4)
    alone = np.concatenate([encode_clips(encoder, [w], stats=("mean", "std")) for w in waves])
    assert batched.shape == (5, TINY_ENCODER["num_hidden_layers"] + 1, 2 * TINY_ENCODER["hidden_size"])
    np.testing.assert_allclose(batched, alone, rtol=1e-4, atol=1e-5)
    np.testing.assert_array_equal(batched.astype(np.float16), alone.astype(np.float16)) if norm == "group" else \
        np.testing.assert_allclose(batched.astype(np.float16), alone.astype(np.float16), rtol=2e-3, atol=1e-3)
    # the last layer's mean is what fine-tuning's 'last' pooling gives for the clip
    from cltm.model.heads import Classifier

    model = Classifier(encoder, 2, "last").eval()
    with torch.no_grad():
        pooled = model.embed(torch.from_numpy(waves[0])[None]).numpy()[0]
    np.testing.assert_allclose(alone[0, -1, :TINY_ENCODER["hidden_size"]], pooled, rtol=1e-4, atol=1e-5)


def test_feature_store_round_trip_holds_every_clip_and_the_trimmed_test_clips(prepared):
    cfg, audio, features, selections, encoder = prepared
    store = features["en"]
    sel = {t: selections[t]["en"] for t in selections}
    every = {u for s in sel.values() for u in s["test"] + s["single"] + s["extra"]}
    test = sel["speaker"]["test"]
    assert len(store) == len(every) + len(test) and store.stats == ("mean", "std")
    assert store.layers == encoder.config.num_hidden_layers + 1 and store.dim == encoder.config.hidden_size
    assert store.features.dtype == np.float16 and isinstance(store.features, np.memmap)
    u = test[0]
    again = encode_clips(encoder, [audio["en"][u]], stats=("mean", "std"))[0]
    f16 = dict(rtol=2e-3, atol=1e-4)  # float16's resolution (the store was written with another thread count)
    np.testing.assert_allclose(store[u], again.astype(np.float16), **f16)
    # the trimmed variant is the trimmed clip's features (speaker verification's test-time trimming)
    from cltm.data.audio import trim_silence

    trimmed = encode_clips(encoder, [trim_silence(audio["en"][u], cfg["tasks"]["speaker"]["trim_db"])],
                           stats=("mean", "std"))[0]
    np.testing.assert_allclose(store.rows([u], trim_db=20)[0], trimmed.astype(np.float16), **f16)
    assert not np.allclose(store.rows([u], trim_db=20)[0], store[u], **f16)
    rows = store.index.set_index(["utt_id", "trim_db"])
    assert rows.at[(u, "20"), "n_samples"] <= rows.at[(u, ""), "n_samples"]
    assert store.meta(u)["speaker"] == audio["en"].meta(u)["speaker"]
    with pytest.raises(KeyError, match="trimmed at 20 dB"):
        store.rows(sel["speaker"]["single"][:1], trim_db=20)
    # reopened from disk: the same; no temporary file left beside it
    reopened = FeatureStore(store.features.filename, str(store.features.filename).replace(".npy", ".tsv"))
    np.testing.assert_array_equal(reopened.rows(test), store.rows(test))
    assert not list(type(ROOT)(store.features.filename).parent.glob("*.part"))
    # blocks: float32, cached, mean only on request
    b = store.block(test[:3], stats=("mean",), layout="nlf")
    assert b.dtype == torch.float32 and b.shape == (3, store.layers, store.dim)
    assert store.block(test[:3], stats=("mean",), layout="nlf") is b
    # the probe's layout (the default): [layers, clips, features], the same values
    lnf = store.block(test[:3], stats=("mean",))
    assert lnf.is_contiguous() and torch.equal(lnf, b.transpose(0, 1))
    assert torch.equal(store.block(test[:3], stats=("mean",), layout="nfl"), b.transpose(1, 2))


def test_the_plan_of_a_gender_only_language_stores_means_untrimmed(prepared):
    cfg, _, _, selections, _ = prepared
    tasks = configured_tasks(cfg)
    plan = feature_plan({"gender": tasks["gender"]}, {"gender": selections["gender"]["en"]})
    assert plan["stats"] == ("mean",) and plan["trim"] == {}
    plan = feature_plan(tasks, {t: selections[t]["en"] for t in selections})
    assert plan["stats"] == ("mean", "std") and list(plan["trim"]) == [20.0]


# ---------------------------------------------------------------------------------------------- probe runs


def test_probe_runs_on_real_audio_have_the_fine_tuning_record_and_scores(prepared):
    cfg, audio, features, selections, encoder = prepared
    fine = {}
    for task in ("gender", "speaker"):
        fine[task] = finetune_run(task, cfg["tasks"][task], target="en", condition="donor-tr", seed=1,
                             encoder=copy.deepcopy(encoder), stores=audio, selections=selections[task],
                             device=torch.device("cpu"), **QUIET)
    for task in ("gender", "speaker"):
        record, scores = _probe(prepared, task, "donor-tr")
        ft_record, ft_scores = fine[task]
        assert list(record) == list(ft_record) + ["mode", "layer_weights"]
        assert record["mode"] == "probe" and record["metric"] == ft_record["metric"]
        assert record["sizes"] == ft_record["sizes"]  # same training set, test set and trials
        assert set(record["metrics"]) == set(ft_record["metrics"]) and set(record["loss"]) == set(ft_record["loss"])
        assert list(scores.columns) == list(ft_scores.columns) and len(scores) == len(ft_scores)
        w = record["layer_weights"]
        assert len(w) == features["en"].layers and abs(sum(w) - 1) < 1e-6 and min(w) > 0
        assert record["loss"]["last"] < record["loss"]["first"]


def test_probe_runs_are_bit_for_bit_reproducible_whatever_ran_before(prepared):
    for task in ("gender", "speaker"):
        a, sa = _probe(prepared, task, "dual", seed=3)
        _probe(prepared, task, "donor-tr", seed=5)  # another run in between
        torch.manual_seed(123)
        np.random.seed(7)  # the global generators are not the run's
        b, sb = _probe(prepared, task, "dual", seed=3)
        assert _without_timing(a) == _without_timing(b)
        pd.testing.assert_frame_equal(sa, sb, check_exact=True)
        c, _ = _probe(prepared, task, "dual", seed=4)
        assert c["loss"] != a["loss"]


def test_speaker_scoring_equals_the_trial_table_computation_and_its_cache(prepared):
    # SpeakerVerificationTask.score builds the trial columns once per trial list (cached): the same scores,
    # columns, dtypes and metrics as the DataFrame + map computation it replaced, on a hit as on a miss
    from cltm.tasks.metrics import verification_metrics

    cfg, _, _, selections, _ = prepared
    sel = selections["speaker"]["en"]
    plugin = configured_tasks(cfg)["speaker"]
    emb = torch.randn(len(sel["test"]), 16, generator=torch.Generator().manual_seed(0))
    ref = pd.DataFrame(sel["trials"], columns=["enroll", "test", "label"])
    pos = {u: i for i, u in enumerate(sel["test"])}
    e = torch.nn.functional.normalize(emb, dim=-1)
    a = e[torch.tensor(ref["enroll"].map(pos).to_numpy(np.int64))]
    b = e[torch.tensor(ref["test"].map(pos).to_numpy(np.int64))]
    ref["score"] = (a * b).sum(dim=-1).numpy().astype(float)
    ref = ref[["enroll", "test", "score", "label"]]
    for _ in range(2):
        metrics, scores = plugin.score(sel["test"], emb, sel)
        pd.testing.assert_frame_equal(scores, ref, check_exact=True)
        assert metrics == verification_metrics(ref["score"].to_numpy(), ref["label"].to_numpy())
    scores["score"] = 0.0  # a caller's change to its table never reaches the cache
    pd.testing.assert_frame_equal(plugin.score(sel["test"], emb, sel)[1], ref, check_exact=True)


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory):
    out = tmp_path_factory.mktemp("probe_synthetic")
    features, selections = {}, {"gender": {}, "speaker": {}}
    for lang in ("en", "tr", "eu"):
        features[lang], sel = synthetic_language(lang, out, n_per_class=10, n_utterances=40,
                                                 test_speakers_per_gender=4, seed=2)
        for task in sel:
            selections[task][lang] = sel[task]
    return features, selections


def test_probes_learn_separable_features_and_weight_the_informative_layers(synthetic, default_config):
    features, selections = synthetic
    for task, floor in (("gender", 0.9), ("speaker", 0.85)):
        for condition in ("single", "dual", "donor-eu"):
            record, _ = run_probe(task, default_config["tasks"][task], target="en", condition=condition, seed=1,
                                  features=features, selections=selections[task], **QUIET)
            assert record["value"] > floor, (task, condition, record["metrics"])
    record, _ = run_probe("gender", default_config["tasks"]["gender"], target="tr", condition="single", seed=1,
                          features=features, selections=selections["gender"], **QUIET)
    w = np.array(record["layer_weights"])
    assert w.argmax() == len(w) // 2  # the synthetic gender signal peaks in the middle layer


def test_probe_settings_and_mode_keys(default_config):
    cfg = copy.deepcopy(default_config)
    before = run_settings(cfg, "gender")
    assert make_task("gender", cfg["tasks"]["gender"]).mode == "finetune"
    assert probe_settings("classification", cfg["tasks"]["gender"]) == PROBE["classification"]
    validate_config(cfg)
    assert run_settings(cfg, "gender") == before  # no default is written into the config
    cfg["tasks"]["speaker"].update(mode="probe", probe={"embedding_dim": 32, "epochs": 3})
    validate_config(cfg)
    assert probe_settings("speaker_verification", cfg["tasks"]["speaker"])["embedding_dim"] == 32
    for change, message in (({"mode": "frozen"}, "tasks.gender.mode"),
                            ({"probe": {"epochs": 0}}, "tasks.gender.probe.epochs"),
                            ({"probe": {"embedding_dim": 8}}, "tasks.gender.probe"),
                            ({"probe": {"stats": ["max"]}}, "tasks.gender.probe.stats")):
        bad = copy.deepcopy(default_config)
        bad["tasks"]["gender"].update(change)
        with pytest.raises(ConfigError, match=message.replace(".", r"\.")):
            validate_config(bad)
