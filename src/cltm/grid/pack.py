"""Several runs on one GPU at once (`runs_per_gpu`): K worker processes, each executing whole runs.

A HuBERT-base run at batch size 1 leaves most of a large GPU idle (small kernels, host work between
steps, evaluation). `execute_packed(specs, k)` keeps k runs in flight on the device: k child processes,
each taking the next run of the list when its last one is done and executing it exactly as
`cltm.grid.execute.execute_runs` does (`cltm.grid.execute.execute_run`: its own generators, a fresh copy of the
encoder, its own data order, batches and seed). A run's result is therefore the one it gets alone: bit for
bit on the CPU; on a GPU up to the device's own non-determinism (cuDNN/cuBLAS kernel choice and atomic
adds in backward passes differ between runs anyway, packed or not), or bit for bit there too with
`training.deterministic` (deterministic kernels).

Processes, not threads: a run's generators are process-global state while it runs (`cltm.train.rng`), and each
process holds its own CUDA context (about 0.5 GB of device memory each, counted in `estimate_run_memory`).
Children are forked when that is safe (runs on the CPU, `device: cpu` or a CPU-only torch, each with one
CPU thread), spawned otherwise (each child then imports torch once): a process that has asked whether CUDA
is there (`torch.cuda.is_available()`, as `pick_device` does) can no longer fork a child that uses CUDA, so
whenever the runs may use CUDA the children are spawned (`start_method`). On CUDA the job's CPU threads are
shared out: each of the k children gets `threads // k` (at least 1). Without NVIDIA MPS the
processes' kernels time-share the GPU rather than run concurrently; packing then fills the idle gaps
(one run's host work and evaluation overlap another's kernels). With MPS (`nvidia-cuda-mps-control -d`
on the node) kernels of the k runs also overlap.

Memory: `estimate_run_memory` (an estimate from the encoder's config, see there) and `check_packing`,
which stops with a `PackingError` naming `runs_per_gpu` when k runs cannot fit on the device. The GPU
itself (`gpu_facts`, from nvidia-smi): one in exclusive-process compute mode admits one CUDA context, so k
processes cannot share it (unless MPS serves them); under MIG nvidia-smi reports the whole GPU's memory,
not the instance's. Both stop a packing with a `PackingError` naming `runs_per_gpu` (`check_gpu_sharing`);
`CLTM_GPU_MEMORY_GIB` gives the memory of a MIG instance (or any device) where nvidia-smi cannot.
"""

from __future__ import annotations

import math
import multiprocessing as mp
import os
import pickle
import shutil
import subprocess
import traceback
from collections import Counter
from dataclasses import dataclass
from multiprocessing.connection import wait
from pathlib import Path

import pandas as pd
import torch

from cltm.errors import CltmError
from cltm.grid.execute import RunFailures, RunInputs, execute_run, execute_runs
from cltm.grid.spec import RunSpec
from cltm.io import read_json
from cltm.model.device import may_use_cuda

GIB = 1024 ** 3
CUDA_CONTEXT_BYTES = 512 * 1024 ** 2  # per process: CUDA context and cuBLAS/cuDNN workspaces (not in max_memory_allocated)
SAFETY = 1.25  # allocator fragmentation and what the estimate leaves out


class PackingError(CltmError):
    """k runs per GPU do not fit in the device's memory; the message names runs_per_gpu and the numbers."""


# ---------------------------------------------------------------- memory


def conv_frames(n_samples: int, kernels, strides) -> list[int]:
    """Frames after each layer of the convolutional feature encoder (no padding, as in HuBERT)."""
    frames, n = [], int(n_samples)
    for k, s in zip(kernels, strides):
        n = max(0, (n - k) // s + 1)
        frames.append(n)
    return frames


def count_parameters(encoder_config: dict, n_classes: int) -> int:
    """Parameters of a HuBERT-style encoder (wav2vec 2.0 / WavLM / data2vec-audio layouts are close) plus
    the linear head, from its config (config.json keys)."""
    c = {**_HUBERT_DEFAULTS, **encoder_config}
    h, inter, dims = c["hidden_size"], c["intermediate_size"], list(c["conv_dim"])
    n = 0
    c_in = 1
    for i, (c_out, k) in enumerate(zip(dims, c["conv_kernel"])):
        n += c_in * c_out * k + (c_out if c["conv_bias"] else 0)
        if c["feat_extract_norm"] == "layer" or i == 0:
            n += 2 * c_out  # group norm of the first layer, or a layer norm per layer
        c_in = c_out
    n += 2 * dims[-1] + dims[-1] * h + h  # feature projection: layer norm + linear
    k_pos = c["num_conv_pos_embeddings"]
    n += h * (h // c["num_conv_pos_embedding_groups"]) * k_pos + k_pos + h  # positional conv (weight-normed)
    n += 2 * h  # encoder layer norm
    n += h if c["mask_time_prob"] > 0 or c["mask_feature_prob"] > 0 else 0  # masked_spec_embed
    n += c["num_hidden_layers"] * (4 * h * h + 4 * h + 2 * h * inter + inter + h + 4 * h)
    return n + h * n_classes + n_classes


def estimate_run_memory(encoder_config: dict, longest_clip_seconds: float, batch_size: int, precision: str,
                        n_classes: int, sample_rate: int = 16000) -> int:
    """Estimated peak device memory of one training run, in bytes: an estimate, not a measurement.

    With P parameters, b = batch_size, L = samples of the longest clip, T = frames after the conv encoder,
    h = hidden_size, I = intermediate_size, a = attention heads, n_l layers, e = bytes per activation
    (4 in fp32/tf32, 2 in bf16):
      weights + gradients + AdamW's two moments: 16 P (float32 all; bf16 autocast adds a 2 P cache of
      bfloat16 weight copies)
      conv feature encoder activations: 3 e b sum_i(c_i n_i) (convolution, normalisation and GELU outputs
      of each layer, n_i frames after layer i; the first layer's output dominates)
      transformer activations: n_l e b T (9 h + 3 I + 3 a T) (per token: layer norms, Q, K, V, attention
      output and projection, residual and dropout; the FFN's two I-wide tensors and GELU; attention
      scores, softmax and dropout, a T x T per head: an upper bound, as PyTorch's fused attention keeps
      less), plus b T e (2 c_last + 4 h) for the feature projection and positional convolution
    plus CUDA_CONTEXT_BYTES per process, all times SAFETY (fragmentation). Checked against measured peaks
    only on the CPU benchmark's sizes (benchmarks/gpu_throughput.py reports the measured peak on a GPU)."""
    if precision not in ("fp32", "tf32", "bf16"):
        raise ValueError(f"unknown precision '{precision}' (use fp32, tf32 or bf16)")
    c = {**_HUBERT_DEFAULTS, **encoder_config}
    p = count_parameters(c, n_classes)
    e = 2 if precision == "bf16" else 4
    state = 16 * p + (2 * p if precision == "bf16" else 0)
    b, samples = int(batch_size), int(math.ceil(longest_clip_seconds * sample_rate))
    frames = conv_frames(samples, c["conv_kernel"], c["conv_stride"])
    conv = 3 * e * b * sum(ch * n for ch, n in zip(c["conv_dim"], frames))
    t, h, inter, heads = frames[-1], c["hidden_size"], c["intermediate_size"], c["num_attention_heads"]
    layers = c["num_hidden_layers"] * e * b * t * (9 * h + 3 * inter + 3 * heads * t)
    front = e * b * t * (2 * c["conv_dim"][-1] + 4 * h)
    return int(SAFETY * (state + conv + layers + front + CUDA_CONTEXT_BYTES))


_HUBERT_DEFAULTS = {  # transformers' HubertConfig defaults (HuBERT base), for keys a config leaves out
    "hidden_size": 768, "num_hidden_layers": 12, "num_attention_heads": 12, "intermediate_size": 3072,
    "conv_dim": [512] * 7, "conv_kernel": [10, 3, 3, 3, 3, 2, 2], "conv_stride": [5, 2, 2, 2, 2, 2, 2],
    "conv_bias": False, "feat_extract_norm": "group", "num_conv_pos_embeddings": 128,
    "num_conv_pos_embedding_groups": 16, "mask_time_prob": 0.05, "mask_feature_prob": 0.0,
}


def check_packing(k: int, estimate_bytes: int, device_bytes: int) -> int:
    """Raise PackingError when k runs of `estimate_bytes` each do not fit in `device_bytes`; else return
    how many would fit (at least k)."""
    fit = int(device_bytes // estimate_bytes) if estimate_bytes > 0 else k
    if k < 1:
        raise PackingError(f"runs_per_gpu is {k}; it must be at least 1")
    if k * estimate_bytes <= device_bytes:
        return fit
    what = (f"runs_per_gpu {k}: {k} runs x {estimate_bytes / GIB:.1f} GiB each (estimated: weights, AdamW state, "
            f"gradients and activations of the longest clip) = {k * estimate_bytes / GIB:.1f} GiB, more than the "
            f"device's {device_bytes / GIB:.1f} GiB")
    if fit >= 1:
        raise PackingError(f"{what}; at most {fit} fit: set runs_per_gpu to {fit} or lower (or train in bf16, "
                           "or with a shorter crop_seconds)")
    raise PackingError(f"{what}; not even one run fits: set runs_per_gpu to 1 and use a larger GPU, bf16, "
                       "or a crop_seconds shorter than the longest clip")


def longest_clip_seconds(spec: RunSpec, sample_rate: int = 16000) -> float:
    """The longest prepared clip of the run's languages (their audio indexes, results/audio/<lang>.tsv)."""
    longest = 0
    for npy in spec.audio:
        index = pd.read_csv(Path(npy).with_suffix(".tsv"), sep="\t", usecols=["n_samples"])
        longest = max(longest, int(index["n_samples"].max()) if len(index) else 0)
    return longest / sample_rate


def estimate_spec_memory(spec: RunSpec) -> int:
    """estimate_run_memory for a run as the workflow wrote it: the encoder's config.json, the task's
    training settings (batch size, precision, crop), the longest clip of its languages (a training crop
    caps the training clip; evaluation is lighter, without gradients), and as many classes as speakers
    (an upper bound for the speaker head)."""
    spec_file = read_json(spec.settings)
    settings = spec_file["settings"]
    training = settings["task"]["training"]
    sample_rate = settings["data"]["sample_rate"]
    seconds = longest_clip_seconds(spec, sample_rate)
    if training.get("crop_seconds"):
        seconds = min(seconds, float(training["crop_seconds"]))
    encoder_config = read_json(Path(spec.encoder).parent / "config.json")
    speakers = sum(pd.read_csv(Path(npy).with_suffix(".tsv"), sep="\t", usecols=["speaker"])["speaker"].nunique()
                   for npy in spec.audio)
    return estimate_run_memory(encoder_config, seconds, training["batch_size"], training.get("precision", "fp32"),
                               max(2, speakers), sample_rate)


MEMORY_OVERRIDE = "CLTM_GPU_MEMORY_GIB"  # the device's memory in GiB where nvidia-smi cannot tell (a MIG instance)
EXCLUSIVE = ("Exclusive_Process", "Exclusive_Thread")


@dataclass(frozen=True)
class GpuFacts:
    """What nvidia-smi says of the GPU this job sees: total memory, compute mode, MIG."""

    memory_bytes: int
    compute_mode: str = "Default"  # Default | Exclusive_Process | Prohibited (nvidia-smi's words)
    mig: bool = False  # MIG mode on, or the job sees a MIG instance (CUDA_VISIBLE_DEVICES=MIG-...)


def visible_gpu() -> str | None:
    """The first GPU of CUDA_VISIBLE_DEVICES as nvidia-smi's -i takes it (an index or a GPU-UUID), else None."""
    first = os.environ.get("CUDA_VISIBLE_DEVICES", "").split(",")[0].strip()
    return first if first.isdigit() or first.startswith("GPU-") else None


def parse_gpu_query(text: str, visible: str | None = None) -> GpuFacts | None:
    """The first line of `nvidia-smi --query-gpu=memory.total,compute_mode[,mig.mode.current] --format=csv,
    noheader,nounits` as GpuFacts (None if unreadable)."""
    lines = [line for line in text.splitlines() if line.strip()]
    if not lines:
        return None
    fields = [f.strip() for f in lines[0].split(",")]
    try:
        memory = int(float(fields[0])) * 1024 ** 2
    except (ValueError, IndexError):
        return None
    mode = fields[1] if len(fields) > 1 and fields[1] and not fields[1].startswith("[") else "Default"
    mig = (len(fields) > 2 and fields[2] == "Enabled") or (visible or "").startswith("MIG-")
    return GpuFacts(memory, mode, mig)


def gpu_facts() -> GpuFacts | None:
    """GpuFacts of the first visible GPU from nvidia-smi, without initialising CUDA in this process; None
    without nvidia-smi or a GPU."""
    if not shutil.which("nvidia-smi"):
        return None
    visible = visible_gpu()
    select = ["-i", visible] if visible else []
    raw = os.environ.get("CUDA_VISIBLE_DEVICES", "").split(",")[0].strip()
    for fields in ("memory.total,compute_mode,mig.mode.current", "memory.total,compute_mode"):  # old drivers: no MIG field
        try:
            out = subprocess.run(["nvidia-smi", *select, f"--query-gpu={fields}", "--format=csv,noheader,nounits"],
                                 capture_output=True, text=True, timeout=30, check=True).stdout
        except (OSError, subprocess.SubprocessError):
            continue
        facts = parse_gpu_query(out, raw)
        if facts:
            return facts
    return None


def mps_running() -> bool:
    """Whether an NVIDIA MPS control daemon serves this job (its pipe directory holds `control`)."""
    return (Path(os.environ.get("CUDA_MPS_PIPE_DIRECTORY", "/tmp/nvidia-mps")) / "control").exists()


def memory_override() -> int | None:
    """CLTM_GPU_MEMORY_GIB in bytes, when set."""
    value = os.environ.get(MEMORY_OVERRIDE, "").strip()
    if not value:
        return None
    try:
        return int(float(value) * GIB)
    except ValueError:
        raise PackingError(f"{MEMORY_OVERRIDE}={value!r} is not a number of GiB (e.g. {MEMORY_OVERRIDE}=40)") from None


def sharing_problem(k: int, facts: GpuFacts | None, *, mps: bool = False, memory_given: bool = False) -> str | None:
    """Why k runs cannot share this GPU, or None: exclusive-process compute mode without MPS (one CUDA
    context per GPU: the second process fails), a GPU in Prohibited mode, or MIG (nvidia-smi's memory
    is the whole GPU's, so the memory check would pass packings that do not fit the instance) without
    CLTM_GPU_MEMORY_GIB."""
    if facts is None or k <= 1:
        return None
    if facts.compute_mode == "Prohibited":
        return ("the GPU's compute mode is Prohibited (no CUDA process may use it); ask your site for a GPU in "
                "Default compute mode")
    if facts.compute_mode in EXCLUSIVE and not mps:
        return (f"runs_per_gpu {k}: the GPU is in {facts.compute_mode} compute mode, which admits one CUDA process, "
                f"so {k} packed runs cannot share it; set runs_per_gpu to 1 (e.g. --set-resources "
                "finetune:runs_per_gpu=1), or start NVIDIA MPS on the node (`nvidia-cuda-mps-control -d`), or ask "
                "for Default compute mode (`nvidia-smi -c DEFAULT`, as root; some sites offer it as a SLURM "
                "constraint or gres flag)")
    if facts.mig and not memory_given:
        return (f"runs_per_gpu {k}: this job sees a MIG instance of the GPU, and nvidia-smi reports the whole "
                f"GPU's {facts.memory_bytes / GIB:.0f} GiB, not the instance's, so the packing cannot be checked "
                f"against memory; set runs_per_gpu to 1, or give the instance's memory: "
                f"{MEMORY_OVERRIDE}=<GiB> (nvidia-smi -L names the profile, e.g. 3g.40gb = 40 GiB)")
    return None


def check_gpu_sharing(k: int, facts: GpuFacts | None = None) -> None:
    """PackingError naming runs_per_gpu where k > 1 runs cannot share this GPU (`sharing_problem`)."""
    problem = sharing_problem(k, facts if facts is not None else gpu_facts(), mps=mps_running(),
                              memory_given=memory_override() is not None)
    if problem:
        raise PackingError(problem)


def device_memory_bytes() -> int | None:
    """Total memory of the first visible GPU: CLTM_GPU_MEMORY_GIB where set, else nvidia-smi's figure
    (without initialising CUDA in this process); None without a GPU."""
    given = memory_override()
    if given is not None:
        return given
    facts = gpu_facts()
    return facts.memory_bytes if facts else None


# ---------------------------------------------------------------- execution


def _child(conn, specs: list[RunSpec]) -> None:
    """A packed worker: execute the runs the parent names, one at a time, until told to stop."""
    shared = RunInputs(specs)  # settings, audio and the encoder read once per process, as execute_runs does
    while True:
        i = conn.recv()
        if i is None:
            break
        try:
            record = execute_run(specs[i], log=lambda m, i=i: conn.send(("log", i, m)), shared=shared)
            conn.send(("done", i, record))
        except Exception as err:  # noqa: BLE001 - the parent decides
            conn.send(("failed", i, _portable(err), traceback.format_exc()))
    conn.close()


def _portable(err: BaseException) -> BaseException:
    """The exception itself when it survives pickling, else a RuntimeError with its text."""
    try:
        pickle.loads(pickle.dumps(err))
        return err
    except Exception:  # noqa: BLE001
        return RuntimeError(f"{type(err).__name__}: {err}")


def run_devices(specs: list[RunSpec]) -> set[str]:
    """The config key `device` of the runs (their settings files; unreadable: 'auto')."""
    devices = set()
    for path in {s.settings for s in specs}:
        try:
            devices.add(str(read_json(path).get("device", "auto")))
        except (OSError, ValueError):
            devices.add("auto")
    return devices


def start_method(devices, threads: int) -> str:
    """'fork' (fast: imports and memory shared) where it is safe, else 'spawn'. Unsafe: whenever the runs
    may use CUDA (`cltm.model.device.may_use_cuda`: device cuda, or auto with a CUDA build of torch), since
    a process that has asked whether CUDA is there (`torch.cuda.is_available()`, which `pick_device` calls)
    or initialised it cannot fork a child that uses it ("Cannot re-initialize CUDA in forked subprocess");
    and for children that use several CPU threads (GNU OpenMP hangs in a forked child when both the parent
    and the child use a thread pool; the warm worker keeps its parent at one thread for the same reason)."""
    if ("fork" not in mp.get_all_start_methods() or torch.cuda.is_initialized()
            or any(may_use_cuda(d) for d in devices) or threads > 1):
        return "spawn"
    return "fork"


def start_context(specs: list[RunSpec]):
    """The multiprocessing context of `start_method` for these runs."""
    return mp.get_context(start_method(run_devices(specs), max(s.threads for s in specs)))


def shared_threads(specs: list[RunSpec], k: int) -> list[RunSpec]:
    """On a GPU the job's CPU threads are shared out among its k packed children (`threads // k` each, at
    least 1): k children of 4 threads each on a 4-CPU job would oversubscribe it. On the CPU each run keeps
    its threads, so that its numbers are those it gets alone (a CPU's reductions depend on the thread count)."""
    if k <= 1 or not any(may_use_cuda(d) for d in run_devices(specs)):
        return specs
    return [RunSpec.from_dict({**s.to_dict(), "threads": max(1, s.threads // k)}) for s in specs]


def execute_packed(specs: list[RunSpec], k: int, *, log=print, keep_going: bool = False,
                   device_bytes: int | None = None, start_method: str | None = None) -> list[dict | None]:
    """Execute `specs` with up to `k` runs at a time on this node's device; return their records in the
    order of `specs` (None: failed), as `cltm.grid.execute.execute_runs` does, which k = 1 is.

    Each run executes in one of k child processes exactly as in execute_runs (its result is the run's
    alone). Log lines are prefixed with the run's name. Without `keep_going` the first failure is raised
    once the runs in flight have finished (no new run starts); with it every run is tried and
    `cltm.grid.execute.RunFailures` lists the failed ones. With `device_bytes` (e.g. `device_memory_bytes()`),
    `check_packing` first refuses a k whose runs cannot fit. `start_method` ('fork', 'spawn') overrides
    the choice of `start_context`.
    """

    specs = list(specs)
    if k < 1:
        raise PackingError(f"runs_per_gpu is {k}; it must be at least 1")
    if device_bytes:  # a GPU: can k processes share it, and do k runs fit in its memory?
        check_gpu_sharing(min(k, max(1, len(specs))))
        check_packing(min(k, max(1, len(specs))), max(estimate_spec_memory(s) for s in specs), device_bytes)
    if k == 1 or len(specs) <= 1:
        return execute_runs(specs, log=log, keep_going=keep_going)
    specs = shared_threads(specs, min(k, len(specs)))
    outputs = Counter(p for s in specs for p in (s.run, s.scores, s.checkpoint) if p)
    clash = sorted(p for p, n in outputs.items() if n > 1)
    if clash:
        raise ValueError(f"several runs of the list write {', '.join(clash[:3])}")

    ctx = mp.get_context(start_method) if start_method else start_context(specs)
    workers = []
    for _ in range(min(k, len(specs))):
        parent, child = ctx.Pipe()
        proc = ctx.Process(target=_child, args=(child, specs), daemon=True)
        proc.start()
        child.close()
        workers.append({"proc": proc, "conn": parent, "run": None})
    records: list[dict | None] = [None] * len(specs)
    failures: list[tuple[int, BaseException]] = []
    queue = list(range(len(specs)))
    started = 0

    def hand_out(w) -> None:
        nonlocal started
        if queue and (keep_going or not failures):
            w["run"] = queue.pop(0)
            started += 1
            log(f"run {started}/{len(specs)} (of {len(workers)} in flight at most): {specs[w['run']].name}")
            w["conn"].send(w["run"])
        else:
            w["run"] = None

    try:
        for w in workers:
            hand_out(w)
        while any(w["run"] is not None for w in workers):
            busy = [w for w in workers if w["run"] is not None]
            ready = wait([w["conn"] for w in busy] + [w["proc"].sentinel for w in busy])
            for w in busy:
                if w["conn"] in ready or w["conn"].poll():
                    try:
                        message = w["conn"].recv()
                    except EOFError:
                        message = None
                    if message is None:
                        _lost(w, specs, failures, log)
                        continue
                    kind, i = message[0], message[1]
                    if kind == "log":
                        log(f"[{specs[i].name}] {message[2]}")
                    elif kind == "done":
                        records[i] = message[2]
                        hand_out(w)
                    else:
                        err, trace = message[2], message[3]
                        log(f"run {specs[i].name} failed: {type(err).__name__}: {err}")
                        if not keep_going:
                            log(trace.rstrip())
                        failures.append((i, err))
                        hand_out(w)
                elif w["proc"].sentinel in ready and not w["conn"].poll():
                    _lost(w, specs, failures, log)
    finally:
        for w in workers:
            try:
                w["conn"].send(None)
            except OSError:
                pass
        for w in workers:
            w["proc"].join(timeout=60)
            if w["proc"].is_alive():
                w["proc"].terminate()
            w["conn"].close()
    if keep_going:  # every worker process died: what was left never ran
        failures += [(i, RuntimeError("not run: every packed worker process had exited")) for i in queue]
    if failures and not keep_going:
        raise failures[0][1]
    if failures:
        raise RunFailures([(specs[i], err) for i, err in sorted(failures, key=lambda f: f[0])])
    return records


def _lost(w, specs, failures, log) -> None:
    """A child died during a run (killed, out of memory): the run failed; that child takes no more."""
    i = w["run"]
    err = RuntimeError(f"the process of run {specs[i].name} exited with code {w['proc'].exitcode} "
                       "(killed, or out of host memory?)")
    log(f"run {specs[i].name} failed: {err}")
    failures.append((i, err))
    w["run"] = None

