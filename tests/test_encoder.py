import torch

from conftest import TINY_ENCODER
from cltm.encoder import build_encoder, load_encoder, materialise_encoder


def _same(a, b, ignore=()):
    sa, sb = a.state_dict(), b.state_dict()
    keys = set(sa) - set(ignore)
    return keys == set(sb) - set(ignore) and all(torch.equal(sa[k], sb[k]) for k in keys)


def test_random_encoder_is_seeded_and_round_trips(tmp_path):
    settings = {"source": "random", "config": TINY_ENCODER, "overrides": {"layerdrop": 0.0}, "init_seed": 4}
    summary = materialise_encoder(settings, tmp_path / "enc")
    assert summary["hidden_size"] == 32 and summary["parameters"] > 10_000
    assert (tmp_path / "enc" / "model.safetensors").is_file()
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
    from cltm import encoder as enc_mod

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
