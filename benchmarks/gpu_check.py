"""The checks of `benchmarks/gpu_check.sh` (run that; it prepares the environment): a reduced workflow on
the device in fine-tune and probe modes, a cell packed at K = 2, one run killed mid-training and resumed,
then benchmarks/gpu_throughput.py; one table of everything.

    python benchmarks/gpu_check.py [--device cuda|cpu] [--quick] [--workdir DIR] [--keep]

Workflow (2 languages, 2 seeds, the demo corpus synthesised here, the tiny demo encoder shipped in
models/, `training.deterministic: true`, nothing downloaded):
  workflow fine-tune   `snakemake` makes the gender (and, without --quick, speaker) matrices; every run
                       JSON says it trained on the device and with deterministic kernels
  workflow probe       a probe twin of gender (mode: probe) makes its matrix from features on the device
  packed K=2           the cells trained 2 runs at a time (--set-resources finetune:runs_per_gpu=2), and
                       one packed run retrained alone (`snakemake -f` on its JSON) gives the same numbers
  resume               one run, its checkpoint saved every step, killed (SIGKILL) mid-training, run again:
                       it resumes from its checkpoint and its numbers equal an uninterrupted run's
Host syncs: benchmarks/host_syncs.py (a training step with transformers' time masking against
cltm.model.masking, an evaluation copied back per clip against once; syncs counted on CUDA).
Benchmark: benchmarks/gpu_throughput.py (a cell per mode; --quick: reduced sizes, K = 2 only); its printout in
the work folder's benchmark.log.

The table (markdown) goes to $OUT/gpu_check.md (and gpu_check.json) where $OUT is set, and to stdout.
Exit status 1 when a check failed.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

SAME = ("value", "metrics", "loss")  # what must be equal between two runs of the same inputs


def check_config(device: str, quick: bool) -> dict:
    fast = {"epochs": 4, "batch_size": 2, "crop_seconds": 0.5, "deterministic": True}
    return {
        "languages": ["en", "tr"],
        "corpus": {"type": "demo", "demo": {"n_speakers_per_gender": 4, "utterances_per_speaker": 6, "seed": 7,
                                            "plant": None}},  # no known answer: gender only
        "data": {"test": {"speakers_per_gender": 2, "min_clips_per_speaker": 4, "max_clips_per_speaker": 4}},
        "tasks": {
            "gender": {"n_per_class": 3, "max_clips_per_speaker": 3, "training": fast},
            "speaker": None if quick else {"n_utterances": 6, "max_utterances_per_speaker": 3,
                                           "max_positives_per_speaker": 4, "training": {**fast, "epochs": 2}},
            "gender_probe": {"subsets_from": "gender", "mode": "probe"},
        },
        "seeds": [1, 2],
        "device": device,
    }


class Checks:
    def __init__(self):
        self.rows: list[dict] = []

    def add(self, name: str, ok: bool, seconds: float, detail: str = "") -> bool:
        self.rows.append({"check": name, "ok": bool(ok), "seconds": round(seconds, 1), "detail": detail})
        print(f"[gpu_check] {name}: {'PASS' if ok else 'FAIL'} ({seconds:.0f} s) {detail}", flush=True)
        return ok


def snakemake(work: Path, *args: str, env: dict) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "snakemake", *args], cwd=work, env=env, capture_output=True,
                          text=True, timeout=1800)


def tail(proc: subprocess.CompletedProcess, n: int = 600) -> str:
    return " ".join((proc.stdout + proc.stderr)[-n:].split())


def same(a: dict, b: dict) -> bool:
    return all(a.get(k) == b.get(k) for k in SAME)


def checkout(work: Path) -> Path:
    """The workflow files of this clone (the package is imported from it: PYTHONPATH)."""
    work.mkdir(parents=True, exist_ok=True)
    shutil.copy(ROOT / "Snakefile", work)
    for folder in ("workflow", "config", "models", "profiles"):
        shutil.copytree(ROOT / folder, work / folder, dirs_exist_ok=True)
    return work


def workflow_checks(work: Path, device: str, quick: bool, env: dict, checks: Checks) -> None:
    cfg = check_config(device, quick)
    (work / "check.yaml").write_text(yaml.safe_dump(cfg))
    tasks = [t for t, c in cfg["tasks"].items() if c is not None]
    targets = [f"results/{t}/cltm.csv" for t in tasks]
    t0 = time.perf_counter()
    proc = snakemake(work, *targets, "--cores", "4", "--resources", "gpu=1", "--configfile", "check.yaml",
                     "--set-resources", "finetune:runs_per_gpu=2", env=env)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        checks.add("workflow fine-tune", False, wall, "snakemake failed: " + tail(proc))
        checks.add("workflow probe", False, 0, "not reached")
        checks.add("packed K=2", False, 0, "not reached")
        return
    finetune = [t for t in tasks if cfg["tasks"][t].get("mode") != "probe"]
    runs = [json.loads(p.read_text()) for t in finetune for p in sorted((work / f"results/{t}/runs").rglob("seed*.json"))]
    on_device = [r for r in runs if str(r.get("device", "")).startswith(device) and r.get("deterministic") is True]
    checks.add("workflow fine-tune", bool(runs) and len(on_device) == len(runs) and all(
        (work / f"results/{t}/cltm.csv").exists() for t in finetune), wall,
        f"{len(runs)} runs ({', '.join(finetune)}), {len(on_device)} on {device} with deterministic kernels")
    probes = [json.loads(p.read_text()) for p in sorted((work / "results/gender_probe/runs").rglob("seed*.json"))]
    checks.add("workflow probe", bool(probes) and all(r.get("mode") == "probe" for r in probes)
               and (work / "results/gender_probe/cltm.csv").exists(), 0,
               f"{len(probes)} probe runs on features extracted on {device}")
    logs = list((work / "results/logs/finetune/gender").rglob("*.log"))
    packed = [p for p in logs if "2 at a time" in p.read_text(errors="replace")]
    run = work / "results/gender/runs/en/dual/seed1.json"
    before = json.loads(run.read_text())
    t0 = time.perf_counter()
    again = snakemake(work, str(run.relative_to(work)), "-f", "--cores", "4", "--resources", "gpu=1",
                      "--configfile", "check.yaml", env=env)
    alone = json.loads(run.read_text()) if again.returncode == 0 else {}
    checks.add("packed K=2", bool(packed) and again.returncode == 0 and same(before, alone),
               time.perf_counter() - t0,
               f"{len(packed)} cells trained 2 at a time; gender en dual seed 1 retrained alone: "
               + ("same numbers" if alone and same(before, alone) else
                  f"DIFFERENT (packed {before.get('value')}, alone {alone.get('value')})" if alone else
                  "rerun failed: " + tail(again)))


def resume_check(work: Path, env: dict, checks: Checks) -> None:
    """One run killed after its checkpoint of step 3, run again: resumed, and equal to an uninterrupted run."""
    from cltm.grid.spec import RunSpec

    t0 = time.perf_counter()
    out = work / "resume"
    out.mkdir(exist_ok=True)
    spec = RunSpec.standard("gender", "en", "dual", 2, root=work)
    whole = RunSpec.from_dict({**spec.to_dict(), "run": str(out / "whole.json"), "scores": str(out / "whole.tsv"),
                               "checkpoint": None})
    cut = RunSpec.from_dict({**spec.to_dict(), "run": str(out / "cut.json"), "scores": str(out / "cut.tsv"),
                             "checkpoint": str(out / "cut.pt")})
    (out / "whole_spec.json").write_text(json.dumps([whole.to_dict()]))
    (out / "cut_spec.json").write_text(json.dumps([cut.to_dict()]))
    job_env = {**env, "CLTM_WORKER": "0", "CLTM_CHECKPOINT_SECONDS": "0.000001"}  # a checkpoint every step
    command = [sys.executable, "-m", "cltm.worker", "finetune-many", "--runs"]
    first = subprocess.run([*command, str(out / "whole_spec.json")], cwd=work, env=job_env, capture_output=True,
                           text=True, timeout=900)
    if first.returncode != 0:
        checks.add("resume", False, time.perf_counter() - t0, "the uninterrupted run failed: " + tail(first))
        return
    proc = subprocess.Popen([*command, str(out / "cut_spec.json")], cwd=work, env=job_env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    killed_at = None
    for line in proc.stdout:
        if "checkpoint saved at step 3" in line:
            os.kill(proc.pid, signal.SIGKILL)  # as a node failure or scancel -9: no clean-up
            killed_at = line.strip()
            break
    proc.stdout.close()
    proc.wait()
    stopped = killed_at is not None and not Path(cut.run).exists() and Path(cut.checkpoint).exists()
    second = subprocess.run([*command, str(out / "cut_spec.json")], cwd=work, env=job_env, capture_output=True,
                            text=True, timeout=900)
    resumed = "resumed from checkpoint at step" in second.stdout + second.stderr
    ok = stopped and resumed and second.returncode == 0 and Path(cut.run).exists() and same(
        json.loads(Path(whole.run).read_text()), json.loads(Path(cut.run).read_text()))
    detail = ("killed after the checkpoint of step 3, resumed" if stopped and resumed else
              "not killed mid-training (the run finished first?)" if not stopped else "did not resume: " + tail(second))
    if stopped and resumed and Path(cut.run).exists():
        detail += ("; same numbers as the uninterrupted run" if ok else "; numbers DIFFER from the uninterrupted run")
    checks.add("resume", ok, time.perf_counter() - t0, detail)


def sync_check(device: str, quick: bool, env: dict, work: Path, checks: Checks) -> dict | None:
    """benchmarks/host_syncs.py: the host syncs (counted on CUDA) and times of a training step with
    transformers' time masking against cltm.model.masking, and of an evaluation copied back per clip against
    once; passes when it ran and the project's paths sync less (on CUDA)."""
    t0 = time.perf_counter()
    args = ["--device", device, "--json", str(work / "syncs.json")] + (["--reduced", "--steps", "5", "--clips", "8"]
                                                                       if quick else [])
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "host_syncs.py"), *args], cwd=work, env=env,
                          capture_output=True, text=True, timeout=900)
    r = json.loads((work / "syncs.json").read_text()) if proc.returncode == 0 and (work / "syncs.json").exists() else None
    if r is None:
        checks.add("host syncs", False, time.perf_counter() - t0, "host_syncs.py failed: " + tail(proc))
        return None
    counted = r["train_step_syncs_cltm"] is not None
    ok = not counted or (r["train_step_syncs_cltm"] < r["train_step_syncs_transformers"]
                         and r["eval_syncs_one_copy"] < r["eval_syncs_per_clip_copy"])

    def n(key):
        return "n/a" if r[key] is None else r[key]

    checks.add("host syncs", ok, time.perf_counter() - t0,
               f"training step: {n('train_step_syncs_transformers')} -> {n('train_step_syncs_cltm')} syncs, "
               f"{1000 * r['train_step_s_transformers']:.1f} -> {1000 * r['train_step_s_cltm']:.1f} ms; evaluation "
               f"of {r['eval_clips']} clips: {n('eval_syncs_per_clip_copy')} -> {n('eval_syncs_one_copy')} syncs, "
               f"{r['eval_s_per_clip_copy']:.2f} -> {r['eval_s_one_copy']:.2f} s ({r['encoder']})")
    return r


def benchmark(device: str, quick: bool, env: dict, work: Path, checks: Checks) -> dict | None:
    t0 = time.perf_counter()
    args = ["--device", device, "--json", str(work / "benchmark.json")]
    if quick:
        args += ["--reduced", "--packs", "2"]
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "gpu_throughput.py"), *args], cwd=work, env=env,
                          capture_output=True, text=True, timeout=1800)
    (work / "benchmark.log").write_text(proc.stdout + proc.stderr)  # its own table, beside benchmark.json
    ok = proc.returncode == 0 and (work / "benchmark.json").exists()
    result = json.loads((work / "benchmark.json").read_text()) if ok else None
    checks.add("benchmark", ok, time.perf_counter() - t0,
               f"{len(result['modes'])} modes" if ok else "gpu_throughput.py failed: " + tail(proc))
    return result


def table(device: str, checks: Checks, bench: dict | None, environment: dict) -> str:
    lines = [f"# benchmarks/gpu_check.sh on {environment['device_name']} ({device})", "",
             f"torch {environment['torch']}, CUDA {environment['cuda']}, compute mode {environment['compute_mode']}, "
             f"MIG {environment['mig']}, MPS {environment['mps']}", "",
             "| check | result | s | detail |", "|---|---|---|---|"]
    lines += [f"| {r['check']} | {'PASS' if r['ok'] else 'FAIL'} | {r['seconds']:.0f} | {r['detail']} |"
              for r in checks.rows]
    if bench:
        sizes = bench["run_sizes"]
        lines += ["", f"Benchmark: a cell per mode, runs of {sizes['train_clips']} training clips "
                      f"({sizes['train_audio_s']:.0f} s) and {sizes['test_clips']} test clips "
                      f"({sizes['test_audio_s']:.0f} s), timed from start-up to the last record; * = extrapolated "
                      "to the paper preset's runs. Memory: " + bench["memory"] + ".", "",
                  "| mode | precision | deterministic | K | runs | cell s | runs/GPU-h | gender runs/GPU-h* | "
                  "speaker runs/GPU-h* | train audio s/s | peak memory GiB | MFU |",
                  "|---|---|---|---|---|---|---|---|---|---|---|---|"]
        for m in bench["modes"]:
            mfu = f"{100 * m['mfu']:.2f} %" if m["mfu"] is not None else f"n/a ({m['achieved_tflops']:.4f} TFLOP/s)"
            lines.append(f"| {m['mode']} | {m['precision']} | {m['deterministic']} | {m['k']} | {m['runs']} | "
                         f"{m['cell_s']:.1f} | {m['runs_per_gpu_hour']:.1f} | {m['runs_per_gpu_hour_gender_preset']:.1f} | "
                         f"{m['runs_per_gpu_hour_speaker_preset']:.2f} | {m['train_audio_s_per_s']:.1f} | "
                         f"{m['peak_memory_bytes'] / 1024 ** 3:.2f} | {mfu} |")
    return "\n".join(lines) + "\n"


def environment(device: str) -> dict:
    import torch

    from cltm.grid.pack import gpu_facts, mps_running

    facts = gpu_facts() if device == "cuda" else None
    cuda = torch.cuda.is_available()
    return {"torch": torch.__version__, "cuda": torch.version.cuda if cuda else "not available",
            "device_name": torch.cuda.get_device_name(0) if cuda and device == "cuda" else "cpu",
            "compute_mode": facts.compute_mode if facts else None, "mig": facts.mig if facts else None,
            "mps": mps_running() if device == "cuda" else None, "cuda_ok": cuda or device == "cpu"}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--device", choices=["cuda", "cpu"], default="cuda")
    ap.add_argument("--quick", action="store_true", help="gender only, reduced benchmark (CI on a CPU)")
    ap.add_argument("--workdir", type=Path, default=None, help="where to work (default: a temporary folder)")
    ap.add_argument("--keep", action="store_true", help="keep the work folder")
    args = ap.parse_args(argv)
    t_start = time.perf_counter()
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), os.environ.get("PYTHONPATH", "")]),
           "CLTM_WORKER_IDLE": "20", "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    work = args.workdir or Path(tempfile.mkdtemp(prefix="cltm-gpu-check-"))
    checks = Checks()
    env_facts = environment(args.device)
    bench = syncs = None
    try:
        if not checks.add("device", env_facts["cuda_ok"], 0,
                          f"{env_facts['device_name']}, torch {env_facts['torch']}, CUDA {env_facts['cuda']}"):
            raise SystemExit(1)
        checkout(work)
        workflow_checks(work, args.device, args.quick, env, checks)
        if (work / "results/gender/runs/en/dual/seed2.json").exists():
            resume_check(work, env, checks)
        else:
            checks.add("resume", False, 0, "not reached (the workflow did not finish)")
        syncs = sync_check(args.device, args.quick, env, work, checks)
        bench = benchmark(args.device, args.quick, env, work, checks)
    except SystemExit:
        pass
    finally:
        text = table(args.device, checks, bench, env_facts)
        text += f"\nTotal {time.perf_counter() - t_start:.0f} s.\n"
        out = os.environ.get("OUT")
        if out:
            Path(out).mkdir(parents=True, exist_ok=True)
            (Path(out) / "gpu_check.md").write_text(text)
            (Path(out) / "gpu_check.json").write_text(json.dumps(
                {"environment": env_facts, "checks": checks.rows, "benchmark": bench, "host_syncs": syncs}, indent=1))
        print(text)
        if not args.keep and args.workdir is None:
            shutil.rmtree(work, ignore_errors=True)
    return 0 if checks.rows and all(r["ok"] for r in checks.rows) else 1


if __name__ == "__main__":
    sys.exit(main())
