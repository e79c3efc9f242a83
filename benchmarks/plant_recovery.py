"""Benchmark: how often the CLTM recovers the planted known answer, over data seeds, in both modes.

    .venv/bin/python benchmarks/plant_recovery.py [--seeds 0 1 2 3 4] [--cores 2] [--null] [--keep DIR]

Copies the checkout (as benchmarks/demo_time.py does) and runs the known answer alone
(`--configfile config/demo_planted.yaml`: the planted task fine-tuned and its probe twin) once per value of
`data.seed` (the test split and the training subsets; the corpus and its plant stay the same), in one
working directory, so the corpus, its audio and the encoder are made once. After each, it reads
results/<task>/known_answer.json and prints one line per task and seed: Mantel rho and exact p, adjacent
cells positive, opposite cells negative, flagged rows, the verdict, the donor-spread F; then the recovery
rate per mode and the wall time of each seed. `--null` runs the null control instead
(config/demo_planted_null.yaml: every language the same rule), as tests/test_planted_workflow.py does: the
planted task probed with 30 seeds (a minute a seed, where fine-tuning takes ten), and counts how often Mantel
rejects. `--finetune-seeds K` fine-tunes with seeds 1..K instead of the config's.
SYNTHETIC corpus with a planted effect: figures of the instrument, not of languages.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
from demo_time import copy_checkout  # noqa: E402
from machine import machine  # noqa: E402

TASKS = ("planted", "planted_probe")
NULL_AS_PROBE = {"tasks": {"planted": {"mode": "probe", "seeds": list(range(1, 31))}, "planted_probe": None}}
"""The null control as tests/test_planted_workflow.py runs it: the planted task probed with 30 seeds."""


def line(task: str, seed: int, ka: dict) -> str:
    mantel, adj, opp, v = ka["mantel"], ka["adjacent"], ka["opposite"], ka["verdict"]
    pooled = (ka.get("donor_spread") or {}).get("pooled") or {}
    f = f"donor-spread F {pooled['f']:.2f}" if isinstance(pooled.get("f"), (int, float)) else ""
    return (f"{task:14s} data.seed {seed}: rho {mantel['rho']:+.2f}, Mantel p {mantel['p_value']:.4f}; adjacent > 0 "
            f"{adj['positive']}/{adj['cells']}; opposite < 0 {opp['negative']}/{opp['cells']}; flagged "
            f"{len(ka['flagged_rows'])}; {v['headline']}; {f}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4], help="values of data.seed")
    ap.add_argument("--cores", type=int, default=2)
    ap.add_argument("--null", action="store_true", help="the null control instead of the plant")
    ap.add_argument("--keep", type=Path, help="run in this directory and keep it")
    ap.add_argument("--finetune-seeds", type=int, metavar="K", help="fine-tune with seeds 1..K (not with --null)")
    args = ap.parse_args()
    print(f"machine: {machine()}", flush=True)
    work = args.keep or Path(tempfile.mkdtemp(prefix="cltm-plant-"))
    work.mkdir(parents=True, exist_ok=True)
    copy_checkout(work)
    configs = ["--configfile", "config/demo_planted.yaml"]
    tasks = TASKS
    if args.null:
        (work / "null_as_probe.yaml").write_text(yaml.safe_dump(NULL_AS_PROBE))
        configs += ["config/demo_planted_null.yaml", "null_as_probe.yaml"]
        tasks = ("planted",)
    elif args.finetune_seeds:
        (work / "finetune_seeds.yaml").write_text(
            yaml.safe_dump({"tasks": {"planted": {"seeds": list(range(1, args.finetune_seeds + 1))}}}))
        configs += ["finetune_seeds.yaml"]
    rows, walls = [], {}
    for seed in args.seeds:
        (work / "seed.yaml").write_text(f"data:\n  seed: {seed}\n")
        start = time.time()
        proc = subprocess.run([sys.executable, "-m", "snakemake", "--cores", str(args.cores), *configs, "seed.yaml"],
                              cwd=work, capture_output=True, text=True,
                              # the copied package, so that edits to the checkout meanwhile do not enter the runs
                              env={**os.environ, "CLTM_WORKER_IDLE": "30", "PYTHONPATH": str(work / "src")})
        walls[seed] = time.time() - start
        if proc.returncode != 0:
            print(proc.stdout[-2000:], proc.stderr[-4000:], file=sys.stderr)
            return 1
        for task in tasks:
            ka = json.loads((work / "results" / task / "known_answer.json").read_text())
            rows.append((task, seed, ka))
            print(line(task, seed, ka), flush=True)
        print(f"data.seed {seed}: {walls[seed]:.0f} s", flush=True)
    print()
    for task in tasks:
        mine = [ka for t, _, ka in rows if t == task]
        passed = sum(ka["verdict"]["passed"] for ka in mine)
        rejected = sum(ka["mantel"]["p_value"] <= 0.01 for ka in mine)
        what = "null control: Mantel rejected" if args.null else "verdict PASS"
        print(f"{task}: {what} in {rejected if args.null else passed} of {len(mine)} data seeds; Mantel p <= 0.01 in "
              f"{rejected} of {len(mine)}")
    print(f"wall time per data seed: {', '.join(f'{s}: {w:.0f} s' for s, w in walls.items())}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
