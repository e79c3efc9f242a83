"""The speech encoder: transformers' HubertModel from a hub id, a local directory, or a config of sizes.

All three end as a local directory (`results/encoder/`) written once by the workflow, and every
fine-tuning run loads that directory with the same call, so runs never touch the network.
"""

from __future__ import annotations

from pathlib import Path

import torch
from transformers import HubertConfig, HubertModel
from transformers.utils import logging as hf_logging

hf_logging.disable_progress_bar()  # one "Loading weights" bar per run would bury the run logs


def build_encoder(source: str, *, config: dict | None = None, overrides: dict | None = None,
                  init_seed: int = 0) -> HubertModel:
    """`source` 'random' builds HubertConfig(**config) with seeded random weights (a tiny stand-in for
    a pretrained model); anything else is a hub id or a local directory loaded with from_pretrained."""
    overrides = dict(overrides or {})
    if source == "random":
        torch.manual_seed(init_seed)
        return HubertModel(HubertConfig(**{**(config or {}), **overrides}))
    path = Path(source).expanduser()
    ref = str(path) if path.exists() else source
    # use_safetensors=None prefers safetensors when present; no remote code is ever executed
    return HubertModel.from_pretrained(ref, **overrides)


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
        _PRELOADED[key] = HubertModel.from_pretrained(str(directory), local_files_only=True)


def load_encoder(directory: str | Path) -> HubertModel:
    """Load the materialised encoder (offline: a local directory); in a worker child, take the
    preloaded copy (the child owns it: it is removed so a second call in one process loads afresh)."""
    preloaded = _PRELOADED.pop(_cache_key(directory), None) if _PRELOADED else None
    if preloaded is not None:
        return preloaded
    return HubertModel.from_pretrained(str(directory), local_files_only=True)
