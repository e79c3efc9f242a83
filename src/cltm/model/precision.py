"""Numeric precision of training and evaluation: `tasks.<task>.training.precision` (fp32, tf32, bf16)."""

from __future__ import annotations

import contextlib

import torch

# tasks.<task>.training.precision (absent: fp32, the paper protocol); the schema's enum lists the same
PRECISIONS = ("fp32", "tf32", "bf16")


def precision_of(cfg: dict) -> str:
    """A training section's precision; configs without the key are fp32 (the paper protocol), and the default
    is never written into a config, so the settings digest of an existing task does not change."""
    precision = cfg.get("precision", "fp32")
    if precision not in PRECISIONS:
        raise ValueError(f"unknown training precision '{precision}' (config key tasks.<task>.training.precision: "
                         f"use {', '.join(PRECISIONS)})")
    return precision


@contextlib.contextmanager
def autocast(device: torch.device, precision: str = "fp32"):
    """The numeric precision of a forward pass and the loss (backward follows the forward's dtypes); used
    inside `matmul_precision`, which covers the backward pass too.

    fp32: PyTorch's defaults (float32 matrix products; on CUDA, cuDNN's convolutions may use TF32, as
    PyTorch allows by default). tf32: matrix products and convolutions in TF32 on CUDA (Ampere or newer),
    set by `matmul_precision`; on CPU the same as fp32. bf16: autocast to bfloat16 (weights, gradients and
    optimiser state stay float32; bf16's exponent range is float32's, so no loss scaling is needed); works
    on CPU too, but slower there without bf16 matrix units.
    """
    if precision == "bf16":
        with torch.autocast(device.type, dtype=torch.bfloat16):
            yield
    else:
        yield


@contextlib.contextmanager
def matmul_precision(device: torch.device, precision: str = "fp32"):
    """TF32 matrix products and convolutions for the time of a training or an evaluation (forward and
    backward) when `precision` is tf32 on CUDA; the process's settings are restored afterwards."""
    if precision != "tf32" or device.type != "cuda":
        yield
        return
    before = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = before
