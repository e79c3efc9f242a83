"""benchmarks/gpu_check.sh, the script for a lent GPU machine, passes on the CPU (`--device cpu --quick`),
so that it never rots: the reduced workflow in fine-tune and probe modes, a packed cell, a run killed and
resumed, the benchmark, and one table. The script runs once per session (`gpu_check`): its benchmark, every
mode of benchmarks/gpu_throughput.py at reduced size, is what tests/test_gpu_throughput.py reads too."""

from __future__ import annotations

import json
import os
import subprocess

from conftest import ROOT


def test_gpu_check_passes_on_the_cpu(gpu_check):
    proc, out = gpu_check["proc"], gpu_check["out"]
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    table = (out / "gpu_check.md").read_text()
    assert table in proc.stdout
    result = json.loads((out / "gpu_check.json").read_text())
    checks = {r["check"]: r for r in result["checks"]}
    assert list(checks) == ["device", "workflow fine-tune", "workflow probe", "packed K=2", "resume", "host syncs",
                            "benchmark"]
    assert all(r["ok"] for r in checks.values()), checks
    assert "same numbers" in checks["packed K=2"]["detail"] and "resumed" in checks["resume"]["detail"]
    for name in checks:
        assert f"| {name} | PASS |" in table
    modes = [m["mode"] for m in result["benchmark"]["modes"]]
    assert modes == ["reference", "warm fp32", "bf16", "bf16 packed K=2"]
    for mode in modes:
        assert f"| {mode} |" in table
    assert "runs/GPU-h" in table and "MFU" in table and "peak memory" in table


def test_a_missing_module_is_named(tmp_path):
    """Without the modules cltm needs (and no wheels to install them from) the script stops, naming them."""
    env = {**os.environ, "PYTHON": "/usr/bin/python3" if os.path.exists("/usr/bin/python3") else "python3",
           "CLTM_WHEELS": ""}
    probe = subprocess.run([env["PYTHON"], "-c", "import torch"], capture_output=True)
    if probe.returncode == 0:
        import pytest

        pytest.skip("the system Python has torch")
    proc = subprocess.run(["bash", str(ROOT / "benchmarks" / "gpu_check.sh"), "--device", "cpu", "--quick"],
                          capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 2 and "lacks" in proc.stderr and "torch" in proc.stderr
