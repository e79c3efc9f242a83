"""Tiny random models of each supported encoder family, saved as a pretrained model directory would be."""

from __future__ import annotations

from pathlib import Path

import torch
from transformers import AutoConfig, AutoModel, Wav2Vec2FeatureExtractor

from conftest import TINY_ENCODER

LAYER_NORM = {"feat_extract_norm": "layer", "do_stable_layer_norm": True}

# name -> (model_type, config keys on top of TINY_ENCODER, preprocessor_config.json or None); the
# preprocessors follow the real checkpoints' (mHuBERT-147 and XLS-R normalise, WavLM-base-plus does not)
FAMILIES = {
    "hubert": ("hubert", {}, {"do_normalize": True}),  # group norm, like mHuBERT-147
    "wav2vec2": ("wav2vec2", {}, None),  # group norm, like wav2vec2-base; no preprocessor file
    "xls-r": ("wav2vec2", {**LAYER_NORM, "conv_bias": True}, {"do_normalize": True, "return_attention_mask": True}),
    "wavlm": ("wavlm", {}, {"do_normalize": False}),  # group norm, like WavLM-base-plus
    "wavlm-large": ("wavlm", LAYER_NORM, {"do_normalize": True, "return_attention_mask": True}),
    # data2vec-audio's positional embedding is a stack of convolutions (5 of width 19 in the real ones)
    "data2vec-audio": ("data2vec-audio", {"num_conv_pos_embeddings": 2, "conv_pos_kernel_size": 5},
                       {"do_normalize": True, "return_attention_mask": True}),
}
PADDED = {"xls-r", "wavlm-large"}  # the families whose tiny models take padded batches


def family_model(name: str, seed: int = 0, **config):
    model_type, extra, _ = FAMILIES[name]
    torch.manual_seed(seed)
    return AutoModel.from_config(AutoConfig.for_model(model_type, **{**TINY_ENCODER, **extra, **config}))


def save_family(path: Path, name: str, seed: int = 0, **config) -> Path:
    """A model directory as `hf download` leaves one: config.json, model.safetensors, preprocessor_config.json."""
    family_model(name, seed, **config).save_pretrained(path)
    preprocessor = FAMILIES[name][2]
    if preprocessor is not None:
        Wav2Vec2FeatureExtractor(**preprocessor).save_pretrained(path)
    return path
