"""Probe mode at paper scale: every probe run of config/paper.yaml's grid on synthetic features of its sizes.

Sizes (config/paper.yaml): 16 languages; gender N = 60 per class (single 120 clips, dual / donor 240);
speaker verification N = 1000 utterances (dual / donor 2000) from speakers of 20 utterances; test sets of
20 speakers per gender x 20 clips (800 clips, trials capped at 200 positives per speaker, negatives as many);
13 layers x 768 dims (mHuBERT-147), float16 stores of mean + std; 10 seeds: 2 x 16 x 17 x 10 = 5,440 runs.

    python benchmarks/probe_scale.py                 # all 5,440 runs
    python benchmarks/probe_scale.py --quick         # 4 languages, 2 seeds, smaller N
    python benchmarks/probe_scale.py --sample 200    # an even sample of the grid's runs, extrapolated

Runs go to `--workers` processes (forked after the feature blocks are loaded, so they share them) with
`--threads` torch threads each: one thread per run is both the fastest for these small heads and what
makes a run bit-for-bit the same wherever it runs. Prints runs per second, peak memory, the total, and
how the time per run grows with N and the grid with the number of languages.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import resource
import sys
import time
from pathlib import Path

import numpy as np
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from machine import cpu_model  # noqa: E402 - benchmarks/machine.py

from cltm.demo.features import synthetic_language  # noqa: E402
from cltm.paths import conditions_of  # noqa: E402
from cltm.train.probe import run_probe  # noqa: E402

PAPER_LANGUAGES = yaml.safe_load((ROOT / "config" / "paper.yaml").read_text())["languages"]

_STATE: dict = {}


def build(out: Path, languages, *, n_per_class, n_utterances, test_speakers_per_gender, test_clips, layers, dim,
          log=print):
    features, selections = {}, {"gender": {}, "speaker": {}}
    for i, lang in enumerate(languages):
        t = time.perf_counter()
        features[lang], sel = synthetic_language(
            lang, out, n_per_class=n_per_class, n_utterances=n_utterances, utterances_per_speaker=20,
            test_speakers_per_gender=test_speakers_per_gender, test_clips_per_speaker=test_clips,
            max_positives_per_speaker=200, layers=layers, dim=dim, signal=0.15, seed=i)
        for task in sel:
            selections[task][lang] = sel[task]
        log(f"  {lang}: {len(features[lang])} rows x {layers} x {2 * dim} float16 ({time.perf_counter() - t:.1f} s)")
    return features, selections


def warm(features, selections, tasks):
    """Load every block the grid reads (float32), once, before the workers fork."""
    from cltm.tasks import make_task
    from cltm.train.probe import probe_settings

    for task, cfg in tasks.items():
        s = probe_settings(make_task(task, cfg).kind, cfg)
        for lang, sel in selections[task].items():
            for name in ("single", "extra"):
                features[lang].block(sel[name], stats=tuple(s["stats"]), normalize=s["normalize"])
            trim = cfg.get("trim_db") if task == "speaker" else None
            features[lang].block(sel["test"], trim_db=trim, stats=tuple(s["stats"]), normalize=s["normalize"])


def _work(args):
    import torch

    worker, runs, threads = args
    torch.set_num_threads(threads)
    features, selections, tasks = _STATE["features"], _STATE["selections"], _STATE["tasks"]
    out = []
    for i, (task, target, condition, seed) in enumerate(runs):
        t, c = time.perf_counter(), time.process_time()
        record, _ = run_probe(task, tasks[task], target=target, condition=condition, seed=seed, features=features,
                              selections=selections[task], log=lambda s: None)
        out.append((task, target, condition, seed, time.perf_counter() - t, record["value"],
                    record["sizes"]["train_clips"], time.process_time() - c))
        if worker == 0 and (i + 1) % 250 == 0:
            print(f"  worker 0: {i + 1}/{len(runs)} runs", flush=True)
    return out, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run_grid(runs, workers, threads):
    if workers <= 1:
        return _work((0, runs, threads))[0], None
    chunks = [runs[i::workers] for i in range(workers)]
    with mp.get_context("fork").Pool(workers) as pool:
        parts = pool.map(_work, [(i, c, threads) for i, c in enumerate(chunks)])
    return [r for p, _ in parts for r in p], max(m for _, m in parts)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="4 languages, 2 seeds, N / 4, test sets / 4")
    ap.add_argument("--languages", type=int, default=None)
    ap.add_argument("--seeds", type=int, default=None)
    ap.add_argument("--sample", type=int, default=0, help="run an even sample of this many runs and extrapolate")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--no-scaling", action="store_true", help="skip the time-per-run vs N table")
    ap.add_argument("--out", default="/tmp/cltm_probe_scale")
    a = ap.parse_args(argv)

    paper = yaml.safe_load((ROOT / "config" / "paper.yaml").read_text())
    tasks = {t: {**paper["tasks"][t], "mode": "probe"} for t in ("gender", "speaker")}
    n_lang = a.languages or (4 if a.quick else 16)
    n_seeds = a.seeds or (2 if a.quick else len(paper["seeds"]))
    div = 4 if a.quick else 1
    sizes = dict(n_per_class=tasks["gender"]["n_per_class"] // div,
                 n_utterances=tasks["speaker"]["n_utterances"] // div,
                 test_speakers_per_gender=paper["data"]["test"]["speakers_per_gender"] // div,
                 test_clips=paper["data"]["test"]["max_clips_per_speaker"], layers=13, dim=768)
    languages = PAPER_LANGUAGES[:n_lang]
    print(f"machine: {os.cpu_count()} CPUs ({cpu_model()}); torch threads per worker {a.threads}, workers {a.workers}")
    print(f"sizes: {n_lang} languages, {n_seeds} seeds, {sizes}")
    t0 = time.perf_counter()
    features, selections = build(Path(a.out), languages, **sizes)
    t_build = time.perf_counter() - t0
    warm(features, selections, tasks)
    t_warm = time.perf_counter() - t0 - t_build
    print(f"features written in {t_build:.1f} s, blocks loaded in {t_warm:.1f} s; "
          f"RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB")
    _STATE.update(features=features, selections=selections, tasks=tasks)

    grid = [(task, target, cond, seed) for task in tasks for target in languages
            for cond in conditions_of(target, languages) for seed in range(1, n_seeds + 1)]
    runs = grid if not a.sample or a.sample >= len(grid) else [grid[i] for i in
                                                                 np.linspace(0, len(grid) - 1, a.sample).astype(int)]
    t1 = time.perf_counter()
    results, child_rss = run_grid(runs, a.workers, a.threads)
    wall = time.perf_counter() - t1
    per = {}
    for task, _, cond, _, secs, value, n, cpu_s in results:
        key = (task, "single" if cond == "single" else "dual/donor")
        per.setdefault(key, []).append((secs, value, n, cpu_s))
    print(f"\n{len(results)} runs in {wall:.1f} s wall: {len(results) / wall:.2f} runs/s "
          f"({a.workers} workers x {a.threads} threads)")
    print(f"peak RSS: parent {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB"
          + (f", largest worker {child_rss:.0f} MiB (the feature blocks are shared by fork)" if child_rss else ""))
    cpu_total = sum(r[-1] for r in results)
    print(f"CPU time of the runs: {cpu_total:.1f} s, i.e. {cpu_total / a.workers / 60:.1f} min on {a.workers} "
          f"uncontended cores (wall above includes other processes' share of the CPUs)")
    print("\ntask     condition    runs  N     wall s/run  CPU s/run  value (mean)")
    for (task, kind), rows in sorted(per.items()):
        secs, values, ns, cpus = zip(*rows)
        print(f"{task:8s} {kind:11s} {len(rows):5d} {int(np.mean(ns)):5d} {np.mean(secs):11.3f} {np.mean(cpus):10.3f} "
              f"{np.mean(values):13.3f}")
    if len(runs) < len(grid):
        # the grid's time from the sample's per-run means of each (task, condition kind), and the measured rate
        count = {}
        for task, _, cond, _ in grid:
            key = (task, "single" if cond == "single" else "dual/donor")
            count[key] = count.get(key, 0) + 1
        cpu = sum(count[k] * np.mean([r[0] for r in per[k]]) for k in count)
        print(f"\nEXTRAPOLATED from {len(runs)} sampled runs: all {len(grid)} runs ~ {cpu / a.workers / 60:.1f} min "
              f"wall with {a.workers} workers ({cpu / 60:.1f} min of run time)")
    else:
        print(f"\nMEASURED: all {len(grid)} runs in {wall / 60:.1f} min wall")

    # how the grid grows with the number of languages L: 2 tasks x L targets x (L + 1) conditions x seeds runs,
    # each of a cost set by its N, not by L (projected from this run's per-run times)
    mean_run = {task: np.mean([r[0] for k, rows in per.items() if k[0] == task for r in rows]) for task in tasks}
    print("\ngrid vs languages (PROJECTED from the measured per-run means, workers as above)")
    print("L    runs      minutes")
    for L in (4, 8, 16, 32, 54):
        n = L * (L + 1) * n_seeds
        print(f"{L:<4d} {2 * n:<9d} {n * sum(mean_run.values()) / a.workers / 60:8.1f}")

    if not a.no_scaling:
        scaling(Path(a.out) / "scaling", tasks, a.threads, quick=a.quick)
    return 0


def scaling(out: Path, tasks, threads: int, quick: bool):
    """Time per run (MEASURED, one process, `threads` threads) against N, single condition, 3 seeds."""
    import torch

    torch.set_num_threads(threads)
    print("\ntime per run vs N (MEASURED, single condition, mean of 3 seeds)")
    print("task     N      s/run")
    grid = {"gender": (15, 30, 60, 120) if not quick else (15, 30), "speaker": (250, 500, 1000, 2000) if not quick
            else (125, 250)}
    for task, ns in grid.items():
        for n in ns:
            kw = dict(n_per_class=n, n_utterances=40) if task == "gender" else dict(n_per_class=2, n_utterances=n)
            store, sel = synthetic_language("xx", out / f"{task}{n}", utterances_per_speaker=20,
                                            test_speakers_per_gender=20 if not quick else 5, test_clips_per_speaker=20,
                                            layers=13, dim=768, signal=0.15, seed=0, **kw)
            times = []
            for seed in (1, 2, 3):
                t = time.perf_counter()
                run_probe(task, tasks[task], target="xx", condition="single", seed=seed, features={"xx": store},
                          selections={"xx": sel[task]}, log=lambda s: None)
                times.append(time.perf_counter() - t)
            print(f"{task:8s} {len(sel[task]['single']):<6d} {np.mean(times[1:]):.3f}")
            store.clear()


if __name__ == "__main__":
    raise SystemExit(main())
