"""The speech encoder: transformers' HubertModel from a hub id, a local directory, or a config of sizes.

All three end as a local directory (`results/encoder/`) written once by the workflow, and every
fine-tuning run loads that directory with the same call, so runs never touch the network.

Only HuBERT checkpoints (config.json `model_type` "hubert", e.g. mHuBERT-147) are supported.
transformers would load a wav2vec2, WavLM or data2vec-audio directory into HubertModel with only a
warning, silently dropping weights or leaving some uninitialised; every load here is therefore
checked: another model type, or a checkpoint that leaves model weights missing, or has unused weights
inside the encoder, stops with an EncoderError naming the file and the keys.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
from transformers import HubertConfig, HubertModel
from transformers.utils import logging as hf_logging

from cltm.config import ConfigError, encoder_source_kind

hf_logging.disable_progress_bar()  # one "Loading weights" bar per run would bury the run logs


class EncoderError(ConfigError):
    """The configured encoder cannot be loaded; the message says where it was looked for and what to do."""


FETCH_HINT = ("fetch it once on a machine with internet (a login node): `hf download {source} --include config.json "
              "model.safetensors preprocessor_config.json --local-dir /path/to/{name}` and set encoder.source to "
              "that directory, or `hf download {source} --include config.json model.safetensors` to fill the hub "
              "cache (HF_HOME) that the compute nodes share")


def build_encoder(source: str, *, config: dict | None = None, overrides: dict | None = None,
                  init_seed: int = 0) -> HubertModel:
    """`source` 'random' builds HubertConfig(**config) with seeded random weights (a tiny stand-in for
    a pretrained model); anything else is a local directory or a hub id loaded with from_pretrained.

    Safetensors weights are required from the hub and preferred in a local directory (a directory with
    only pytorch_model.bin is loaded with torch's weights-only unpickler); remote code is never run.
    Under HF_HUB_OFFLINE=1 a hub id resolves from the local hub cache only.
    """
    overrides = dict(overrides or {})
    if source == "random":
        torch.manual_seed(init_seed)
        return HubertModel(HubertConfig(**{**(config or {}), **overrides}))
    kind, ref = encoder_source_kind(source)
    if kind == "missing":
        raise EncoderError(f"encoder.source {source}: no such directory")
    safetensors = kind == "hub" or any(Path(ref).glob("*.safetensors"))
    try:
        return _checked_load(ref, f"encoder.source {source}", overrides, use_safetensors=safetensors,
                             trust_remote_code=False, **overrides)
    except OSError as err:
        if kind == "local":
            raise EncoderError(f"encoder.source {ref}: cannot load a HuBERT model from this directory: {err}") from err
        offline = os.environ.get("HF_HUB_OFFLINE", "") not in ("", "0")
        name = source.rsplit("/", 1)[-1]
        raise EncoderError(
            f"encoder.source {source}: not found {'in the local hub cache (HF_HUB_OFFLINE is set)' if offline else 'on the hub or in its cache'}"
            f" ({' '.join(str(err).split())[:300]}), and no directory of that name exists in {Path.cwd()}; "
            + FETCH_HINT.format(source=source, name=name)
        ) from err


def materialise_encoder(settings: dict, out_dir: str | Path) -> dict:
    """Write the configured encoder to `out_dir` (config.json + model.safetensors); return a summary."""
    model = build_encoder(settings["source"], config=settings.get("config"),
                          overrides=settings.get("overrides"), init_seed=settings.get("init_seed", 0))
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out_dir, safe_serialization=True)
    cfg = model.config
    return {"source": settings["source"], "parameters": sum(p.numel() for p in model.parameters()),
            "hidden_size": cfg.hidden_size, "num_hidden_layers": cfg.num_hidden_layers,
            "feat_extract_norm": cfg.feat_extract_norm}


_PRELOADED: dict[tuple, HubertModel] = {}


def _cache_key(directory: str | Path) -> tuple:
    directory = Path(directory).resolve()
    return (str(directory),) + tuple(
        (f.name, f.stat().st_mtime_ns, f.stat().st_size) for f in sorted(directory.glob("*")) if f.is_file())


def preload_encoder(directory: str | Path) -> None:
    """Load the encoder once in the warm worker, before it forks: every child then starts from this
    copy (copy-on-write) instead of paying from_pretrained again. Keyed by the files' mtimes and sizes,
    so a rebuilt encoder is loaded afresh. Loads on the CPU and uses one thread (fork-safe)."""
    key = _cache_key(directory)
    if key not in _PRELOADED:
        _PRELOADED.clear()
        torch.set_num_threads(1)
        _PRELOADED[key] = _from_disk(directory)


def load_encoder(directory: str | Path) -> HubertModel:
    """Load the materialised encoder (offline: a local directory); in a worker child, take the
    preloaded copy (the child owns it: it is removed so a second call in one process loads afresh)."""
    preloaded = _PRELOADED.pop(_cache_key(directory), None) if _PRELOADED else None
    return preloaded if preloaded is not None else _from_disk(directory)


def _from_disk(directory: str | Path) -> HubertModel:
    return _checked_load(str(directory), f"encoder directory {directory}", None, local_files_only=True)


SUPPORTED_MODEL_TYPES = ("hubert",)
PLANNED_MODEL_TYPES = ("wav2vec2", "wavlm", "data2vec-audio")  # a later version: an adapter over transformers' Auto classes


def _few(keys, n: int = 4) -> str:
    keys = sorted(keys)
    return ", ".join(keys[:n]) + (f" and {len(keys) - n} more" if len(keys) > n else "")


def _checked_load(ref: str, label: str, overrides: dict | None, **kwargs) -> HubertModel:
    """HubertModel.from_pretrained(ref, **kwargs), refusing what would load wrongly without an error.

    Refused: a config.json whose model_type is not 'hubert'; weights of the model that the file does
    not provide (they would be randomly initialised: NaN for data2vec-audio's positional convolution);
    weights of the file inside the encoder that the model has no place for (WavLM's relative-position
    weights, layers beyond num_hidden_layers). Accepted: file weights outside the encoder's modules,
    i.e. a task head such as HubertForCTC's lm_head, and masked_spec_embed when time masking is off;
    they are not used by the encoder and are dropped.
    """
    config_kwargs = {k: v for k, v in kwargs.items() if k in ("local_files_only",)}
    config_dict, _ = HubertConfig.get_config_dict(ref, **config_kwargs)
    model_type = config_dict.get("model_type")
    where = Path(ref) / "config.json" if Path(ref).is_dir() else f"config.json of {ref}"
    if model_type is not None and model_type not in SUPPORTED_MODEL_TYPES:
        planned = (f"; support for {', '.join(PLANNED_MODEL_TYPES[:-1])} and {PLANNED_MODEL_TYPES[-1]} is planned "
                   "for a later version, not there yet") if model_type in PLANNED_MODEL_TYPES else (
            "; other model families are not supported")
        raise EncoderError(
            f"{label}: {where} has model_type '{model_type}', but this version loads only model_type "
            f"{', '.join(repr(t) for t in SUPPORTED_MODEL_TYPES)} (HuBERT, e.g. utter-project/mHuBERT-147){planned}. "
            "Loading it as HuBERT would drop or leave uninitialised some of its weights. "
            "Set encoder.source to a HuBERT checkpoint.")
    # ignore_mismatched_sizes: report other shapes in `info` (refused below, with the keys) instead of
    # transformers' RuntimeError that points to a table in the log
    model, info = HubertModel.from_pretrained(ref, output_loading_info=True, ignore_mismatched_sizes=True, **kwargs)
    own = {name for name, _ in model.named_children()} | {name for name, _ in model.named_parameters(recurse=False)}
    missing = set(info.get("missing_keys") or ())
    unexpected = {k for k in info.get("unexpected_keys") or () if k.split(".", 1)[0] in own}
    mismatched = {str(k[0]) if isinstance(k, tuple) else str(k) for k in info.get("mismatched_keys") or ()}
    if missing or unexpected or mismatched:
        weights = Path(ref) if Path(ref).is_dir() else f"the weights of {ref}"
        if isinstance(weights, Path):
            files = sorted(f.name for f in weights.iterdir() if f.suffix in (".safetensors", ".bin"))
            weights = weights / files[0] if len(files) == 1 else weights
        parts = []
        if missing:
            parts.append(f"{len(missing)} weights of the model are missing from the file ({_few(missing)}) "
                         "and would be randomly initialised")
        if unexpected:
            parts.append(f"{len(unexpected)} weights of the file have no place in the model ({_few(unexpected)}) "
                         "and would be dropped")
        if mismatched:
            parts.append(f"{len(mismatched)} weights have other shapes than the model's ({_few(mismatched)})")
        raise EncoderError(
            f"{label}: {weights} does not match a HubertModel of its config.json (model_type "
            f"'{model_type or 'hubert'}'{', with encoder.overrides ' + str(overrides) if overrides else ''}): "
            + "; ".join(parts) + ". Use a complete HuBERT checkpoint saved with save_pretrained, and keep layer "
            "sizes and counts out of encoder.overrides.")
    return model
