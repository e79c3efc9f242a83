"""The device a run trains on (`device: auto | cpu | cuda`), host tensors moved to it, and the
deterministic kernels of `training.deterministic`."""

from __future__ import annotations

import contextlib
import os

import torch

# cuBLAS's workspace setting that makes its matrix products deterministic (NVIDIA's and PyTorch's
# reproducibility notes); read when a process first uses cuBLAS, so set before a run's first CUDA work
CUBLAS_WORKSPACE = ":4096:8"


def pick_device(name: str = "auto") -> torch.device:
    """The torch device of the config key `device` (auto: a GPU where there is one)."""
    if name == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("config key 'device' is 'cuda' but no CUDA device is visible to this job")
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    return torch.device(name)


def may_use_cuda(name: str = "auto") -> bool:
    """Whether a run with config key `device` = `name` may use CUDA in this process, decided without
    asking the CUDA driver (`torch.cuda.is_available()` calls cudaGetDeviceCount, after which a forked child
    cannot use CUDA: torch/cuda/__init__.py). True for cuda, and for auto with a CUDA build of torch.
    Children of a process where this is true are spawned, never forked (`cltm.grid.pack.start_context`)."""
    return name != "cpu" and torch.backends.cuda.is_built()


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


@contextlib.contextmanager
def deterministic_kernels(on: bool, device: torch.device):
    """`tasks.<task>.training.deterministic`: for the time of a training, kernels that give the same bits on
    every call (`torch.use_deterministic_algorithms(True)`: an operation without a deterministic kernel
    stops with PyTorch's error naming it), cuDNN's deterministic algorithms and no benchmarking of them,
    and, on CUDA, cuBLAS's deterministic workspace (`CUBLAS_WORKSPACE_CONFIG`, set for the process where
    it is unset). The process's previous settings are restored afterwards; off, nothing is touched."""
    if not on:
        yield
        return
    if device.type == "cuda":
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", CUBLAS_WORKSPACE)
    before = (torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled(),
              torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark)
    torch.use_deterministic_algorithms(True)
    torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = True, False
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(before[0], warn_only=before[1])
        torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = before[2], before[3]
