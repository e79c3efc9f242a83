"""Benchmark: host syncs of a training step and of an evaluation, transformers' way against the project's.

    python benchmarks/host_syncs.py [--device cuda|cpu] [--reduced] [--steps 30] [--clips 40] [--json FILE]

Two comparisons on one encoder (mHuBERT-147's architecture and released masking, random weights; `--reduced`,
the default on CPU, a tiny one and short clips):

  training step   batch 1, a whole clip, AdamW: transformers' own time masking (numpy spans, a blocking copy
                  to the device, a boolean-index write) against `cltm.model.masking` (spans from the run's
                  generator, copied without blocking, applied by torch.where); the loss is not read back
  evaluation      `--clips` clips of different lengths, one at a time (group-normalised encoder, fp32):
                  each clip's output copied to the host at once (the path before) against
                  `cltm.train.evaluate.per_clip` (outputs left on the device, one copy at the end)

Each is timed over its repetitions after a warm-up (CUDA: synchronised at both ends), twice, interleaved
with the other path; the faster time is kept. On CUDA the syncs
are counted with `torch.cuda.set_sync_debug_mode("warn")` over one step and one evaluation (every call that
makes the host wait for the device warns once); on the CPU there is no device to wait for (the count is
n/a) and the times show only what the host work costs. The last line of stdout is `SYNCS_JSON {...}`.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "benchmarks"))

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from gpu_throughput import HUBERT_BASE, REDUCED  # noqa: E402
from cltm.model.device import to_device  # noqa: E402
from cltm.model.encoder import build_encoder  # noqa: E402
from cltm.model.heads import Classifier  # noqa: E402
from cltm.model.masking import draw_time_masks, sample_lengths, time_masked  # noqa: E402
from cltm.train.evaluate import per_clip  # noqa: E402


def count_syncs(device: torch.device, fn) -> int | None:
    """How many calls in `fn()` made the host wait for the device (CUDA's sync debug mode); None on the CPU."""
    if device.type != "cuda":
        fn()
        return None
    torch.cuda.synchronize()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        torch.cuda.set_sync_debug_mode("warn")
        try:
            fn()
        finally:
            torch.cuda.set_sync_debug_mode("default")
    return sum("synchronizing" in str(w.message) for w in caught)


def timed(device: torch.device, fn, repeats: int) -> float:
    """Seconds per call of `fn`, after one warm-up call."""
    fn()
    if device.type == "cuda":
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(repeats):
        fn()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return (time.perf_counter() - t0) / repeats


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--device", choices=["cuda", "cpu"], default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--reduced", action="store_true", help="a tiny encoder and short clips (default on CPU)")
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--clips", type=int, default=40)
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args(argv)
    device = torch.device(args.device)
    reduced = args.reduced or device.type == "cpu"
    config = dict(REDUCED if reduced else HUBERT_BASE)
    seconds = 1.0 if reduced else 5.0
    if device.type == "cpu":
        torch.backends.mkldnn.enabled = False  # as fine-tuning sets it on the CPU in fp32 (cltm.train.loop)
    torch.manual_seed(0)
    encoder = build_encoder("random", config={k: v for k, v in config.items()}, init_seed=0)
    model = Classifier(encoder, 2).to(device).train()
    optimiser = torch.optim.AdamW(model.parameters(), lr=1e-5, fused=device.type == "cuda")
    rng = np.random.default_rng(0)
    wave = torch.from_numpy(rng.standard_normal((1, int(seconds * 16000))).astype(np.float32))
    y = to_device(torch.tensor([1]), device)
    generator = torch.Generator().manual_seed(0)

    def step(ours: bool):
        def run():
            x = to_device(wave, device)
            spans = draw_time_masks(encoder.config, sample_lengths(wave, None), generator) if ours else None
            with time_masked(encoder, to_device(spans, device) if ours else None):
                loss = F.cross_entropy(model(x), y)
            optimiser.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimiser.step()
        return run

    result = {"device": str(device), "encoder": "reduced" if reduced else "HuBERT base (mHuBERT-147)",
              "clip_s": seconds, "torch": torch.__version__}
    for name, ours in (("transformers", False), ("cltm", True)) * 2:  # twice, interleaved: the faster of each
        result[f"train_step_s_{name}"] = min(timed(device, step(ours), args.steps),
                                             result.get(f"train_step_s_{name}", float("inf")))
        result[f"train_step_syncs_{name}"] = count_syncs(device, step(ours))

    lengths = rng.integers(int(0.6 * seconds * 16000), int(1.4 * seconds * 16000), args.clips)
    waves = [rng.standard_normal(n).astype(np.float32) for n in lengths]
    model.eval()

    @torch.inference_mode()
    def before():
        return torch.stack([model.embed(to_device(torch.from_numpy(w)[None], device)).float().cpu()[0] for w in waves])

    @torch.inference_mode()
    def after():
        return per_clip(model, waves, device, model.embed, "fp32").cpu()

    assert torch.equal(before(), after()), "the evaluation paths differ"
    for name, fn in (("per_clip_copy", before), ("one_copy", after)) * 2:
        result[f"eval_s_{name}"] = min(timed(device, fn, 1 if not reduced else 3),
                                       result.get(f"eval_s_{name}", float("inf")))
        result[f"eval_syncs_{name}"] = count_syncs(device, fn)
    result["eval_clips"] = args.clips

    def syncs(k):
        return "n/a" if result[k] is None else str(result[k])

    print(f"host syncs on {device} ({result['encoder']}, {seconds:g} s clips)")
    print("| what | before | after | s before | s after |\n|---|---|---|---|---|")
    print(f"| training step, batch 1 | {syncs('train_step_syncs_transformers')} | {syncs('train_step_syncs_cltm')} | "
          f"{result['train_step_s_transformers']:.4f} | {result['train_step_s_cltm']:.4f} |")
    print(f"| evaluation of {args.clips} clips | {syncs('eval_syncs_per_clip_copy')} | {syncs('eval_syncs_one_copy')} | "
          f"{result['eval_s_per_clip_copy']:.3f} | {result['eval_s_one_copy']:.3f} |")
    if args.json:
        args.json.write_text(json.dumps(result, indent=1))
    print("SYNCS_JSON " + json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
