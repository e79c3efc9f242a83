"""benchmarks/gpu_throughput.py runs on the CPU at reduced size: every mode a whole cell with the job's own
code, and its figures. The benchmark is the one benchmarks/gpu_check.sh --quick runs (the session's
`gpu_check`, tests/conftest.py): the same script, `--device cpu --reduced --packs 2`, its printout kept in
the check's work folder (benchmark.log)."""

from __future__ import annotations

import importlib.util
import json
import math

from conftest import ROOT

SCRIPT = ROOT / "benchmarks" / "gpu_throughput.py"
MODES = ["reference", "warm fp32", "bf16", "bf16 packed K=2"]
POSITIVE = ["cell_s", "runs_per_gpu_hour", "train_s_per_run", "eval_s_per_run", "train_audio_s_per_s",
            "runs_per_gpu_hour_gender_preset", "runs_per_gpu_hour_speaker_preset", "peak_memory_bytes",
            "achieved_tflops"]


def _module():
    spec = importlib.util.spec_from_file_location("gpu_throughput", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_reduced_benchmark_times_a_cell_per_mode(gpu_check):
    out, printout = gpu_check["work"] / "benchmark.json", (gpu_check["work"] / "benchmark.log").read_text()
    assert out.exists(), gpu_check["proc"].stdout[-3000:] + printout[-3000:]
    lines = printout.strip().splitlines()
    printed = json.loads(lines[-1].removeprefix("BENCHMARK_JSON "))
    assert json.loads(out.read_text()) == printed
    assert printed["device"] == "cpu" and printed["reduced"] and printed["extrapolated"]
    assert "EXTRAPOLATED" in printout and "compute mode" in printout and printed["memory"] == "peak RSS"
    assert printed["preset"] == {"gender_train_clips": 240, "speaker_train_clips": 2000, "test_clips": 800,
                                 "epochs": 1, "batch_size": 1, "seeds": 10}
    assert [m["mode"] for m in printed["modes"]] == MODES
    modes = {m["mode"]: m for m in printed["modes"]}
    assert modes["reference"]["runs"] == 1 and all(modes[m]["runs"] == 2 for m in MODES[1:])
    assert modes["reference"]["deterministic"] and modes["warm fp32"]["deterministic"]  # the paper preset's
    assert modes["bf16"]["precision"] == "bf16" and modes["bf16 packed K=2"]["k"] == 2
    for mode in printed["modes"]:
        for key in POSITIVE:
            assert math.isfinite(mode[key]) and mode[key] > 0, (mode["mode"], key, mode[key])
        assert mode["mfu"] is None  # no peak figure for a CPU
        assert all(0 <= v <= 1 for v in mode["metrics"])
        assert any(line.startswith(mode["mode"] + " ") for line in lines)  # a row of the table
    # the same runs give the same numbers whichever way the cell ran (bit for bit on the CPU)
    assert modes["bf16"]["metrics"] == modes["bf16 packed K=2"]["metrics"]
    assert modes["warm fp32"]["metrics"][:1] == modes["reference"]["metrics"]


def test_flops_and_peak_table():
    bench = _module()
    one, two = (bench.forward_flops(bench.HUBERT_BASE, s * 16000) for s in (1, 2))
    # HuBERT base: about 95M parameters, ~50 frames a second: of the order of 2 x 95M x 50 = 9.5 GFLOPs per
    # second of audio, plus the convolutional front end
    assert 5e9 < one < 2e10 and 1.9 < two / one < 2.2
    conv, mm = bench.forward_flops_split(bench.HUBERT_BASE, 16000)
    assert conv + mm == one and conv > 0 and mm > conv
    _, dropped = bench.forward_flops_split(bench.HUBERT_BASE, 16000, layer_share=0.9)  # LayerDrop 0.1
    assert 0.85 * mm < dropped < mm
    assert bench.HUBERT_BASE["layerdrop"] == 0.1 and bench.HUBERT_BASE["mask_time_prob"] == 0.05
    assert bench.PEAK_OF["fp32"] == ("tf32", "fp32")  # cuDNN convolutions in TF32, matrix products in FP32
    assert bench.device_peaks("NVIDIA H200")[0] == "H200"
    assert bench.device_peaks("NVIDIA H100 PCIe")[0] == "H100 PCIe"
    assert bench.device_peaks("NVIDIA H100 80GB HBM3")[1]["bf16"] == 989.0
    assert bench.device_peaks("NVIDIA A100-SXM4-80GB")[0] == "A100"
    assert bench.device_peaks("cpu") == (None, None)
    lengths = bench.clip_lengths(5000, 0)
    mean = sum(lengths) / len(lengths) / 16000
    assert 4.5 < mean < 5.5 and min(lengths) >= 16000 - 384 and max(lengths) <= 12 * 16000 + 384
    assert all(n % 384 == 0 for n in lengths)
