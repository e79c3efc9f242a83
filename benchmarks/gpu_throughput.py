"""Benchmark: fine-tuning throughput per GPU, the reference's way against the project's modes.

    python benchmarks/gpu_throughput.py [--device cuda|cpu] [--reduced] [--packs 1 2 4 8] [--json FILE]

A HuBERT-base-size encoder (mHuBERT-147's architecture, random weights: no download) on synthetic clips
with Common Voice's length distribution (lognormal, mean about 5 s, clipped to 1-12 s, lengths whole
multiples of 384 samples as 48 kHz MP3 frames resampled to 16 kHz are), trained and evaluated with the
project's own code (`cltm.train.loop`). Modes, each measured in its own process:

  reference   a fresh Python process per run: imports, model load from disk, batch 1, fp32, the loss read
              back every step, clip-by-clip evaluation (what the reference's one-SLURM-job-per-run does)
  warm fp32   the warm worker: imports and the encoder loaded once, a forked child per run (CUDA
              initialised again per run), fp32, loss read back every SYNC_EVERY steps
  bf16        as warm fp32, in bf16 autocast (equal-length test clips evaluated together)
  bf16 packed K   K persistent processes on the device at once (cltm.grid.pack), each training its own run

For each: runs per GPU-hour of the paper preset's runs (config/paper.yaml: a gender run of 240 clips and a
speaker run of 2000 utterances, the dual and donor conditions that make up nearly all of a matrix's runs,
1 epoch, batch 1, plus the test set), EXTRAPOLATED from a few measured steps (training and evaluation
rates in audio seconds per second, times the preset's audio, plus the measured per-run start-up: process,
imports, load, CUDA initialisation and the first (warm-up) steps where a run pays them);
training audio seconds per second; peak memory (CUDA: torch.cuda.max_memory_allocated per process, summed
over the K packed processes; CPU: peak RSS of the process, summed likewise); model FLOP utilisation (FLOPs
per step counted from the config: convolutional feature encoder, feature projection, positional
convolution and transformer layers; training = 3 x forward; over the device's dense peak for the
precision from PEAK_TFLOPS; on CPU n/a, the achieved TFLOP/s are given instead).

`--reduced` (the default on CPU) runs a small encoder, short clips and a few steps (well under a minute
on 2 cores): a check that the benchmark works, not a measurement of anything but this machine.
The last line of stdout is `BENCHMARK_JSON {...}` (also written to --json FILE).
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import multiprocessing as mp
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

# mHuBERT-147 (utter-project/mHuBERT-147) is a HuBERT base: its architecture, random weights. LayerDrop and
# time masking off so that every step runs all layers on every frame, as the FLOP count assumes.
HUBERT_BASE = {
    "model_type": "hubert", "hidden_size": 768, "num_hidden_layers": 12, "num_attention_heads": 12,
    "intermediate_size": 3072, "hidden_act": "gelu", "conv_dim": [512] * 7, "conv_kernel": [10, 3, 3, 3, 3, 2, 2],
    "conv_stride": [5, 2, 2, 2, 2, 2, 2], "conv_bias": False, "feat_extract_norm": "group",
    "feat_extract_activation": "gelu", "do_stable_layer_norm": False, "num_conv_pos_embeddings": 128,
    "num_conv_pos_embedding_groups": 16, "feat_proj_layer_norm": True, "hidden_dropout": 0.1,
    "attention_dropout": 0.1, "activation_dropout": 0.0, "feat_proj_dropout": 0.0, "layerdrop": 0.0,
    "mask_time_prob": 0.0,
}
REDUCED = {**HUBERT_BASE, "hidden_size": 64, "num_hidden_layers": 2, "num_attention_heads": 2,
           "intermediate_size": 128, "conv_dim": [32] * 7, "num_conv_pos_embeddings": 16,
           "num_conv_pos_embedding_groups": 4}

# dense peak TFLOP/s per precision (vendor data sheets, without sparsity); fp32 = plain FP32 (CUDA cores)
PEAK_TFLOPS = {
    "H200": {"bf16": 989.0, "tf32": 494.7, "fp32": 66.9},
    "H100 PCIe": {"bf16": 756.0, "tf32": 378.0, "fp32": 51.2},
    "H100": {"bf16": 989.0, "tf32": 494.7, "fp32": 66.9},  # SXM
    "A100": {"bf16": 312.0, "tf32": 156.0, "fp32": 19.5},
    "L40S": {"bf16": 362.0, "tf32": 183.0, "fp32": 91.6},
    "A40": {"bf16": 149.7, "tf32": 74.8, "fp32": 37.4},
    "V100": {"bf16": None, "tf32": None, "fp32": 15.7},
}

SAMPLE_RATE = 16000
FRAME = 384  # a 1152-sample MP3 frame at 48 kHz, resampled to 16 kHz


def preset_sizes(path: Path = ROOT / "config" / "paper.yaml") -> dict:
    import yaml

    cfg = yaml.safe_load(path.read_text())
    test = cfg["data"]["test"]
    test_clips = 2 * test["speakers_per_gender"] * test["max_clips_per_speaker"]
    return {"gender_train_clips": 2 * 2 * cfg["tasks"]["gender"]["n_per_class"],  # dual: 2 N, N = 2 x n_per_class
            "speaker_train_clips": 2 * cfg["tasks"]["speaker"]["n_utterances"],
            "test_clips": test_clips, "epochs": cfg["tasks"]["gender"]["training"]["epochs"],
            "batch_size": cfg["tasks"]["gender"]["training"]["batch_size"]}


def clip_lengths(n: int, seed: int, scale: float = 1.0) -> list[int]:
    """Common Voice-like clip lengths in samples: lognormal, mean ~5 s, clipped to 1-12 s (times `scale`)."""
    import numpy as np

    sigma = 0.45
    seconds = np.random.default_rng(seed).lognormal(math.log(5.0) - sigma ** 2 / 2, sigma, n).clip(1.0, 12.0)
    return [max(FRAME, int(round(s * scale * SAMPLE_RATE / FRAME)) * FRAME) for s in seconds]


def forward_flops(cfg: dict, n_samples: int) -> float:
    """Multiply-adds x 2 of one forward pass of one clip (conv encoder, projection, positional conv, layers)."""
    flops, n, c_in = 0.0, n_samples, 1
    for c_out, k, s in zip(cfg["conv_dim"], cfg["conv_kernel"], cfg["conv_stride"]):
        n = (n - k) // s + 1
        flops += 2 * c_in * k * c_out * n
        c_in = c_out
    t, h, inter = n, cfg["hidden_size"], cfg["intermediate_size"]
    flops += 2 * c_in * h * t  # feature projection
    flops += 2 * h * (h // cfg["num_conv_pos_embedding_groups"]) * cfg["num_conv_pos_embeddings"] * t
    per_layer = 2 * t * (4 * h * h + 2 * h * inter) + 2 * 2 * t * t * h  # projections + FFN; QK^T and AV
    return flops + cfg["num_hidden_layers"] * per_layer


def waves_of(lengths: list[int], seed: int):
    import numpy as np

    rng = np.random.default_rng(seed)
    return [(0.1 * rng.standard_normal(n)).astype(np.float32) for n in lengths]


def peak_memory(device) -> int:
    import torch

    if device.type == "cuda":
        return int(torch.cuda.max_memory_allocated(device))
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # kB on Linux


# ---------------------------------------------------------------- one measurement (in its own process)


def measure(encoder, job: dict, barrier=None) -> dict:
    """Train (warm-up steps, then timed steps) and evaluate a few clips; times, rates, peak memory."""
    import numpy as np
    import torch

    from cltm.model.heads import Classifier
    from cltm.train.evaluate import predict_proba
    from cltm.train.loop import fine_tune

    torch.set_num_threads(job["threads"])
    device = torch.device(job["device"])
    t0 = time.perf_counter()
    if device.type == "cuda":
        torch.cuda.init()
        torch.zeros(1, device=device)
    cuda_init_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    model = Classifier(copy.deepcopy(encoder), 2).to(device)
    setup_s = time.perf_counter() - t0
    cfg = {"epochs": 1, "batch_size": 1, "crop_seconds": None, "lr": 1e-5, "schedule": "constant",
           "warmup_ratio": 0.0, "weight_decay": 0.0, "grad_clip": 1.0, "precision": job["precision"]}
    seed = job["seed"]
    warm = waves_of(clip_lengths(job["warmup_steps"], seed, job["scale"]), seed)
    timed_lengths = clip_lengths(job["steps"], seed + 1, job["scale"])
    timed = waves_of(timed_lengths, seed + 1)
    eval_lengths = clip_lengths(job["eval_clips"], seed + 2, job["scale"])
    evaluated = waves_of(eval_lengths, seed + 2)
    labels = np.arange(len(timed)) % 2
    quiet = lambda m: None  # noqa: E731

    def sync():
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    t0 = time.perf_counter()
    fine_tune(model, warm, labels[:len(warm)], cfg, seed=seed, device=device, log=quiet, sync_every=job["sync_every"])
    sync()
    warmup_s = time.perf_counter() - t0
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    if barrier is not None:
        barrier.wait()
    t0 = time.perf_counter()
    fine_tune(model, timed, labels, cfg, seed=seed, device=device, log=quiet, sync_every=job["sync_every"])
    sync()
    train_s = time.perf_counter() - t0
    if barrier is not None:
        barrier.wait()
    t0 = time.perf_counter()
    predict_proba(model, evaluated, device, job["precision"])
    sync()
    eval_s = time.perf_counter() - t0
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    return {"cuda_init_s": cuda_init_s, "setup_s": setup_s, "warmup_s": warmup_s, "train_s": train_s, "eval_s": eval_s,
            "train_audio_s": sum(timed_lengths) / SAMPLE_RATE, "eval_audio_s": sum(eval_lengths) / SAMPLE_RATE,
            "steps": len(timed), "train_flops": 3 * sum(forward_flops(job["encoder_config"], n) for n in timed_lengths),
            "peak_memory_bytes": peak_memory(device), "device_name": name}


def _forked(encoder, job, barrier, conn):
    try:
        conn.send(measure(encoder, job, barrier))
    except BaseException as err:  # noqa: BLE001 - reported by the parent
        import traceback

        conn.send({"error": f"{type(err).__name__}: {err}\n{traceback.format_exc()}"})
        if barrier is not None:
            barrier.abort()


def run_forked(encoder, job: dict, k: int) -> list[dict]:
    """k processes forked from this one (the encoder already in memory, CUDA untouched here) at once."""
    ctx = mp.get_context("fork")
    barrier = ctx.Barrier(k) if k > 1 else None
    pipes, procs = [], []
    for i in range(k):
        parent, child = ctx.Pipe(duplex=False)
        proc = ctx.Process(target=_forked, args=(encoder, {**job, "seed": job["seed"] + 10 * i}, barrier, child))
        proc.start()
        child.close()
        pipes.append(parent)
        procs.append(proc)
    results = [p.recv() for p in pipes]
    for proc in procs:
        proc.join()
    for r in results:
        if "error" in r:
            raise RuntimeError(r["error"])
    return results


def run_reference(model_dir: str, job: dict) -> dict:
    """A fresh interpreter per run: imports, load from disk, then the same measurement."""
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, __file__, "--_reference", json.dumps({**job, "model_dir": model_dir})],
                          capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(ROOT / "src")})
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise RuntimeError(f"the reference process failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    result["process_s"] = wall
    return result


def _reference_child(args: str) -> None:
    t0 = time.perf_counter()
    import torch  # noqa: F401 - the imports a fresh run pays

    from cltm.model.encoder import load_encoder
    import_s = time.perf_counter() - t0
    job = json.loads(args)
    t0 = time.perf_counter()
    encoder = load_encoder(job["model_dir"])
    load_s = time.perf_counter() - t0
    result = measure(encoder, job)
    result.update(import_s=import_s, load_s=load_s)
    print(json.dumps(result))


# ---------------------------------------------------------------- summary


def summarise(mode: str, precision: str, k: int, results: list[dict], startup_s: float, preset: dict,
              mean_clip_s: float, peaks: dict | None) -> dict:
    """Rates over the k processes measured at once, and the preset's runs per GPU-hour extrapolated."""
    train_s = max(r["train_s"] for r in results)
    eval_s = max(r["eval_s"] for r in results)
    train_rate = sum(r["train_audio_s"] for r in results) / train_s  # audio s per s, all k together
    per_process_train = min(r["train_audio_s"] / r["train_s"] for r in results)
    per_process_eval = min(r["eval_audio_s"] / r["eval_s"] for r in results)

    def runs_per_hour(train_clips: int) -> float:
        run_s = (startup_s + preset["epochs"] * train_clips * mean_clip_s / per_process_train
                 + preset["test_clips"] * mean_clip_s / per_process_eval)
        return k * 3600.0 / run_s

    achieved = sum(r["train_flops"] for r in results) / train_s / 1e12
    peak = (peaks or {}).get(precision)
    return {"mode": mode, "precision": precision, "k": k,
            "steps_per_s": sum(r["steps"] for r in results) / train_s,
            "train_audio_s_per_s": train_rate,
            "eval_audio_s_per_s": sum(r["eval_audio_s"] for r in results) / eval_s,
            "startup_s_per_run": startup_s,
            "runs_per_gpu_hour_gender": runs_per_hour(preset["gender_train_clips"]),
            "runs_per_gpu_hour_speaker": runs_per_hour(preset["speaker_train_clips"]),
            "peak_memory_bytes": sum(r["peak_memory_bytes"] for r in results),
            "peak_memory_per_run_bytes": max(r["peak_memory_bytes"] for r in results),
            "achieved_tflops": achieved, "mfu": achieved / peak if peak else None}


def device_peaks(name: str) -> tuple[str | None, dict | None]:
    for key, peaks in PEAK_TFLOPS.items():  # "H100 PCIe" before "H100"
        if all(part in name for part in key.split()):
            return key, peaks
    return None, None


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--device", choices=["cuda", "cpu"], default=None, help="default: cuda when available")
    ap.add_argument("--reduced", action="store_true", default=None, help="small encoder, few steps (default on CPU)")
    ap.add_argument("--full", dest="reduced", action="store_false", help="HuBERT-base size even on CPU (slow)")
    ap.add_argument("--packs", type=int, nargs="+", default=None, help="K of the packed modes (default 1 2 4 8; reduced 1 2)")
    ap.add_argument("--steps", type=int, default=None, help="timed training steps per process")
    ap.add_argument("--json", type=Path, default=None, help="also write the results here")
    ap.add_argument("--_reference", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args._reference:
        _reference_child(args._reference)
        return 0

    import torch

    from cltm.model.encoder import build_encoder

    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")  # no CUDA context in this process
    reduced = (device == "cpu") if args.reduced is None else args.reduced
    config = REDUCED if reduced else HUBERT_BASE
    packs = args.packs or ([1, 2] if reduced else [1, 2, 4, 8])
    base_job = {"device": device, "precision": "fp32", "sync_every": 25, "seed": 1,
                "warmup_steps": 1 if reduced else 3, "steps": args.steps or (3 if reduced else 20),
                "eval_clips": 3 if reduced else 16, "scale": 0.3 if reduced else 1.0,
                "threads": 1 if device == "cpu" else 4,  # CPU: one thread a process (K packed use K cores)
                "encoder_config": {k: v for k, v in config.items() if k != "model_type"}}
    preset = preset_sizes()
    mean_clip_s = sum(clip_lengths(4000, 99, base_job["scale"])) / 4000 / SAMPLE_RATE

    sizes = {k: v for k, v in config.items() if k != "model_type"}
    torch.set_num_threads(1)  # children are forked: a parent's thread pool would hang theirs (GNU OpenMP)
    encoder = build_encoder("random", config={"model_type": "hubert", **sizes}, init_seed=0)
    rows, name = [], None
    with tempfile.TemporaryDirectory() as tmp:
        encoder.save_pretrained(tmp, safe_serialization=True)
        ref = run_reference(tmp, {**base_job, "sync_every": 1})
        name = ref["device_name"]
        key, peaks = device_peaks(name)
        ref_startup = ref["process_s"] - ref["train_s"] - ref["eval_s"]  # interpreter, imports, load, CUDA, warm-up
        rows.append(summarise("reference", "fp32", 1, [ref], ref_startup, preset, mean_clip_s, peaks))
    for mode, precision in (("warm fp32", "fp32"), ("bf16", "bf16")):
        [r] = run_forked(encoder, {**base_job, "precision": precision}, 1)
        startup = r["cuda_init_s"] + r["setup_s"] + r["warmup_s"]  # a forked child per run pays all three
        rows.append(summarise(mode, precision, 1, [r], startup, preset, mean_clip_s, peaks))
    for k in packs:
        results = run_forked(encoder, {**base_job, "precision": "bf16"}, k)
        startup = max(r["setup_s"] for r in results)  # persistent processes: CUDA and warm-up once, not per run
        rows.append(summarise(f"bf16 packed K={k}", "bf16", k, results, startup, preset, mean_clip_s, peaks))

    out = {"device": device, "device_name": name, "peak_table_entry": key, "reduced": reduced,
           "encoder": "reduced (small config)" if reduced else "HuBERT base (mHuBERT-147 architecture, random weights)",
           "preset": preset, "mean_clip_s": mean_clip_s, "timed_steps": base_job["steps"],
           "extrapolated": True, "memory": "cuda max_memory_allocated" if device == "cuda" else "peak RSS",
           "modes": rows}
    print(f"device {name} ({'reduced sizes, ' if reduced else ''}{base_job['steps']} timed steps per process, "
          f"mean clip {mean_clip_s:.2f} s, {base_job['threads']} CPU thread(s) per process)")
    print("runs per GPU-hour are EXTRAPOLATED from the measured rates to the paper preset's runs "
          f"(gender {preset['gender_train_clips']} clips, speaker {preset['speaker_train_clips']} utterances, "
          f"{preset['test_clips']} test clips, batch {preset['batch_size']}, {preset['epochs']} epoch)")
    mem = "peak GPU mem" if device == "cuda" else "peak RSS"
    mfu_head = "MFU" if peaks else "MFU (n/a: TFLOP/s)"
    header = f"{'mode':<18} {'gender runs/h':>13} {'speaker runs/h':>14} {'train audio s/s':>15} {mem + ' GiB':>16} {mfu_head:>19}"
    print(header)
    print("-" * len(header))
    for r in rows:
        mfu = f"{100 * r['mfu']:.1f}%" if r["mfu"] is not None else f"n/a ({r['achieved_tflops']:.4f})"
        print(f"{r['mode']:<18} {r['runs_per_gpu_hour_gender']:>13.1f} {r['runs_per_gpu_hour_speaker']:>14.2f} "
              f"{r['train_audio_s_per_s']:>15.2f} {r['peak_memory_bytes'] / 1024 ** 3:>16.2f} {mfu:>19}")
    if args.json:
        args.json.write_text(json.dumps(out, indent=1))
    print("BENCHMARK_JSON " + json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
