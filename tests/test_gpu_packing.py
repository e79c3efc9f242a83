"""The GPU side of packing, tested on the CPU: the start method of the packed children (never fork where
the runs may use CUDA), the job's CPU threads shared among them, and GPUs that cannot be shared
(exclusive-process compute mode, MIG), read from nvidia-smi without initialising CUDA."""

from __future__ import annotations

import os
import stat

import pytest
import torch

from cltm.grid import pack
from cltm.grid.pack import (GpuFacts, PackingError, check_gpu_sharing, device_memory_bytes, execute_packed, gpu_facts,
                            parse_gpu_query, run_devices, shared_threads, sharing_problem, start_context, start_method)
from cltm.grid.spec import RunSpec
from cltm.io import write_json
from cltm.model.device import may_use_cuda


def spec(tmp_path, device: str, seed: int = 1, threads: int = 1) -> RunSpec:
    settings = tmp_path / f"settings-{device}.json"
    write_json(settings, {"settings": {}, "digest": "x", "device": device, "synthetic": True})
    return RunSpec(task="gender", target="en", condition="single", seed=seed, settings=str(settings),
                   encoder=str(tmp_path / "model.safetensors"), subsets=(str(tmp_path / "en.json"),),
                   audio=(str(tmp_path / "en.npy"),), run=str(tmp_path / f"{device}{seed}.json"),
                   scores=str(tmp_path / f"{device}{seed}.tsv"), threads=threads)


@pytest.fixture
def cuda_build(monkeypatch):
    """Pretend this torch was built with CUDA (the CPU build answers False without asking a driver)."""
    monkeypatch.setattr(torch.backends.cuda, "is_built", lambda: True)


def test_children_are_never_forked_where_the_runs_may_use_cuda(tmp_path, cuda_build):
    """`pick_device` calls torch.cuda.is_available(), after which a forked child cannot use CUDA; so the
    choice depends on the runs' device setting, not on whether this process has initialised CUDA."""
    assert not torch.cuda.is_initialized()
    assert may_use_cuda("cuda") and may_use_cuda("auto") and not may_use_cuda("cpu")
    assert start_method({"cuda"}, 1) == "spawn"
    assert start_method({"auto"}, 1) == "spawn"
    assert start_method({"cpu"}, 1) == "fork"
    assert start_method({"cpu"}, 2) == "spawn"  # a forked child with a thread pool can hang (GNU OpenMP)
    assert start_method({"cpu", "auto"}, 1) == "spawn"
    assert run_devices([spec(tmp_path, "auto"), spec(tmp_path, "cpu", 2)]) == {"auto", "cpu"}
    assert start_context([spec(tmp_path, "auto")]).get_start_method() == "spawn"
    assert start_context([spec(tmp_path, "cuda")]).get_start_method() == "spawn"
    assert start_context([spec(tmp_path, "cpu")]).get_start_method() == "fork"


def test_without_a_cuda_build_auto_is_the_cpu_and_forks(tmp_path, monkeypatch):
    monkeypatch.setattr(torch.backends.cuda, "is_built", lambda: False)
    assert not may_use_cuda("auto")
    assert start_context([spec(tmp_path, "auto")]).get_start_method() == "fork"
    assert start_method({"auto"}, 1) == "fork"


def test_a_gpu_job_s_threads_are_shared_among_its_packed_children(tmp_path, cuda_build):
    four = [spec(tmp_path, "auto", seed, threads=4) for seed in (1, 2, 3, 4)]
    assert [s.threads for s in shared_threads(four, 4)] == [1, 1, 1, 1]
    assert [s.threads for s in shared_threads(four, 2)] == [2, 2, 2, 2]
    assert [s.threads for s in shared_threads(four, 3)] == [1, 1, 1, 1]
    assert shared_threads(four, 1) == four and [s.threads for s in shared_threads(four, 1)] == [4] * 4
    # on the CPU a run keeps its threads: its numbers are those it gets alone
    cpu = [spec(tmp_path, "cpu", seed, threads=4) for seed in (1, 2)]
    assert [s.threads for s in shared_threads(cpu, 2)] == [4, 4]


def test_gpus_that_cannot_be_shared_stop_a_packing_naming_runs_per_gpu():
    exclusive = GpuFacts(80 * 1024 ** 3, "Exclusive_Process")
    problem = sharing_problem(2, exclusive)
    assert "runs_per_gpu 2" in problem and "Exclusive_Process" in problem and "runs_per_gpu to 1" in problem
    assert sharing_problem(1, exclusive) is None  # one run: one context
    assert sharing_problem(4, exclusive, mps=True) is None  # MPS serves the k processes through one context
    mig = GpuFacts(80 * 1024 ** 3, "Default", mig=True)
    problem = sharing_problem(2, mig)
    assert "runs_per_gpu 2" in problem and "MIG" in problem and "CLTM_GPU_MEMORY_GIB" in problem
    assert sharing_problem(2, mig, memory_given=True) is None
    assert sharing_problem(8, GpuFacts(80 * 1024 ** 3)) is None and sharing_problem(8, None) is None
    assert "Prohibited" in sharing_problem(2, GpuFacts(80 * 1024 ** 3, "Prohibited"))


def test_nvidia_smi_s_answer_is_read():
    assert parse_gpu_query("81559, Default, Disabled\n") == GpuFacts(81559 * 1024 ** 2, "Default", False)
    assert parse_gpu_query("143771, Exclusive_Process, [N/A]") == GpuFacts(143771 * 1024 ** 2, "Exclusive_Process")
    assert parse_gpu_query("81559, Default, Enabled").mig
    assert parse_gpu_query("81559, Default", visible="MIG-4f1c2a").mig  # a MIG instance by its UUID
    assert parse_gpu_query("") is None and parse_gpu_query("No devices were found") is None


@pytest.fixture
def fake_nvidia_smi(tmp_path, monkeypatch):
    """An nvidia-smi on PATH that answers `line` and records its arguments."""
    folder = tmp_path / "bin"
    folder.mkdir()

    def install(line: str):
        script = folder / "nvidia-smi"
        script.write_text(f"#!/bin/sh\necho \"$@\" >> {tmp_path / 'args'}\necho '{line}'\n")
        script.chmod(script.stat().st_mode | stat.S_IEXEC)
        monkeypatch.setenv("PATH", f"{folder}{os.pathsep}{os.environ['PATH']}")
        return tmp_path / "args"

    return install


def test_an_exclusive_gpu_stops_a_packed_cell_before_any_run(tmp_path, fake_nvidia_smi, monkeypatch):
    args = fake_nvidia_smi("81559, Exclusive_Process, Disabled")
    monkeypatch.delenv("CUDA_MPS_PIPE_DIRECTORY", raising=False)
    monkeypatch.setattr(pack, "mps_running", lambda: False)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "3")
    assert gpu_facts() == GpuFacts(81559 * 1024 ** 2, "Exclusive_Process")
    assert "-i 3" in args.read_text()  # the job's GPU, not the node's first
    assert device_memory_bytes() == 81559 * 1024 ** 2
    specs = [spec(tmp_path, "cuda", seed) for seed in (1, 2)]
    with pytest.raises(PackingError, match="runs_per_gpu 2: the GPU is in Exclusive_Process compute mode"):
        execute_packed(specs, 2, log=lambda m: None, device_bytes=device_memory_bytes())
    assert not any(os.path.exists(s.run) for s in specs)
    check_gpu_sharing(1)  # one run at a time is fine


def test_a_mig_instance_needs_its_memory_given(tmp_path, fake_nvidia_smi, monkeypatch):
    fake_nvidia_smi("81559, Default, Enabled")
    monkeypatch.delenv("CLTM_GPU_MEMORY_GIB", raising=False)
    with pytest.raises(PackingError, match="runs_per_gpu 2: this job sees a MIG instance"):
        check_gpu_sharing(2)
    monkeypatch.setenv("CLTM_GPU_MEMORY_GIB", "40")
    check_gpu_sharing(2)
    assert device_memory_bytes() == 40 * 1024 ** 3
    monkeypatch.setenv("CLTM_GPU_MEMORY_GIB", "forty")
    with pytest.raises(PackingError, match="CLTM_GPU_MEMORY_GIB='forty' is not a number"):
        device_memory_bytes()
