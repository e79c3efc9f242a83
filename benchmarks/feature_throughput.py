"""Feature-extraction throughput of probe mode: a HuBERT-base-size encoder (random weights, mHuBERT-147's
architecture: hidden 768, 12 layers, 12 heads, intermediate 3072, conv_dim 512 x 7) through
`cltm.train.features.encode_clips`, the path `extract_features` takes: every layer pooled (mean + std), whole clips.

Clips have a Common Voice-like length distribution: gamma-distributed, 2-10 s, mean about 5 s. Prints
audio seconds encoded per wall second, on CPU and on CUDA when available. mHuBERT-147's feature encoder is
group-normalised, so clips go one at a time (padding would change their features); `--layer-norm` measures
the layer-normalised variant (HuBERT-large / XLS-R style), whose clips share padded batches (`--batch`).

    python benchmarks/feature_throughput.py                      # CPU (and CUDA if present), 60 s of audio
    python benchmarks/feature_throughput.py --audio-seconds 600 --device cuda --batch 1 8 32 --layer-norm
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

HUBERT_BASE = {"hidden_size": 768, "num_hidden_layers": 12, "num_attention_heads": 12, "intermediate_size": 3072,
               "conv_dim": [512] * 7}


def clip_lengths(total_seconds: float, seed: int = 0) -> list[float]:
    rng = np.random.default_rng(seed)
    out = []
    while sum(out) < total_seconds:
        out.append(float(np.clip(2.0 + rng.gamma(2.0, 1.5), 2.0, 10.0)))  # mean ~ 5 s
    return out


def measure(encoder, waves, device, batch: int, sample_rate: int = 16000) -> float:
    import torch

    from cltm.train.features import encode_clips

    encode_clips(encoder, waves[:2], stats=("mean", "std"), device=device, batch=batch)  # warm-up
    if device.type == "cuda":
        torch.cuda.synchronize()
    t = time.perf_counter()
    encode_clips(encoder, waves, stats=("mean", "std"), device=device, batch=batch)
    if device.type == "cuda":
        torch.cuda.synchronize()
    return sum(w.size for w in waves) / sample_rate / (time.perf_counter() - t)


def main(argv=None) -> int:
    import torch

    from cltm.model.encoder import build_encoder

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--audio-seconds", type=float, default=60.0)
    ap.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
    ap.add_argument("--batch", type=int, nargs="+", default=[1, 8])
    ap.add_argument("--layer-norm", action="store_true", help="also the layer-normalised variant (padded batches)")
    ap.add_argument("--threads", type=int, default=None)
    a = ap.parse_args(argv)
    if a.threads:
        torch.set_num_threads(a.threads)

    lengths = clip_lengths(a.audio_seconds)
    rng = np.random.default_rng(1)
    waves = [0.1 * rng.standard_normal(int(s * 16000)).astype(np.float32) for s in lengths]
    print(f"{len(waves)} clips, {sum(lengths):.0f} s of audio (mean {np.mean(lengths):.1f} s, "
          f"{min(lengths):.1f}-{max(lengths):.1f} s); {os.cpu_count()} CPUs, torch threads {torch.get_num_threads()}")
    devices = ["cpu", "cuda"] if a.device == "auto" and torch.cuda.is_available() else \
        ["cpu"] if a.device == "auto" else [a.device]
    variants = [("group", "group-norm (mHuBERT-147, one clip at a time)")]
    if a.layer_norm:
        variants.append(("layer", "layer-norm (padded batches)"))
    print("device  encoder                                        batch  audio-s/s")
    for dev in devices:
        device = torch.device(dev)
        for norm, label in variants:
            encoder = build_encoder("random", config={**HUBERT_BASE, "feat_extract_norm": norm},
                                    overrides={"layerdrop": 0.0}, init_seed=0)
            for batch in (a.batch if norm == "layer" else [1]):
                rate = measure(encoder, waves, device, batch)
                print(f"{dev:7s} {label:46s} {batch:5d} {rate:10.1f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
