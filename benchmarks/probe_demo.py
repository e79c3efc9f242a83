"""Benchmark: probe mode on the embedded demo, and its agreement with fine-tuning. Prints figures.

    .venv/bin/python benchmarks/probe_demo.py [--cores 2]

Copies the checkout into a temporary directory and runs the demo with config/demo_probe.yaml (the
fine-tuning tasks and a probe twin of each). Then it removes the probe side (features, probe runs and
their kept copies, probe matrices) and times, separately, (1) the features of every language and (2)
the probe matrices from those features (every probe run, assembly), as Snakemake runs them. It prints
both times, the runs and the comparison of each probe matrix with its twin's (results/compare/).
SYNTHETIC DEMO DATA: the agreement figures say nothing about real languages.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from demo_time import copy_checkout

PROBES = {"gender_probe": "gender", "speaker_probe": "speaker"}


def snakemake(work: Path, *args: str) -> float:
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "snakemake", *args, "--configfile", "config/demo_probe.yaml"],
                          cwd=work, capture_output=True, text=True, env={**os.environ, "CLTM_WORKER_IDLE": "60"})
    if proc.returncode != 0:
        sys.exit(f"snakemake {' '.join(args)} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--cores", type=int, default=2)
    args = ap.parse_args()
    cores = ["--cores", str(args.cores)]
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        copy_checkout(work)
        whole = snakemake(work, *cores)
        for path in [work / "results/features"] + [work / "results" / p for p in PROBES] + [
                work / "results/.cltm/kept" / p for p in PROBES]:
            shutil.rmtree(path, ignore_errors=True)
        langs = json.loads((work / "results/gender/summary.json").read_text())["languages"]
        # the features' path holds the encoder's digest: `--until features` runs just them
        features_s = snakemake(work, *cores, "--until", "features")
        probe_s = snakemake(work, *cores, *[f"results/{p}/cltm.csv" for p in PROBES])
        runs = sum(json.loads((work / f"results/{p}/summary.json").read_text())["runs"] for p in PROBES)
        print(f"demo with probe twins ({len(langs)} languages), {os.cpu_count()} CPUs")
        print(f"  whole demo (fine-tuning + probe, from nothing): {whole:.0f} s")
        print(f"  features of {len(langs)} languages: {features_s:.1f} s")
        print(f"  probe matrices from the features: {probe_s:.1f} s for {runs} probe runs "
              f"({len(PROBES)} tasks)")
        for probe, twin in PROBES.items():
            snakemake(work, *cores, f"results/compare/{probe}_vs_{twin}.json")
            r = json.loads((work / f"results/compare/{probe}_vs_{twin}.json").read_text())["all_cells"]
            rc, c = r["relative_change"], r["cltm"]
            print(f"  {probe} vs {twin}: {r['cells']} cells; Spearman rho relative change {rc['rho']} "
                  f"{rc['ci95']}, CLTM {c['rho']} {c['ci95']}; same sign {r['sign_agreement']}")


if __name__ == "__main__":
    main()
