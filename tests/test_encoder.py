import pytest
import torch

from conftest import TINY_ENCODER
from cltm.model.encoder import build_encoder, load_encoder, materialise_encoder


def _same(a, b, ignore=()):
    sa, sb = a.state_dict(), b.state_dict()
    keys = set(sa) - set(ignore)
    return keys == set(sb) - set(ignore) and all(torch.equal(sa[k], sb[k]) for k in keys)


def test_random_encoder_is_seeded_and_round_trips(tmp_path):
    settings = {"source": "random", "config": TINY_ENCODER, "overrides": {"layerdrop": 0.0}, "init_seed": 4}
    summary = materialise_encoder(settings, tmp_path / "enc")
    assert summary["hidden_size"] == 32 and summary["parameters"] > 10_000
    assert (tmp_path / "enc" / "model.safetensors").is_file()
    assert (tmp_path / "enc" / "preprocessor_config.json").is_file()  # the defaults, written out
    assert summary["inputs"]["do_normalize"] is False and summary["inputs"]["read_from"] is None
    loaded = load_encoder(tmp_path / "enc")
    assert _same(loaded, build_encoder("random", config=TINY_ENCODER, overrides={"layerdrop": 0.0}, init_seed=4))
    assert not _same(loaded, build_encoder("random", config=TINY_ENCODER, init_seed=5))
    assert loaded.config.layerdrop == 0.0


def test_local_directory_source_with_overrides(tmp_path):
    # a "pretrained" model saved with save_pretrained, then used as encoder.source
    build_encoder("random", config=TINY_ENCODER, init_seed=1).save_pretrained(tmp_path / "pretrained")
    settings = {"source": str(tmp_path / "pretrained"), "overrides": {"mask_time_prob": 0.0}}
    materialise_encoder(settings, tmp_path / "enc")
    loaded = load_encoder(tmp_path / "enc")
    assert loaded.config.mask_time_prob == 0.0
    assert "masked_spec_embed" not in loaded.state_dict()  # no time masking, so no mask embedding
    assert _same(loaded, build_encoder("random", config=TINY_ENCODER, init_seed=1), ignore={"masked_spec_embed"})
    x = torch.randn(1, 8000)
    with torch.inference_mode():
        assert loaded.eval()(x).last_hidden_state.shape == (1, 24, 32)


def test_preloaded_encoder_is_handed_out_once_and_reloaded_when_rebuilt(tmp_path):
    from cltm.model import encoder as enc_mod

    settings = {"source": "random", "config": TINY_ENCODER, "init_seed": 2}
    materialise_encoder(settings, tmp_path / "enc")
    enc_mod.preload_encoder(tmp_path / "enc")
    first = load_encoder(tmp_path / "enc")
    assert first is not None and not enc_mod._PRELOADED  # the child owns the preloaded copy
    assert _same(first, load_encoder(tmp_path / "enc"))  # a second call loads the same weights afresh
    enc_mod.preload_encoder(tmp_path / "enc")
    materialise_encoder({**settings, "init_seed": 3}, tmp_path / "enc")  # rebuilt: new files
    rebuilt = load_encoder(tmp_path / "enc")
    assert _same(rebuilt, build_encoder("random", config=TINY_ENCODER, init_seed=3))
    assert not _same(rebuilt, first)


OFFLINE_SCRIPT = r"""
import json, sys
from cltm.model.encoder import EncoderError, build_encoder
out = {}
out["local"] = build_encoder(sys.argv[1], overrides={"mask_time_prob": 0.0}).config.hidden_size
cached = build_encoder("test-org/tiny-hubert")
out["hub_cache"] = cached.config.num_hidden_layers
out["normalise"] = cached.speech_inputs.do_normalize
try:
    build_encoder("utter-project/mHuBERT-147")
except EncoderError as err:
    out["not_cached"] = str(err)
try:
    build_encoder("test-org/no-preprocessor")
except EncoderError as err:
    out["no_preprocessor"] = str(err)
print(json.dumps(out))
"""


def test_offline_from_a_local_directory_and_from_a_prefetched_hub_cache(tmp_path):
    """HF_HUB_OFFLINE=1 (read by huggingface_hub at import, hence a fresh process): a local directory
    saved with save_pretrained, and a hub id whose files sit in the hub cache (the layout `hf download`
    leaves: models--org--name/refs/main + snapshots/<commit>/)."""
    import json
    import os
    import subprocess
    import sys

    local = tmp_path / "mHuBERT-147"
    build_encoder("random", config=TINY_ENCODER, init_seed=2).save_pretrained(local)
    assert (local / "model.safetensors").is_file() and not (local / "pytorch_model.bin").exists()
    from transformers import Wav2Vec2FeatureExtractor

    Wav2Vec2FeatureExtractor(do_normalize=True).save_pretrained(local)  # mHuBERT-147's own says do_normalize: true
    hf_home = tmp_path / "hf_home"
    commit = "0123456789abcdef0123456789abcdef01234567"
    for name, files in (("tiny-hubert", ("config.json", "model.safetensors", "preprocessor_config.json")),
                        ("no-preprocessor", ("config.json", "model.safetensors"))):
        repo = hf_home / "hub" / f"models--test-org--{name}"
        snapshot = repo / "snapshots" / commit
        snapshot.mkdir(parents=True)
        for file in files:
            (snapshot / file).write_bytes((local / file).read_bytes())
        (repo / "refs").mkdir()
        (repo / "refs" / "main").write_text(commit)
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HOME": str(hf_home), "PYTHONPATH": os.pathsep.join(sys.path)}
    env.pop("HF_HUB_CACHE", None)
    proc = subprocess.run([sys.executable, "-c", OFFLINE_SCRIPT, str(local)], env=env, capture_output=True,
                          text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["local"] == 32 and out["hub_cache"] == 4 and out["normalise"] is True
    assert "HF_HUB_OFFLINE is set" in out["not_cached"] and "hf download utter-project/mHuBERT-147" in out["not_cached"]
    assert "preprocessor_config.json is not in the local hub cache" in out["no_preprocessor"]


def test_source_kinds_and_bad_directories(tmp_path):
    from cltm.config import encoder_source_kind
    from cltm.model.encoder import EncoderError

    assert encoder_source_kind("utter-project/mHuBERT-147") == ("hub", "utter-project/mHuBERT-147")
    assert encoder_source_kind(str(tmp_path / "nowhere"))[0] == "missing"
    assert encoder_source_kind(str(tmp_path))[0] == "local"
    with pytest.raises(EncoderError, match="no such directory"):
        build_encoder(str(tmp_path / "nowhere"))
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(EncoderError, match="cannot load a speech encoder from this directory.*names no model_type"):
        build_encoder(str(tmp_path))




def test_an_unsupported_model_family_is_refused_by_the_encoder_job(tmp_path):
    """A model_type outside the supported families (here UniSpeech-SAT) stops before any weight is read,
    naming the file and the families that are supported."""
    from transformers import UniSpeechSatConfig

    from cltm.model.encoder import EncoderError

    UniSpeechSatConfig(**TINY_ENCODER).save_pretrained(tmp_path / "m")
    with pytest.raises(EncoderError) as err:
        materialise_encoder({"source": str(tmp_path / "m"), "overrides": None}, tmp_path / "enc")
    message = str(err.value)
    assert str(tmp_path / "m" / "config.json") in message and "model_type 'unispeech-sat'" in message
    for family in ("'hubert' (HubertModel)", "'wav2vec2' (Wav2Vec2Model)", "'wavlm' (WavLMModel)",
                   "'data2vec-audio' (Data2VecAudioModel)"):
        assert family in message
    assert not (tmp_path / "enc" / "model.safetensors").exists()


def _saved_hubert(path, **config):
    build_encoder("random", config={**TINY_ENCODER, **config}, init_seed=1).save_pretrained(path)
    return path


def test_hubert_checkpoint_with_missing_or_unexpected_weights_is_refused(tmp_path):
    from safetensors.torch import load_file, save_file

    from cltm.model.encoder import EncoderError

    src = _saved_hubert(tmp_path / "m")
    weights = load_file(src / "model.safetensors")
    # a file that lacks the positional convolution and carries a weight the model has no place for
    broken = {k: v for k, v in weights.items() if not k.startswith("encoder.pos_conv_embed")}
    broken["encoder.layers.0.attention.extra.weight"] = torch.zeros(2)
    save_file(broken, src / "model.safetensors", metadata={"format": "pt"})
    with pytest.raises(EncoderError) as err:
        materialise_encoder({"source": str(src), "overrides": None}, tmp_path / "enc")
    message = str(err.value)
    assert str(src / "model.safetensors") in message
    assert "missing" in message and "encoder.pos_conv_embed.conv.bias" in message
    assert "no place in the model" in message and "encoder.layers.0.attention.extra.weight" in message
    # the job's own reload of results/encoder/ is checked the same way
    (tmp_path / "enc").mkdir()
    _saved_hubert(tmp_path / "enc")
    save_file(broken, tmp_path / "enc" / "model.safetensors", metadata={"format": "pt"})
    with pytest.raises(EncoderError, match="encoder.pos_conv_embed"):
        load_encoder(tmp_path / "enc")


def test_overrides_that_change_the_layers_are_refused(tmp_path):
    from cltm.model.encoder import EncoderError

    src = _saved_hubert(tmp_path / "m")
    with pytest.raises(EncoderError, match=r"no place in the model \(encoder\.layers\.3\.") as err:
        build_encoder(str(src), overrides={"num_hidden_layers": 3})
    assert "num_hidden_layers" in str(err.value)  # the overrides are named
    with pytest.raises(EncoderError, match=r"other shapes than the model's \(encoder\.layers\.0\.feed_forward"):
        build_encoder(str(src), overrides={"intermediate_size": 128})


def test_a_task_head_checkpoint_loads_its_encoder_and_drops_the_head(tmp_path):
    """A HuBERT fine-tuned for CTC (hubert.* + lm_head.*) is a complete HuBERT encoder: accepted."""
    from transformers import HubertConfig, HubertForCTC

    torch.manual_seed(0)
    ctc = HubertForCTC(HubertConfig(**TINY_ENCODER, vocab_size=12))
    ctc.save_pretrained(tmp_path / "ctc")
    loaded = build_encoder(str(tmp_path / "ctc"))
    assert _same(loaded, ctc.hubert)


def test_the_encoder_script_reports_a_refused_family_as_an_error_line(tmp_path, capsys):
    """What workflow/scripts/encoder.py does: materialise_encoder under run_script, which prints
    'ERROR: <message>' and exits 1 (no traceback, no NaN training later)."""
    from transformers import UniSpeechSatConfig

    from cltm.io import run_script

    UniSpeechSatConfig(**TINY_ENCODER).save_pretrained(tmp_path / "other")
    lines = []
    with pytest.raises(SystemExit) as exit_:
        run_script(lambda: materialise_encoder({"source": str(tmp_path / "other"), "overrides": None},
                                               tmp_path / "enc"), lines.append)
    assert exit_.value.code == 1
    assert len(lines) == 1 and lines[0].startswith("ERROR: encoder.source ") and "model_type 'unispeech-sat'" in lines[0]
