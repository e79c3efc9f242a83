"""The device a run trains on (`device: auto | cpu | cuda`), and host tensors moved to it."""

from __future__ import annotations

import torch


def pick_device(name: str = "auto") -> torch.device:
    """The torch device of the config key `device` (auto: a GPU where there is one)."""
    if name == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("config key 'device' is 'cuda' but no CUDA device is visible to this job")
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    return torch.device(name)


def cuda_problem(config: dict) -> str | None:
    """Why `device: cuda` cannot work on this machine, or None. Only meaningful where the jobs run."""
    if config.get("device") != "cuda":
        return None
    if torch.cuda.is_available():
        return None
    build = f"torch {torch.__version__}" + (" (a CPU-only build)" if torch.version.cuda is None else "")
    return ("config key 'device' is cuda, but this machine has no usable CUDA GPU "
            f"(torch.cuda.is_available() is false; {build}). Run on a GPU node (e.g. `--profile slurm`, which "
            "submits the fine-tuning jobs to GPU nodes, or inside a GPU job), install a CUDA build of torch, "
            "or set device: auto (uses a GPU where there is one) or cpu")


def to_device(x: torch.Tensor | None, device: torch.device) -> torch.Tensor | None:
    """A host tensor on `device`; to CUDA through pinned memory without blocking the host, so the copy
    overlaps the work already queued on the device."""
    if x is None:
        return None
    if device.type == "cuda":
        return x.pin_memory().to(device, non_blocking=True)
    return x.to(device)
