"""Runs packed K per device give each run its result alone; the memory estimate and the packing check."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cltm.grid.pack import CUDA_CONTEXT_BYTES, GIB, PackingError, SAFETY, check_packing, count_parameters, estimate_run_memory, estimate_spec_memory, execute_packed, longest_clip_seconds
from cltm.grid.spec import RunSpec
from test_runs import _result, _specs  # `experiment`: a session fixture of tests/conftest.py

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = ROOT / "models" / "tiny-hubert-synth"  # the demo's encoder: a real (tiny) HuBERT and its config.json
PACKED_RUNS = [("gender", "en", "single", 1), ("speaker", "en", "donor-tr", 3), ("gender", "tr", "dual", 2)]
HUBERT_BASE = {"hidden_size": 768, "num_hidden_layers": 12, "num_attention_heads": 12, "intermediate_size": 3072}


def test_runs_packed_two_at_a_time_equal_the_same_runs_one_after_another(experiment):
    """execute_packed(k=2): two child processes, three runs; run JSONs (all but timing) and scores are bit for
    bit those of execute_runs in this process; records come back in the order of the specs."""
    from cltm.grid.execute import execute_runs

    one_by_one = _specs(experiment, "sequential", PACKED_RUNS)
    packed = _specs(experiment, "packed", PACKED_RUNS)
    execute_runs(one_by_one, log=lambda m: None)
    lines = []
    records = execute_packed(packed, 2, log=lines.append)
    assert [(r["task"], r["target"], r["condition"], r["seed"]) for r in records] == PACKED_RUNS
    for a, b in zip(one_by_one, packed):
        rec_a, scores_a = _result(a)
        rec_b, scores_b = _result(b)
        assert rec_a == rec_b, a.name
        assert scores_a == scores_b, a.name
        assert not Path(b.checkpoint).exists()
    assert any(line.startswith("[gender tr dual seed 2]") for line in lines)  # the runs' own log lines


def test_a_failed_packed_run_leaves_the_others_done(experiment):
    from cltm.grid.execute import RunFailures

    good, bad, other = _specs(experiment, "packed-keep", [("gender", "en", "single", 1), ("gender", "tr", "single", 1),
                                                          ("gender", "en", "dual", 1)])
    bad = RunSpec.from_dict({**bad.to_dict(), "subsets": [str(experiment / "missing.json")]})
    with pytest.raises(RunFailures, match="1 run\\(s\\) failed: gender tr single seed 1"):
        execute_packed([bad, good, other], 2, log=lambda m: None, keep_going=True)
    assert Path(good.run).exists() and Path(other.run).exists() and not Path(bad.run).exists()
    with pytest.raises(FileNotFoundError):  # without keep_going: the run's own error
        execute_packed([bad, good], 2, log=lambda m: None)
    with pytest.raises(ValueError, match="several runs of the list write"):
        execute_packed([good, good], 2, log=lambda m: None)


def test_the_memory_estimate_grows_with_clip_length_batch_and_precision():
    base = estimate_run_memory(HUBERT_BASE, 5.0, 1, "fp32", 2)
    assert estimate_run_memory(HUBERT_BASE, 10.0, 1, "fp32", 2) > base
    assert estimate_run_memory(HUBERT_BASE, 5.0, 2, "fp32", 2) > base
    assert estimate_run_memory(HUBERT_BASE, 5.0, 1, "bf16", 2) < base  # half-size activations
    assert estimate_run_memory(HUBERT_BASE, 5.0, 1, "fp32", 2000) > base
    lengths = [estimate_run_memory(HUBERT_BASE, s, 1, "bf16", 2) for s in (1, 2, 4, 8, 12, 30)]
    batches = [estimate_run_memory(HUBERT_BASE, 4, b, "bf16", 2) for b in (1, 2, 4, 8)]
    assert lengths == sorted(set(lengths)) and batches == sorted(set(batches))
    # HuBERT base: about 95M parameters (mHuBERT-147's 94.7M)
    assert 94e6 < count_parameters(HUBERT_BASE, 2) < 96e6
    with pytest.raises(ValueError, match="unknown precision"):
        estimate_run_memory(HUBERT_BASE, 5.0, 1, "fp16", 2)


def test_the_documented_hubert_base_figures_are_the_estimate_s():
    """The docs (README, "Running fast on GPUs": "For HuBERT base the estimate is 3.0 / 4.2 GiB per run in
    fp32 for a 5 s / 12 s clip") state the estimate's output for the paper protocol's run: HuBERT base,
    batch 1, fp32, a gender head (2 classes). Exact to the one decimal the docs give."""
    assert round(estimate_run_memory(HUBERT_BASE, 5.0, 1, "fp32", 2) / GIB, 1) == 3.0
    assert round(estimate_run_memory(HUBERT_BASE, 12.0, 1, "fp32", 2) / GIB, 1) == 4.2


# ---------------------------------------------------------------- the estimate against a measured peak


@pytest.fixture
def one_cpu_thread():
    """One intra-op thread for a measurement (and for the machine's other jobs); the process's thread count
    and oneDNN switch (which `fine_tune` sets on CPU) are put back afterwards."""
    import torch

    threads, mkldnn = torch.get_num_threads(), torch.backends.mkldnn.enabled
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)
        torch.backends.mkldnn.enabled = mkldnn


def measured_peak_bytes(fn) -> int:
    """The most bytes of CPU tensors alive at once while `fn()` runs, beyond those alive before it: the CPU
    allocator's own allocation and free events, replayed in time order, as `torch.profiler` records them with
    profile_memory=True (the raw events: `prof.events()` folds an operator's allocations into one net figure
    and would hide the peaks inside an operator)."""
    from torch.autograd import DeviceType
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        fn()
    events = sorted((e for e in prof.profiler.kineto_results.events()
                     if e.name() == "[memory]" and e.device_type() == DeviceType.CPU), key=lambda e: e.start_ns())
    assert len(events) > 100, "the profiler recorded no allocations"
    live = peak = 0
    for event in events:
        live += event.nbytes()  # > 0 an allocation, < 0 a free
        peak = max(peak, live)
    return peak


HUBERT_DROPOUT = {"attention_dropout": 0.1, "hidden_dropout": 0.1, "activation_dropout": 0.1}  # transformers' defaults


def measured_training_peak(seconds: float, batch_size: int, precision: str, overrides: dict) -> tuple[int, dict]:
    """Peak CPU bytes of training the shipped demo encoder (its config `overrides`, LayerDrop off) + a 2-class
    head with `cltm.train.loop.fine_tune` (AdamW, the demo config's gender settings) on clips cropped to
    `seconds`, two steps (the second holds weights, gradients, AdamW's moments and activations at once);
    the encoder's config.json, with the overrides, with it."""
    import numpy as np
    import torch
    import yaml

    from cltm.model.encoder import build_encoder
    from cltm.model.heads import Classifier
    from cltm.train.loop import fine_tune

    overrides = {"layerdrop": 0.0, **overrides}
    config = {**json.loads((SHIPPED / "config.json").read_text()), **overrides}
    training = yaml.safe_load((ROOT / "config" / "config.yaml").read_text())["tasks"]["gender"]["training"]
    training = {**training, "epochs": 1, "batch_size": batch_size, "crop_seconds": seconds, "precision": precision}
    model = Classifier(build_encoder(str(SHIPPED), overrides=overrides), 2)
    weights = sum(t.numel() * t.element_size() for t in model.state_dict().values())  # alive before: in the peak
    rng = np.random.default_rng(0)
    waves = [0.1 * rng.normal(size=int(seconds * 16000) + 800 * i).astype(np.float32) for i in range(2 * batch_size)]
    labels = np.arange(2 * batch_size) % 2
    peak = measured_peak_bytes(lambda: fine_tune(model, waves, labels, training, seed=1, device=torch.device("cpu"),
                                                 log=lambda m: None))
    return weights + peak, config


def estimate_without_margins(config: dict, seconds: float, batch_size: int, precision: str) -> float:
    """estimate_run_memory less what only a GPU has or what is margin: its CUDA context and its SAFETY factor."""
    return estimate_run_memory(config, seconds, batch_size, precision, 2) / SAFETY - CUDA_CONTEXT_BYTES


MEASURE_TOLERANCE = 0.10  # measured: the estimate is 0.98-1.01 of the peak (torch 2.13, CPU)
SIZES = [(1.0, 1), (4.0, 2), (12.0, 1)]  # seconds, batch size: from weights and AdamW state to attention weighing most


@pytest.mark.parametrize("seconds, batch_size", SIZES)
def test_the_memory_estimate_matches_a_peak_measured_on_cpu(one_cpu_thread, seconds, batch_size):
    """fp32 with HuBERT's dropouts (transformers' defaults; attention then runs unfused and keeps its T x T
    scores, probabilities and dropout, as the estimate counts): weights, gradients, AdamW state and
    activations as the estimate counts them, against the peak the CPU allocator reaches while a real (tiny)
    HuBERT trains, within MEASURE_TOLERANCE."""
    measured, config = measured_training_peak(seconds, batch_size, "fp32", HUBERT_DROPOUT)
    estimate = estimate_without_margins(config, seconds, batch_size, "fp32")
    assert abs(estimate / measured - 1) <= MEASURE_TOLERANCE, (
        f"{seconds} s x {batch_size}: estimated {estimate / 2 ** 20:.2f} MiB, measured {measured / 2 ** 20:.2f} MiB")


@pytest.mark.parametrize("seconds, batch_size", SIZES)
def test_the_memory_estimate_bounds_fused_attention(one_cpu_thread, seconds, batch_size):
    """Without attention dropout (the shipped demo encoder's config) PyTorch's fused attention keeps no T x T
    tensors: the estimate is then an upper bound, by as much as attention weighed (4x at 12 s here)."""
    measured, config = measured_training_peak(seconds, batch_size, "fp32", {})
    assert config["attention_dropout"] == 0.0
    estimate = estimate_without_margins(config, seconds, batch_size, "fp32")
    assert measured <= estimate, f"estimated {estimate / 2 ** 20:.2f} MiB, measured {measured / 2 ** 20:.2f} MiB"


@pytest.mark.xfail(strict=True, reason="bf16 autocast keeps float32 outputs of layer norm, group norm and softmax "
                                       "(and bf16 copies of them for the matrix products): with unfused attention "
                                       "the measured peak is about 0.9 of fp32's where the estimate assumes half-size "
                                       "activations; the estimate is 0.56 of the peak for a 12 s clip, 0.70 with "
                                       "SAFETY. Fused attention (no dropout) hides it under the T x T overcount")
def test_the_bf16_memory_estimate_matches_a_peak_measured_on_cpu(one_cpu_thread):
    measured, config = measured_training_peak(12.0, 1, "bf16", HUBERT_DROPOUT)
    estimate = estimate_without_margins(config, 12.0, 1, "bf16")
    assert abs(estimate / measured - 1) <= MEASURE_TOLERANCE, (
        f"bf16: estimated {estimate / 2 ** 20:.2f} MiB, measured {measured / 2 ** 20:.2f} MiB")


def test_check_packing_names_runs_per_gpu_and_the_numbers():
    gib = 1024 ** 3
    assert check_packing(4, 10 * gib, 141 * gib) == 14
    with pytest.raises(PackingError, match=r"runs_per_gpu 8: 8 runs x 20\.0 GiB .* 160\.0 GiB, more than the "
                                           r"device's 80\.0 GiB; at most 4 fit: set runs_per_gpu to 4 or lower"):
        check_packing(8, 20 * gib, 80 * gib)
    with pytest.raises(PackingError, match="not even one run fits: set runs_per_gpu to 1"):
        check_packing(2, 100 * gib, 80 * gib)
    with pytest.raises(PackingError, match="runs_per_gpu"):
        execute_packed([], 0)


def test_a_run_s_estimate_reads_its_longest_clip_and_settings(experiment):
    import pandas as pd

    spec = _specs(experiment, "estimate", [("speaker", "en", "donor-tr", 3)])[0]
    longest = max(pd.read_csv(experiment / f"results/audio/{lang}.tsv", sep="\t")["n_samples"].max()
                  for lang in ("en", "tr")) / 16000
    assert longest_clip_seconds(spec) == longest
    settings = json.loads(Path(spec.settings).read_text())["settings"]["task"]["training"]
    encoder = json.loads((experiment / "results/encoder/config.json").read_text())
    crop = min(longest, settings["crop_seconds"])
    speakers = sum(pd.read_csv(experiment / f"results/audio/{lang}.tsv", sep="\t")["speaker"].nunique()
                   for lang in ("en", "tr"))
    est = estimate_spec_memory(spec)
    # the inputs it reads: the crop (shorter than the longest clip here), the task's batch size, fp32 (the
    # settings name no precision), a head as wide as the run's languages have speakers; the estimate itself
    # is checked against measured peaks above
    assert crop < longest and "precision" not in settings and speakers > 2
    assert est == estimate_run_memory(encoder, crop, settings["batch_size"], "fp32", speakers)
    with pytest.raises(PackingError, match="runs_per_gpu 2"):
        execute_packed([spec, spec], 2, device_bytes=est)


def test_spawned_packed_processes_give_the_same_results(experiment):
    """Children that use several CPU threads are spawned (a forked one could hang in GNU OpenMP), as are
    the children of a parent that initialised CUDA; spawned children give the results of execute_runs too."""
    from cltm.grid.pack import start_context
    from cltm.grid.execute import execute_runs

    runs = [("gender", "en", "single", 4), ("gender", "tr", "single", 4)]
    two_threads = [RunSpec.from_dict({**s.to_dict(), "threads": 2}) for s in _specs(experiment, "x", runs)]
    assert start_context(two_threads).get_start_method() == "spawn"
    assert start_context(_specs(experiment, "x", runs)).get_start_method() == "fork"
    one_by_one, packed = _specs(experiment, "sequential-spawn", runs), _specs(experiment, "packed-spawn", runs)
    execute_runs(one_by_one, log=lambda m: None)
    execute_packed(packed, 2, log=lambda m: None, start_method="spawn")
    for a, b in zip(one_by_one, packed):
        assert _result(a) == _result(b), a.name
