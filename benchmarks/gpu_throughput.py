"""Benchmark: what a cell of fine-tuning runs costs on one GPU, the reference's way against the project's modes.

    python benchmarks/gpu_throughput.py [--device cuda|cpu] [--reduced] [--packs 2 5] [--runs 10] [--json FILE]

Each mode trains and evaluates a whole CELL of runs (10 seeds of one gender cell, `dual`, whole clips,
batch 1, 1 epoch) with the project's own job code, and is timed from its start-up to its last run record,
evaluation included; nothing is extrapolated in the measured columns. The encoder has mHuBERT-147's
architecture (HuBERT base, random weights: no download) with its released config's LayerDrop (0.1) and
time masking (mask_time_prob 0.05), so every step pays what a real run pays (masks drawn on the host by
`cltm.model.masking` and applied without a host sync; transformers' own masking, which syncs twice a step,
is measured against it by benchmarks/host_syncs.py); the clips are synthetic, with Common Voice's length distribution
(lognormal, mean about 5 s, 1-12 s, whole multiples of 384 samples), written as WAV files and prepared
by the workflow's own steps (`cltm.data.plan.select_language`, `cltm.data.prepare.prepare_language`).

Modes, each in processes of its own:

  reference        a fresh Python process per run (interpreter, imports, model load, CUDA start-up each
                   time), fp32 with deterministic kernels, the loss read back every step, plain AdamW, clip-
                   by-clip evaluation: the reference's one job per run. Fewer runs (--reference-runs) than
                   a cell: each run pays the same, so a cell is that many times one run.
  warm fp32        the warm worker's job: imports paid once (not counted: the worker has them), then the
                   cell's runs one after the other in one process (encoder read once, CUDA started once),
                   the paper preset's settings (fp32, deterministic kernels), loss read back every 25 steps
  bf16             as warm fp32, bf16 autocast, no deterministic kernels
  bf16 packed K    the cell's runs K at a time (`cltm.grid.pack.execute_packed`: K spawned interpreters, each
                   paying its imports, model load and CUDA context, as a packed job does), bf16

Columns: the cell's wall time; runs per GPU-hour MEASURED (runs of this benchmark's size, from the cell's
wall time); runs per GPU-hour of the paper preset's gender and speaker runs EXTRAPOLATED from the measured
per-run training and evaluation times (scaled by audio seconds) plus the cell's measured fixed cost
(start-up, model load, waves of K); peak memory (CUDA: nvidia-smi's memory.used over all the mode's
processes, less what was in use before; CPU: peak RSS of the largest process); model FLOP utilisation
over the whole cell (start-up and evaluation included): FLOPs counted from the config (convolutions,
projection, positional convolution, transformer layers, LayerDrop's expected share in training; training
= 3 x forward) over the device's dense peak, where fp32 counts the convolutions at the TF32 peak (cuDNN
runs them in TF32 by default) and the matrix products at plain FP32's. The GPU's compute mode and whether
MPS serves it are printed.

`--reduced` (the default on CPU) runs a small encoder, short clips and two runs per cell (well under a
minute on 2 cores): a check that the benchmark works, not a measurement of anything but this machine.
The last line of stdout is `BENCHMARK_JSON {...}` (also written to --json FILE).
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import os
import resource
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

# mHuBERT-147 (utter-project/mHuBERT-147) is a HuBERT base: its architecture, random weights, and its
# released config's regularisation: LayerDrop 0.1 and time masking (mask_time_prob 0.05, span 10), which
# the paper preset keeps (encoder.overrides: null)
HUBERT_BASE = {
    "model_type": "hubert", "hidden_size": 768, "num_hidden_layers": 12, "num_attention_heads": 12,
    "intermediate_size": 3072, "hidden_act": "gelu", "conv_dim": [512] * 7, "conv_kernel": [10, 3, 3, 3, 3, 2, 2],
    "conv_stride": [5, 2, 2, 2, 2, 2, 2], "conv_bias": False, "feat_extract_norm": "group",
    "feat_extract_activation": "gelu", "do_stable_layer_norm": False, "num_conv_pos_embeddings": 128,
    "num_conv_pos_embedding_groups": 16, "feat_proj_layer_norm": True, "hidden_dropout": 0.1,
    "attention_dropout": 0.1, "activation_dropout": 0.0, "feat_proj_dropout": 0.0, "layerdrop": 0.1,
    "mask_time_prob": 0.05, "mask_time_length": 10, "mask_time_min_masks": 2,
}
REDUCED = {**HUBERT_BASE, "hidden_size": 64, "num_hidden_layers": 2, "num_attention_heads": 2,
           "intermediate_size": 128, "conv_dim": [32] * 7, "num_conv_pos_embeddings": 16,
           "num_conv_pos_embedding_groups": 4, "mask_time_length": 2}

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
# the peaks (convolutions, matrix products) a precision runs at on CUDA with PyTorch's defaults
PEAK_OF = {"fp32": ("tf32", "fp32"), "tf32": ("tf32", "tf32"), "bf16": ("bf16", "bf16")}

SAMPLE_RATE = 16000
FRAME = 384  # a 1152-sample MP3 frame at 48 kHz, resampled to 16 kHz
TRAINING = {"epochs": 1, "batch_size": 1, "crop_seconds": None, "lr": 1e-5, "schedule": "constant",
            "warmup_ratio": 0.0, "weight_decay": 0.0, "grad_clip": 1.0}


def preset_sizes(path: Path = ROOT / "config" / "paper.yaml") -> dict:
    import yaml

    cfg = yaml.safe_load(path.read_text())
    test = cfg["data"]["test"]
    test_clips = 2 * test["speakers_per_gender"] * test["max_clips_per_speaker"]
    return {"gender_train_clips": 2 * 2 * cfg["tasks"]["gender"]["n_per_class"],  # dual: 2 N, N = 2 x n_per_class
            "speaker_train_clips": 2 * cfg["tasks"]["speaker"]["n_utterances"],
            "test_clips": test_clips, "epochs": cfg["tasks"]["gender"]["training"]["epochs"],
            "batch_size": cfg["tasks"]["gender"]["training"]["batch_size"], "seeds": len(cfg["seeds"])}


def clip_lengths(n: int, seed: int, scale: float = 1.0) -> list[int]:
    """Common Voice-like clip lengths in samples: lognormal, mean ~5 s, clipped to 1-12 s (times `scale`)."""
    import numpy as np

    sigma = 0.45
    seconds = np.random.default_rng(seed).lognormal(math.log(5.0) - sigma ** 2 / 2, sigma, n).clip(1.0, 12.0)
    return [max(FRAME, int(round(s * scale * SAMPLE_RATE / FRAME)) * FRAME) for s in seconds]


def forward_flops_split(cfg: dict, n_samples: int, layer_share: float = 1.0) -> tuple[float, float]:
    """(convolution FLOPs, matrix-product FLOPs) of one forward pass of one clip: the convolutional
    feature encoder and the positional convolution; the projection and `layer_share` of the transformer
    layers (multiply-adds x 2)."""
    conv, n, c_in = 0.0, n_samples, 1
    for c_out, k, s in zip(cfg["conv_dim"], cfg["conv_kernel"], cfg["conv_stride"]):
        n = (n - k) // s + 1
        conv += 2 * c_in * k * c_out * n
        c_in = c_out
    t, h, inter = n, cfg["hidden_size"], cfg["intermediate_size"]
    conv += 2 * h * (h // cfg["num_conv_pos_embedding_groups"]) * cfg["num_conv_pos_embeddings"] * t
    per_layer = 2 * t * (4 * h * h + 2 * h * inter) + 2 * 2 * t * t * h  # projections + FFN; QK^T and AV
    return conv, 2 * c_in * h * t + layer_share * cfg["num_hidden_layers"] * per_layer


def forward_flops(cfg: dict, n_samples: int) -> float:
    """FLOPs of one forward pass of one clip, every layer."""
    return sum(forward_flops_split(cfg, n_samples))


# ---------------------------------------------------------------- the experiment a cell reads


def build_experiment(root: Path, config: dict, *, train_clips: int, test_clips: int, scale: float, seed: int = 0,
                     device: str = "cpu") -> dict:
    """One language's prepared audio, subsets and encoder as the workflow writes them, for a gender cell
    `dual` of `train_clips` training clips (2 N) and about `test_clips` test clips; returns the paths."""
    import numpy as np
    import pandas as pd
    import soundfile as sf
    import yaml

    from cltm.data.plan import select_language
    from cltm.data.prepare import prepare_language
    from cltm.io import write_json
    from cltm.model.encoder import materialise_encoder

    cfg = yaml.safe_load((ROOT / "config" / "config.yaml").read_text())
    cfg["tasks"].pop("speaker")
    cfg["tasks"].pop("planted", None)  # the demo's known answer reads a label only the demo corpus has
    cfg["data"]["clip_checks"] = {**cfg["data"].get("clip_checks", {}), "min_seconds": 0.1}  # reduced clips
    per_class = max(1, math.ceil(train_clips / 4))  # dual = 2 N, N = 2 x n_per_class
    max_per_speaker = 10
    test_speakers = max(1, math.ceil(test_clips / (2 * max_per_speaker)))
    test_per_speaker = max(2, math.ceil(test_clips / (2 * test_speakers)))
    cfg["languages"] = ["en", "tr"]
    cfg["corpus"] = {"type": "manifest", "manifest": {"path": str(root / "manifest.csv")}}
    cfg["data"]["test"] = {"speakers_per_gender": test_speakers, "min_clips_per_speaker": test_per_speaker,
                           "max_clips_per_speaker": test_per_speaker}
    cfg["tasks"]["gender"].update(n_per_class=per_class, max_clips_per_speaker=max_per_speaker, training=TRAINING)
    cfg["encoder"] = {"source": "random", "config": {k: v for k, v in config.items() if k != "model_type"},
                      "init_seed": 0, "overrides": None}
    cfg["device"] = device
    train_speakers = math.ceil(2 * per_class / max_per_speaker) + 2
    rows, rng, k = [], np.random.default_rng(seed), 0
    for gender in ("male", "female"):
        for s in range(test_speakers + train_speakers):
            clips = test_per_speaker if s < test_speakers else max_per_speaker
            for c, n in enumerate(clip_lengths(clips, seed + k, scale)):
                k += 1
                path = root / "clips" / f"{gender}{s}_{c}.wav"
                path.parent.mkdir(parents=True, exist_ok=True)
                sf.write(str(path), (0.1 * rng.standard_normal(n)).astype(np.float32), SAMPLE_RATE)
                rows.append((f"en_{gender}{s}_{c:03d}", str(path), f"en-{gender}-{s}", gender, "en", n / SAMPLE_RATE, ""))
    manifest = pd.DataFrame(rows, columns=["utt_id", "path", "speaker", "gender", "language", "duration", "split"])
    plan = select_language(cfg, manifest, "en")["gender"]
    wanted = set(plan["test"]) | set(plan["single"]) | set(plan["extra"])
    prepare_language(manifest, wanted, root / "audio/en.npy", root / "audio/en.tsv", log=lambda m: None,
                     checks=cfg["data"]["clip_checks"])
    write_json(root / "subsets/en.json", plan)
    materialise_encoder(cfg["encoder"], root / "encoder")
    lengths = dict(zip(manifest["utt_id"], (manifest["duration"] * SAMPLE_RATE).round().astype(int)))
    return {"root": str(root), "config": cfg, "train_lengths": [lengths[u] for u in plan["single"] + plan["extra"]],
            "test_lengths": [lengths[u] for u in plan["test"]]}


def mode_specs(experiment: dict, mode_dir: Path, training: dict, seeds: list[int], device: str, threads: int):
    """The cell's runs (RunSpec) of one mode: its own settings (precision, deterministic) and outputs."""
    from cltm.config import digest, run_settings
    from cltm.grid.spec import RunSpec
    from cltm.io import write_json

    root = Path(experiment["root"])
    cfg = copy.deepcopy(experiment["config"])
    cfg["tasks"]["gender"]["training"] = training
    settings = run_settings(cfg, "gender")
    write_json(mode_dir / "settings.json", {"settings": settings, "digest": digest(settings), "device": device,
                                            "synthetic": True})
    return [RunSpec(task="gender", target="en", condition="dual", seed=s, settings=str(mode_dir / "settings.json"),
                    encoder=str(root / "encoder/model.safetensors"), subsets=(str(root / "subsets/en.json"),),
                    audio=(str(root / "audio/en.npy"),), run=str(mode_dir / f"seed{s}.json"),
                    scores=str(mode_dir / f"seed{s}.tsv"), checkpoint=None, threads=threads) for s in seeds]


# ---------------------------------------------------------------- a cell's job, in its own process


def _cell_child(args: str) -> None:
    """A cell's job: the runs of `specs` one after the other, or `k` at a time; times and peak memory."""
    t0 = time.perf_counter()
    import torch

    from cltm.grid.execute import execute_runs
    from cltm.grid.pack import execute_packed
    from cltm.grid.spec import read_specs
    from cltm.train import loop

    import_s = time.perf_counter() - t0
    job = json.loads(args)
    if job.get("reference"):  # the reference's loop: the loss read back every step, plain AdamW
        loop.fine_tune.__kwdefaults__["sync_every"] = 1
        loop.make_optimiser = lambda params, cfg, device: torch.optim.AdamW(
            params, lr=cfg["lr"], weight_decay=cfg["weight_decay"])
    specs = read_specs(job["specs"])
    quiet = lambda m: None  # noqa: E731
    if job["k"] > 1:
        execute_packed(specs, job["k"], log=quiet)  # spawned children where the runs may use CUDA
    else:
        execute_runs(specs, log=quiet)
    peak = int(torch.cuda.max_memory_allocated()) if torch.cuda.is_initialized() else None
    print(json.dumps({"import_s": import_s, "job_s": time.perf_counter() - t0, "peak_allocated": peak}))


class MemoryPoll:
    """Peak memory while a mode runs: CUDA, nvidia-smi's memory.used of the job's GPU less what was used
    before; CPU, the peak RSS of the largest finished child process (getrusage)."""

    def __init__(self, device: str):
        self.device, self.peak, self.base, self._stop = device, 0, 0, threading.Event()
        self.smi = device == "cuda" and _smi_used() is not None

    def __enter__(self):
        if self.smi:
            self.base = _smi_used()
            self._thread = threading.Thread(target=self._run, daemon=True)
            self._thread.start()
        return self

    def _run(self):
        while not self._stop.wait(0.2):
            used = _smi_used()
            if used is not None:
                self.peak = max(self.peak, used - self.base)

    def __exit__(self, *exc):
        self._stop.set()
        if self.smi:
            self._thread.join()
        else:
            self.peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024  # kB on Linux
        return False


def _smi_used() -> int | None:
    from cltm.grid.pack import visible_gpu  # the GPU the packing check reads

    visible = visible_gpu()
    try:
        out = subprocess.run(["nvidia-smi", *(["-i", visible] if visible else []), "--query-gpu=memory.used",
                              "--format=csv,noheader,nounits"], capture_output=True, text=True, timeout=10,
                             check=True).stdout
        return int(out.split()[0]) * 1024 ** 2
    except (OSError, subprocess.SubprocessError, ValueError, IndexError):
        return None


def run_cell(specs, k: int, device: str, workdir: Path, *, reference: bool = False) -> dict:
    """The cell's runs as a job would: in one process (k = 1) or k at a time; with `reference`, each run
    in a fresh process of its own. Returns the cell's wall time (the warm worker's imports left out,
    except where a process per run pays them), the runs' records and peak memory."""

    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), os.environ.get("PYTHONPATH", "")])}
    groups = [[s] for s in specs] if reference else [list(specs)]
    cell_s, peaks = 0.0, []
    with MemoryPoll(device) as memory:
        for i, group in enumerate(groups):
            path = workdir / f"specs{i}.json"
            path.write_text(json.dumps([s.to_dict() for s in group]))
            job = json.dumps({"specs": str(path), "k": k, "device": device, "reference": reference})
            t0 = time.perf_counter()
            proc = subprocess.run([sys.executable, __file__, "--_cell", job], capture_output=True, text=True, env=env)
            wall = time.perf_counter() - t0
            if proc.returncode != 0:
                raise RuntimeError(f"a cell's job failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}")
            child = json.loads(proc.stdout.strip().splitlines()[-1])
            # a process per run pays everything; a warm worker's job has its imports already
            cell_s += wall if reference else wall - child["import_s"]
            peaks.append(child["peak_allocated"])
    records = [json.loads(Path(s.run).read_text()) for s in specs]
    peak = memory.peak if memory.peak else max((p or 0) for p in peaks)
    return {"cell_s": cell_s, "records": records, "peak_memory_bytes": int(peak)}


# ---------------------------------------------------------------- summary


def summarise(mode: str, training: dict, k: int, cell: dict, experiment: dict, encoder_config: dict, preset: dict,
              mean_clip_s: float, peaks: dict | None, reference: bool) -> dict:
    """Measured figures of a cell, and the paper preset's runs per GPU-hour extrapolated from them."""
    precision = training.get("precision", "fp32")
    runs = len(cell["records"])
    train_s = sum(r["timing"]["train_s"] for r in cell["records"]) / runs
    eval_s = sum(r["timing"]["eval_s"] for r in cell["records"]) / runs
    waves = runs if reference else math.ceil(runs / k)
    fixed = max(0.0, cell["cell_s"] - waves * (train_s + eval_s))  # start-up, load, what waves leave idle
    train_audio = sum(experiment["train_lengths"]) / SAMPLE_RATE
    eval_audio = sum(experiment["test_lengths"]) / SAMPLE_RATE

    def runs_per_hour(train_clips: int) -> float:
        run_s = (train_s * preset["epochs"] * train_clips * mean_clip_s / train_audio
                 + eval_s * preset["test_clips"] * mean_clip_s / eval_audio)
        seeds = preset["seeds"]
        if reference:  # every run pays the fixed cost again
            cell_s = seeds * (fixed / runs + run_s)
        else:
            cell_s = fixed + math.ceil(seeds / k) * run_s
        return seeds * 3600.0 / cell_s

    layer_share = 1.0 - float(encoder_config.get("layerdrop", 0.0))
    conv = mm = 0.0
    for n in experiment["train_lengths"]:
        c, m = forward_flops_split(encoder_config, n, layer_share)
        conv, mm = conv + 3 * c, mm + 3 * m
    for n in experiment["test_lengths"]:
        c, m = forward_flops_split(encoder_config, n)
        conv, mm = conv + c, mm + m
    conv, mm = conv * runs, mm * runs
    mfu = None
    if peaks and all(peaks.get(p) for p in PEAK_OF[precision]):
        bound_s = sum(f / (peaks[p] * 1e12) for f, p in zip((conv, mm), PEAK_OF[precision]))
        mfu = bound_s / cell["cell_s"]
    return {"mode": mode, "precision": precision, "deterministic": bool(training.get("deterministic")), "k": k,
            "runs": runs, "cell_s": cell["cell_s"], "runs_per_gpu_hour": runs * 3600.0 / cell["cell_s"],
            "train_s_per_run": train_s, "eval_s_per_run": eval_s, "fixed_s_per_cell": fixed,
            "train_audio_s_per_s": runs * train_audio / cell["cell_s"],
            "runs_per_gpu_hour_gender_preset": runs_per_hour(preset["gender_train_clips"]),
            "runs_per_gpu_hour_speaker_preset": runs_per_hour(preset["speaker_train_clips"]),
            "peak_memory_bytes": cell["peak_memory_bytes"],
            "achieved_tflops": (conv + mm) / cell["cell_s"] / 1e12, "mfu": mfu,
            "metrics": [r["value"] for r in cell["records"]]}


def device_peaks(name: str) -> tuple[str | None, dict | None]:
    for key, peaks in PEAK_TFLOPS.items():  # "H100 PCIe" before "H100"
        if all(part in name for part in key.split()):
            return key, peaks
    return None, None


def gpu_state(device: str) -> dict:
    """The GPU's name, compute mode and whether MPS serves it (nvidia-smi; nothing on the CPU)."""
    if device != "cuda":
        return {"name": "cpu", "compute_mode": None, "mig": None, "mps": None}
    from cltm.grid.pack import gpu_facts, mps_running, visible_gpu

    facts = gpu_facts()
    name = None
    try:
        visible = visible_gpu()
        name = subprocess.run(["nvidia-smi", *(["-i", visible] if visible else []), "--query-gpu=name",
                               "--format=csv,noheader"], capture_output=True, text=True, timeout=10,
                              check=True).stdout.strip().splitlines()[0]
    except (OSError, subprocess.SubprocessError, IndexError):
        pass
    return {"name": name or "cuda", "compute_mode": facts.compute_mode if facts else None,
            "mig": facts.mig if facts else None, "mps": mps_running()}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--device", choices=["cuda", "cpu"], default=None, help="default: cuda when available")
    ap.add_argument("--reduced", action="store_true", default=None, help="small encoder, short clips (default on CPU)")
    ap.add_argument("--full", dest="reduced", action="store_false", help="HuBERT-base size even on CPU (slow)")
    ap.add_argument("--packs", type=int, nargs="+", default=None, help="K of the packed modes (default 2 5; reduced 2)")
    ap.add_argument("--runs", type=int, default=None, help="runs per cell (default 10, the paper's seeds; reduced 2)")
    ap.add_argument("--reference-runs", type=int, default=None, help="runs of the reference mode (default 3; reduced 1)")
    ap.add_argument("--train-clips", type=int, default=None, help="training clips per run (default 48; reduced 4)")
    ap.add_argument("--test-clips", type=int, default=None, help="test clips per run (default 40; reduced 4)")
    ap.add_argument("--modes", nargs="+", default=None, help="only these modes (reference, warm, bf16, packed)")
    ap.add_argument("--json", type=Path, default=None, help="also write the results here")
    ap.add_argument("--_cell", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args._cell:
        _cell_child(args._cell)
        return 0

    import torch

    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    reduced = (device == "cpu") if args.reduced is None else args.reduced
    config = REDUCED if reduced else HUBERT_BASE
    packs = args.packs or ([2] if reduced else [2, 5])
    runs = args.runs or (2 if reduced else 10)
    ref_runs = args.reference_runs or (1 if reduced else 3)
    train_clips, test_clips = args.train_clips or (4 if reduced else 48), args.test_clips or (4 if reduced else 40)
    scale = 0.3 if reduced else 1.0
    threads = 1 if device == "cpu" else 4  # CPU: one a process (K packed use K cores); GPU: a job's 4 CPUs
    modes = set(args.modes or ["reference", "warm", "bf16", "packed"])
    preset = preset_sizes()
    mean_clip_s = sum(clip_lengths(4000, 99, scale)) / 4000 / SAMPLE_RATE
    gpu = gpu_state(device)
    key, peaks = device_peaks(gpu["name"])
    encoder_config = {k: v for k, v in config.items() if k != "model_type"}
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        experiment = build_experiment(tmp / "experiment", config, train_clips=train_clips, test_clips=test_clips,
                                      scale=scale, device=device)
        fp32 = {**TRAINING, "deterministic": True}  # the paper preset (config/paper.yaml)
        bf16 = {**TRAINING, "precision": "bf16"}
        plan = []
        if "reference" in modes:
            plan.append(("reference", fp32, 1, ref_runs, True))
        if "warm" in modes:
            plan.append(("warm fp32", fp32, 1, runs, False))
        if "bf16" in modes:
            plan.append(("bf16", bf16, 1, runs, False))
        if "packed" in modes:
            plan += [(f"bf16 packed K={k}", bf16, k, runs, False) for k in packs]
        for mode, training, k, n, reference in plan:
            mode_dir = tmp / mode.replace(" ", "_").replace("=", "")
            specs = mode_specs(experiment, mode_dir, training, list(range(1, n + 1)), device, threads)
            cell = run_cell(specs, k, device, mode_dir, reference=reference)
            rows.append(summarise(mode, training, k, cell, experiment, encoder_config, preset, mean_clip_s, peaks,
                                  reference))
        sizes = {"train_clips": len(experiment["train_lengths"]), "test_clips": len(experiment["test_lengths"]),
                 "train_audio_s": sum(experiment["train_lengths"]) / SAMPLE_RATE,
                 "test_audio_s": sum(experiment["test_lengths"]) / SAMPLE_RATE}
    out = {"device": device, "device_name": gpu["name"], "compute_mode": gpu["compute_mode"], "mig": gpu["mig"],
           "mps": gpu["mps"], "peak_table_entry": key, "reduced": reduced,
           "encoder": "reduced (small config)" if reduced else
           "HuBERT base (mHuBERT-147 architecture and released LayerDrop/masking, random weights)",
           "run_sizes": sizes, "preset": preset, "mean_clip_s": mean_clip_s, "extrapolated": True,
           "memory": "nvidia-smi memory.used" if device == "cuda" else "peak RSS", "modes": rows}
    print(f"device {gpu['name']}: compute mode {gpu['compute_mode']}, MIG {gpu['mig']}, MPS {gpu['mps']}"
          + (" (reduced sizes)" if reduced else ""))
    print(f"each mode: a cell of {runs} runs (reference: {ref_runs}), each {sizes['train_clips']} training clips "
          f"({sizes['train_audio_s']:.0f} s) and {sizes['test_clips']} test clips ({sizes['test_audio_s']:.0f} s), "
          "timed from start-up to the last record. Preset columns are EXTRAPOLATED to the paper preset's runs "
          f"(gender {preset['gender_train_clips']} clips, speaker {preset['speaker_train_clips']}, "
          f"{preset['test_clips']} test clips, a cell of {preset['seeds']} seeds)")
    mem = "peak GPU mem" if device == "cuda" else "peak RSS"
    header = (f"{'mode':<18} {'cell s':>8} {'runs/h':>8} {'gender/h*':>10} {'speaker/h*':>10} "
              f"{mem + ' GiB':>16} {'MFU' if peaks else 'MFU (n/a: TFLOP/s)':>19}")
    print(header)
    print("-" * len(header))
    for r in rows:
        mfu = f"{100 * r['mfu']:.2f}%" if r["mfu"] is not None else f"n/a ({r['achieved_tflops']:.4f})"
        print(f"{r['mode']:<18} {r['cell_s']:>8.1f} {r['runs_per_gpu_hour']:>8.1f} "
              f"{r['runs_per_gpu_hour_gender_preset']:>10.1f} {r['runs_per_gpu_hour_speaker_preset']:>10.2f} "
              f"{r['peak_memory_bytes'] / 1024 ** 3:>16.2f} {mfu:>19}")
    if device == "cuda" and any(r["cell_s"] < 30 for r in rows):
        print("note: a mode took under 30 s; raise --train-clips for steadier figures")
    if args.json:
        args.json.write_text(json.dumps(out, indent=1))
    print("BENCHMARK_JSON " + json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
