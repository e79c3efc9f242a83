"""Each supported encoder family: loaded with its own class, fed as its preprocessor says, pooled by layer
index under LayerDrop, batched with padding only where padding leaves a clip's output unchanged."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from families import FAMILIES, PADDED, family_model, save_family
from cltm.model.encoder import EncoderError, SpeechInputs, build_encoder, load_encoder, materialise_encoder
from cltm.model.heads import Classifier
from cltm.train.evaluate import embed_clips, predict_proba
from cltm.train.loop import make_batch

CLASSES = {"hubert": "HubertModel", "wav2vec2": "Wav2Vec2Model", "wavlm": "WavLMModel",
           "data2vec-audio": "Data2VecAudioModel"}


def _same(a, b):
    sa, sb = a.state_dict(), b.state_dict()
    return set(sa) == set(sb) and all(torch.equal(sa[k], sb[k]) for k in sa)


@pytest.mark.parametrize("family", FAMILIES)
def test_each_family_round_trips_through_the_encoder_job(tmp_path, family):
    """What workflow/scripts/encoder.py does (materialise_encoder) and then every run (load_encoder)."""
    from cltm.io import run_script

    model_type, _, preprocessor = FAMILIES[family]
    src = save_family(tmp_path / family, family)
    summaries = []
    run_script(lambda: summaries.append(materialise_encoder({"source": str(src), "overrides": {"layerdrop": 0.0}},
                                                            tmp_path / "enc", sample_rate=16000)), print)
    summary = summaries[0]
    assert summary["model_type"] == model_type and summary["model_class"] == CLASSES[model_type]
    assert (tmp_path / "enc" / "preprocessor_config.json").is_file()
    normalise = bool(preprocessor and preprocessor["do_normalize"])
    assert summary["inputs"]["do_normalize"] is normalise and summary["inputs"]["padded_batches"] is (family in PADDED)
    assert summary["inputs"]["read_from"] == (str(src / "preprocessor_config.json") if preprocessor else None)
    loaded = load_encoder(tmp_path / "enc")
    assert type(loaded).__name__ == CLASSES[model_type] and loaded.config.layerdrop == 0.0
    assert _same(loaded, family_model(family, layerdrop=0.0))
    inputs = loaded.speech_inputs
    assert (inputs.do_normalize, inputs.padded_batches) == (normalise, family in PADDED)
    with torch.inference_mode():
        assert loaded.eval()(torch.randn(1, 8000)).last_hidden_state.shape == (1, 24, 32)


def test_a_random_encoder_of_another_family_and_refused_settings(tmp_path):
    from transformers import Wav2Vec2Config

    wavlm = build_encoder("random", config={**FAMILIES["wavlm"][1], "model_type": "wavlm", "hidden_size": 32,
                                            "num_hidden_layers": 2, "num_attention_heads": 2,
                                            "intermediate_size": 64, "conv_dim": [16] * 7})
    assert type(wavlm).__name__ == "WavLMModel" and wavlm.speech_inputs == SpeechInputs()
    src = save_family(tmp_path / "xls-r", "xls-r")
    with pytest.raises(EncoderError, match=r"encoder.overrides layer_drop is not a setting of Wav2Vec2Config"):
        build_encoder(str(src), overrides={"layer_drop": 0.0})
    with pytest.raises(EncoderError, match="add_adapter"):
        build_encoder(str(src), overrides={"add_adapter": True})
    with pytest.raises(EncoderError, match="expects 8000 Hz audio .* data.sample_rate is 16000"):
        from transformers import Wav2Vec2FeatureExtractor

        Wav2Vec2FeatureExtractor(sampling_rate=8000).save_pretrained(src)
        materialise_encoder({"source": str(src), "overrides": None}, tmp_path / "enc", sample_rate=16000)
    assert Wav2Vec2Config().feat_extract_norm == "group"  # the class default: no padding unless a model says so


@pytest.mark.parametrize("family", FAMILIES)
def test_layer_states_for_each_family_in_eval_and_under_layerdrop(family):
    """states[i] is layer i's output (the model's own hidden_states in eval mode); with LayerDrop 1.0 the
    skipped layers pass their input on, so the pooled layers are always there."""
    encoder = family_model(family, num_hidden_layers=3, hidden_dropout=0.0, attention_dropout=0.0,
                           activation_dropout=0.0, feat_proj_dropout=0.0, mask_time_prob=0.0)
    model = Classifier(encoder, 2, "last4")
    x = torch.randn(1, 4000)
    with torch.no_grad():
        model.eval()
        last, states = model.layer_states(x)
        ref = encoder(x, output_hidden_states=True)
        assert len(states) == 4 and torch.equal(states[-1], last) and torch.equal(last, ref.last_hidden_state)
        for mine, theirs in zip(states[:-1], ref.hidden_states[:-1]):
            torch.testing.assert_close(mine, theirs)
        model.train()
        encoder.config.layerdrop = 1.0
        last, states = model.layer_states(x)
    assert len(states) == 4
    first_run = 1 if FAMILIES[family][0] == "wavlm" else 0  # WavLM never drops its first layer
    stable = getattr(encoder.config, "do_stable_layer_norm", False)  # whose last state is layer-normalised after the last layer
    assert all(torch.equal(s, states[first_run]) for s in states[first_run:len(states) - stable])


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("pooling", ["last", "last4"])
def test_a_clip_embeds_the_same_alone_and_in_a_padded_batch(family, pooling):
    """Padded batches only where padding is exact: there the masked mean equals the clip alone (1e-5)."""
    model = Classifier(family_model(family), 3, pooling)
    assert model.inputs.padded_batches is (family in PADDED)
    rng = np.random.default_rng(1)
    waves = [rng.standard_normal(n).astype(np.float32) * 0.1 for n in (2400, 5200, 3300, 5200, 4000)]
    batched = embed_clips(model, waves, torch.device("cpu"))
    with torch.inference_mode():
        alone = torch.cat([model.embed(torch.from_numpy(w)[None]) for w in waves])
    torch.testing.assert_close(batched, alone, atol=1e-5, rtol=0)
    proba = predict_proba(model, waves, torch.device("cpu"))
    with torch.inference_mode():
        expected = torch.softmax(model.head(alone), dim=-1).numpy()
    np.testing.assert_allclose(proba, expected, atol=1e-5)


def test_padding_would_change_the_outputs_where_it_is_not_used():
    """Why group-normalised encoders and data2vec-audio are never padded: the padded clip's output moves."""
    for family in ("hubert", "wavlm", "data2vec-audio"):
        model = Classifier(family_model(family), 2, "last").eval()
        clip = torch.randn(1, 3000)
        padded = torch.cat([clip, torch.zeros(1, 2000)], dim=1)
        mask = torch.zeros(1, 5000, dtype=torch.long)
        mask[0, :3000] = 1
        with torch.inference_mode():
            moved = (model.embed(padded, mask) - model.embed(clip)).abs().max()
        assert moved > 1e-3, family


def test_normalisation_is_transformers_own():
    from transformers import Wav2Vec2FeatureExtractor

    rng = np.random.default_rng(0)
    waves = [(rng.standard_normal(n) * 0.2 + 0.05).astype(np.float32) for n in (1600, 2500)]
    inputs = SpeechInputs(do_normalize=True, padded_batches=True)
    values, mask = inputs.pad(waves)
    ref = Wav2Vec2FeatureExtractor(do_normalize=True, return_attention_mask=True)(
        waves, sampling_rate=16000, padding=True, return_tensors="pt")
    assert torch.equal(values, ref["input_values"]) and torch.equal(mask, ref["attention_mask"].long())
    same, none = SpeechInputs().pad([waves[0]])
    assert torch.equal(same[0], torch.from_numpy(waves[0])) and none is None  # no preprocessor: as it is


def test_training_batches_pad_or_crop_to_one_length():
    waves = [np.linspace(-1, 1, n, dtype=np.float32) + 0.5 for n in (30000, 12000, 9000)]
    padded = SpeechInputs(do_normalize=True, padded_batches=True)
    x, mask = make_batch(waves, 16000, torch.Generator().manual_seed(0), padded)
    assert x.shape == (3, 16000) and mask.sum(dim=1).tolist() == [16000, 12000, 9000]
    assert torch.all(x[2, 9000:] == 0)
    for row, n in zip(x, (16000, 12000, 9000)):  # each crop normalised on its own samples
        assert abs(float(row[:n].mean())) < 1e-4 and abs(float(row[:n].std(correction=0)) - 1) < 1e-3
    with pytest.raises(ValueError, match="cut to the shortest"):  # whole clips are never cut (issue 20)
        make_batch(waves, None, torch.Generator().manual_seed(0), SpeechInputs(do_normalize=True))
    x, mask = make_batch(waves, 9000, torch.Generator().manual_seed(0), SpeechInputs(do_normalize=True))
    assert x.shape == (3, 9000) and mask is None


@pytest.mark.parametrize("family", FAMILIES)
def test_the_feature_encoder_freezes_through_the_public_call(family):
    from cltm.model.encoder import freeze_feature_encoder

    encoder = family_model(family)
    freeze_feature_encoder(encoder)
    assert not any(p.requires_grad for p in encoder.feature_extractor.parameters())
    assert all(p.requires_grad for p in encoder.encoder.parameters())
