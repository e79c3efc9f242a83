"""Probe mode at paper scale: every probe run of config/paper.yaml's grid on synthetic features of its sizes,
trained the way the workflow trains them, MEASURED end to end.

Sizes (config/paper.yaml): 16 languages; gender N = 60 per class (single 120 clips, dual / donor 240);
speaker verification N = 1000 utterances (dual / donor 2000) from speakers of 20 utterances; test sets of
20 speakers per gender x 20 clips (800 clips, trials capped at 200 positives per speaker, negatives as many;
speaker test clips trimmed at trim_db and embedded at each of tta_speeds); 13 layers x 768 dims
(mHuBERT-147), float16 stores of mean + std; 10 seeds: 2 x 16 x 17 x 10 = 5,440 runs.

    python benchmarks/probe_scale.py                 # all 5,440 runs, and 160 of them one by one
    python benchmarks/probe_scale.py --quick         # 4 languages, 2 seeds, N / 4
    python benchmarks/probe_scale.py --sample 200    # an even sample of the grid's runs, extrapolated

How the grid runs:

- **batched, a cell per call**, as the workflow (`cltm.grid.job.execute_cell`): each cell (task, target,
  condition) is one `cltm.train.probe_batch.run_probes` call over its seeds;
- **target by target, in one worker process**: the (task, target) units in turn, speaker first; a unit's
  target blocks (training `single`, test set at each test-time speed) are loaded once and shared by its 17
  cells, which train `--workers` at a time, each on its own thread (`--threads` torch threads: one per
  run is both the fastest for these small heads and what makes a run bit-for-bit the same wherever it
  runs; torch releases the GIL in its kernels); a cell's other block (a donor's single, the target's
  extra) is loaded for it, a donor's dropped after it, the target's at the end of the unit
  (`FeatureStore.clear`, which also lets go of the mapped pages read). So the process holds one target's
  blocks, and per thread one donor block and one batch's training copies (`run_probes`' `batch_bytes`:
  by default the workflow's, `cltm.train.probe_batch.BATCH_BYTES`, split among the cells trained at once;
  `--batch-mb`), whatever the number of languages. No run's numbers depend on any of this;
- **features memory-mapped**: each language's float16 store opened once (`FeatureStore`), its pages let go
  as soon as a block is converted;
- the parent never imports torch: the stores are written by `--workers` build processes (a language each),
  the grid runs in a fresh forked process, with new threads (and scratch buffers) for each unit.

And the old path, `cltm.train.probe.run_probe` one run at a time (its blocks loaded first, untimed), on an
even sample of the grid's runs (`--compare`, default 160): each unit's sampled runs right after its cells,
as many at a time, so that both paths meet the same load from other processes. Each sampled run's time
against the batched time per run of its own cell (paired, weighted to the grid's mix of tasks and
conditions: the ratio is the figure to trust on a shared machine; the one-by-one segments are not in the
grid's wall time), and its record checked against the grid's (max abs difference of `value`; metrics,
loss and layer weights compared too).

Memory: the peak resident set (ru_maxrss) of the parent and of each process it starts, and the largest
sum of those alive together, an upper bound (a page shared by processes counts in each: the parent's
pages inherited by fork, the libraries); and, sampled every half second, the peak of all the processes'
summed proportional set size (PSS: a shared page split among its sharers) and summed RSS. Also prints the
wall time, runs per second, CPU seconds per run, the load average, and how the time per run grows with N
(`--no-scaling` skips it).
"""

from __future__ import annotations

import argparse
import ctypes
import multiprocessing as mp
import os
import resource
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from pathlib import Path

import numpy as np
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from machine import cpu_model  # noqa: E402 - benchmarks/machine.py

from cltm.paths import DUAL, SINGLE, conditions_of, donor_of  # noqa: E402 - no torch in the parent

PAPER_LANGUAGES = yaml.safe_load((ROOT / "config" / "paper.yaml").read_text())["languages"]
TASKS = ("speaker", "gender")  # the order of the units

_STATE: dict = {}


def _mib(kib: float) -> float:
    return kib / 1024


def _maxrss() -> float:
    """This process's peak resident set, MiB (Linux reports KiB)."""
    return _mib(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)


# --- worker side (torch is imported here, never in the parent) ---------------------------------------------

def _build(args):
    """Write one language's store; (language, its selections, rows, seconds, pid, peak RSS MiB)."""
    i, lang, out, sizes, tta_speeds = args
    from cltm.demo.features import synthetic_language

    t = time.perf_counter()
    store, sel = synthetic_language(lang, out, utterances_per_speaker=20, max_positives_per_speaker=200,
                                    signal=0.15, tta_speeds=tta_speeds, seed=i, **sizes)
    return lang, sel, len(store), time.perf_counter() - t, os.getpid(), _maxrss()


def _default_batch_bytes() -> int:
    from cltm.train.probe_batch import BATCH_BYTES

    return BATCH_BYTES


def _init(out, languages, selections, tasks, threads):
    """A worker: torch's threads, its one-time imports, and each language's store opened once
    (memory-mapped, nothing read)."""
    import torch

    import cltm.tasks.metrics  # noqa: F401 - the scoring's imports (scikit-learn: seconds), before any timing
    from cltm.train.features import FeatureStore

    torch.set_num_threads(threads)
    # the first AdamW of a process imports torch._dynamo (seconds): paid here, before any timing
    weight = torch.zeros(1, requires_grad=True)
    optimiser = torch.optim.AdamW([weight], fused=True)
    weight.sum().backward()
    optimiser.step()
    features = {lang: FeatureStore(Path(out) / f"{lang}.npy", Path(out) / f"{lang}.tsv") for lang in languages}
    _STATE.update(features=features, selections=selections, tasks=tasks)


def _blocks(task: str, target: str, condition: str, *, training: bool = True, test: bool = True) -> None:
    """Load (into the stores' caches) the blocks a run of this cell reads, as `run_probe` asks for them."""
    from cltm.tasks import make_task
    from cltm.train.probe import probe_settings, training_blocks

    features, selections, cfg = _STATE["features"], _STATE["selections"][task], _STATE["tasks"][task]
    plugin = make_task(task, cfg)
    s = probe_settings(plugin.kind, cfg)
    kw = dict(stats=tuple(s["stats"]), normalize=s["normalize"])
    if training:
        for lang, ids in training_blocks(target, condition, selections):
            features[lang].block(ids, **kw)
            features[lang].release()  # the pages just read: the block holds the values
    if test:
        store, ids = features[target], selections[target]["test"]
        for speed in plugin.tta_speeds if plugin.kind == "speaker_verification" else [1.0]:
            store.block(ids, speed=speed, **kw, **({"trim_db": cfg.get("trim_db")}
                                                   if plugin.kind == "speaker_verification" else {}))
            store.release()


def _trim() -> None:
    """Hand the C heap's free memory back to the OS (glibc's malloc_trim; elsewhere nothing): what the
    dropped blocks' neighbours left free would otherwise stay in the worker's resident set."""
    try:
        ctypes.CDLL(None).malloc_trim(0)
    except (OSError, AttributeError):
        pass


def _summary(record: dict) -> tuple:
    return (record["value"], record["metrics"], record["loss"], record["layer_weights"],
            record["sizes"]["train_clips"])


def _cell(task: str, target: str, cell: tuple, *, mode: str, batch_bytes: int | None) -> tuple:
    """One cell (condition, seeds) on the calling thread, its target's blocks loaded: batched (one
    `run_probes` call, as `cltm.grid.job.execute_cell`) or one run at a time (`run_probe`). Its other block
    (a donor's single, the target's extra) is loaded first, untimed, and a donor's dropped after. Returns
    (per run (key, summary, wall s, CPU s of its thread), per cell (task, kind, runs, wall s, CPU s),
    seconds loading)."""
    from cltm.train.probe import run_probe
    from cltm.train.probe_batch import ProbeRun, run_probes

    features, selections, cfg = _STATE["features"], _STATE["selections"][task], _STATE["tasks"][task]
    condition, seeds = cell
    quiet = lambda s: None  # noqa: E731
    t = time.perf_counter()
    if condition != SINGLE:
        _blocks(task, target, condition, test=False)
    load_s = time.perf_counter() - t
    runs_out, cells_out = [], []
    if mode == "batched":
        t, c = time.perf_counter(), time.thread_time()
        results = run_probes([ProbeRun(task, cfg, target, condition, seed, features, selections) for seed in seeds],
                             log=quiet, **({} if batch_bytes is None else {"batch_bytes": batch_bytes}))
        wall, cpu = time.perf_counter() - t, time.thread_time() - c
        for seed, result in zip(seeds, results):
            if isinstance(result, BaseException):
                raise RuntimeError(f"{task} {target} {condition} seed {seed}") from result
            runs_out.append(((task, target, condition, seed), _summary(result[0]), wall / len(seeds),
                             cpu / len(seeds)))
        cells_out.append((task, kind_of(task, condition)[1], len(seeds), wall, cpu))
    else:
        for seed in seeds:
            t, c = time.perf_counter(), time.thread_time()
            record, _ = run_probe(task, cfg, target=target, condition=condition, seed=seed, features=features,
                                  selections=selections, log=quiet)
            runs_out.append(((task, target, condition, seed), _summary(record), time.perf_counter() - t,
                             time.thread_time() - c))
    if donor_of(condition) is not None:
        features[donor_of(condition)].clear()  # the next cells read other donors
    _trim()
    return runs_out, cells_out, load_s


def _grid(args):
    """The worker process: the (task, target) units in turn. A unit's target blocks (training single, test
    set) are loaded once; its cells train batched, `workers` at a time, each on its own thread; then its
    sampled runs train one by one (`run_probe`), as many at a time, right after, so that both paths meet
    the same load from other processes; then its blocks are dropped. Each segment has its own threads,
    whose scratch buffers go with them. Returns (batched: per run, per cell; one by one: per run; the
    grid's wall s (its units' loading and batched segments), the one-by-one segments' wall s, seconds
    loading, peak RSS MiB)."""
    units, workers, batch_bytes = args
    features = _STATE["features"]
    batched, cells_out, alone, load_s, grid_s, alone_s = [], [], [], 0.0, 0.0, 0.0
    for i, (task, target, cells, sampled) in enumerate(units, 1):
        t = time.perf_counter()
        _blocks(task, target, SINGLE)  # read by every cell of the target
        load_s += time.perf_counter() - t
        with ThreadPoolExecutor(workers) as pool:
            for r, c, seconds in pool.map(partial(_cell, task, target, mode="batched", batch_bytes=batch_bytes),
                                          cells):
                batched += r
                cells_out += c
                load_s += seconds
        grid_s += time.perf_counter() - t
        if sampled:
            t = time.perf_counter()
            with ThreadPoolExecutor(workers) as pool:
                for r, _, _ in pool.map(partial(_cell, task, target, mode="alone", batch_bytes=None), sampled):
                    alone += r
            alone_s += time.perf_counter() - t
        t = time.perf_counter()
        features[target].clear()
        _trim()
        grid_s += time.perf_counter() - t
        if i % 4 == 0 or i == len(units):
            print(f"  {i}/{len(units)} targets: {len(batched)} runs batched, {len(alone)} one by one; peak RSS "
                  f"{_maxrss():.0f} MiB", flush=True)
    return batched, cells_out, alone, grid_s, alone_s, load_s, _maxrss()


def _scaling(args):
    """Time per run (MEASURED, one process, `threads` threads) against N, single condition, 3 seeds."""
    out, tasks, threads, quick = args
    import torch

    from cltm.demo.features import synthetic_language
    from cltm.train.probe import run_probe

    torch.set_num_threads(threads)
    rows = []
    grid = {"gender": (15, 30, 60, 120) if not quick else (15, 30),
            "speaker": (250, 500, 1000, 2000) if not quick else (125, 250)}
    for task, ns in grid.items():
        for n in ns:
            kw = dict(n_per_class=n, n_utterances=40) if task == "gender" else dict(n_per_class=2, n_utterances=n)
            store, sel = synthetic_language("xx", Path(out) / f"{task}{n}", utterances_per_speaker=20,
                                            test_speakers_per_gender=20 if not quick else 5, test_clips_per_speaker=20,
                                            layers=13, dim=768, signal=0.15, seed=0,
                                            tta_speeds=tasks[task].get("tta_speeds") or (), **kw)
            times = []
            for seed in (1, 2, 3):
                t = time.perf_counter()
                run_probe(task, tasks[task], target="xx", condition="single", seed=seed, features={"xx": store},
                          selections={"xx": sel[task]}, log=lambda s: None)
                times.append(time.perf_counter() - t)
            rows.append((task, len(sel[task]["single"]), float(np.mean(times[1:]))))
            store.clear()
    return rows, _maxrss()


# --- parent side -------------------------------------------------------------------------------------------

def _children(pid: int) -> list[int]:
    """The live child processes of `pid` (Linux: /proc)."""
    out = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                out.append(int(entry))
    return out


def _rollup(pid: int) -> tuple[int, int]:
    """(RSS, PSS) of a process in KiB, from /proc/<pid>/smaps_rollup; (0, 0) if it is gone."""
    try:
        fields = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines()[1:])
        return int(fields["Rss"].split()[0]), int(fields["Pss"].split()[0])
    except (OSError, KeyError, ValueError):
        return 0, 0


class Monitor(threading.Thread):
    """Samples, every `every` seconds, the summed RSS and PSS of this process and its children (their
    peaks, MiB) and the 1-minute load average (its min, mean and max)."""

    def __init__(self, every: float = 0.5):
        super().__init__(daemon=True)
        self.every, self.stop = every, threading.Event()
        self.peak_rss = self.peak_pss = 0.0
        self.load: list[float] = []
        self.available = Path("/proc/self/smaps_rollup").exists()

    def run(self) -> None:
        me, last_load = os.getpid(), 0.0
        while not self.stop.wait(self.every):
            if self.available:
                rss, pss = map(sum, zip(*(_rollup(p) for p in [me, *_children(me)])))
                self.peak_rss, self.peak_pss = max(self.peak_rss, _mib(rss)), max(self.peak_pss, _mib(pss))
            if time.monotonic() - last_load >= 5:
                self.load.append(os.getloadavg()[0])
                last_load = time.monotonic()

    def load_text(self, start: int = 0) -> str:
        load = self.load[start:]
        if not load:
            return f"load average now {os.getloadavg()[0]:.2f}"
        return f"load average (1 min, every 5 s) min {min(load):.2f}, mean {np.mean(load):.2f}, max {max(load):.2f}"


def even_sample(items: list, n: int) -> list:
    return items if not n or n >= len(items) else [items[i] for i in np.linspace(0, len(items) - 1, n).astype(int)]


def units_of(runs: list, sample: list) -> list:
    """The runs [(task, target, condition, seed)] as (task, target) units, speaker first: each unit's cells
    (condition, seeds), with `dual` last (its `extra` block is read by that cell only), and those of its
    runs in `sample`."""
    units: dict = {}
    for which, items in ((0, runs), (1, sample)):
        for task, target, condition, seed in items:
            units.setdefault((task, target), ({}, {}))[which].setdefault(condition, []).append(seed)

    def ordered(cells: dict) -> list:
        return sorted(cells.items(), key=lambda c: c[0] == DUAL)

    return [(task, target, ordered(cells), ordered(sampled))
            for (task, target), (cells, sampled) in sorted(units.items(), key=lambda kv: TASKS.index(kv[0][0]))]


def run_grid(units: list, workers: int, init_args: tuple, batch_bytes: int) -> tuple:
    """The units in one fresh forked worker process (`_grid`)."""
    with mp.get_context("fork").Pool(1, initializer=_init, initargs=init_args) as pool:
        return pool.apply(_grid, ((units, workers, batch_bytes),))


def kind_of(task: str, condition: str) -> tuple:
    return task, "single" if condition == SINGLE else "dual/donor"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="4 languages, 2 seeds, N / 4, test sets / 4")
    ap.add_argument("--languages", type=int, default=None)
    ap.add_argument("--seeds", type=int, default=None)
    ap.add_argument("--sample", type=int, default=0, help="run an even sample of this many runs and extrapolate")
    ap.add_argument("--compare", type=int, default=160,
                    help="time this many runs (an even sample of the grid) one by one too (0: skip)")
    ap.add_argument("--workers", type=int, default=2, help="cells trained at once (threads of the worker process)")
    ap.add_argument("--threads", type=int, default=1, help="torch threads (per run: 1 keeps runs bit for bit)")
    ap.add_argument("--batch-mb", type=float, default=None,
                    help="run_probes' batch_bytes in MiB (default: the workflow's, cltm.train.probe_batch.BATCH_BYTES, "
                         "divided by --workers)")
    ap.add_argument("--no-scaling", action="store_true", help="skip the time-per-run vs N table")
    ap.add_argument("--out", default="/tmp/cltm_probe_scale")
    a = ap.parse_args(argv)

    paper = yaml.safe_load((ROOT / "config" / "paper.yaml").read_text())
    tasks = {t: {**paper["tasks"][t], "mode": "probe"} for t in TASKS}
    n_lang = a.languages or (4 if a.quick else 16)
    n_seeds = a.seeds or (2 if a.quick else len(paper["seeds"]))
    div = 4 if a.quick else 1
    sizes = dict(n_per_class=tasks["gender"]["n_per_class"] // div,
                 n_utterances=tasks["speaker"]["n_utterances"] // div,
                 test_speakers_per_gender=paper["data"]["test"]["speakers_per_gender"] // div,
                 test_clips_per_speaker=paper["data"]["test"]["max_clips_per_speaker"], layers=13, dim=768)
    languages = PAPER_LANGUAGES[:n_lang]
    out = Path(a.out)
    print(f"machine: {os.cpu_count()} CPUs ({cpu_model()}); {a.workers} threads x {a.threads} torch "
          f"thread(s) in one worker process; load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    print(f"sizes: {n_lang} languages, {n_seeds} seeds, {sizes}, tta_speeds {tasks['speaker'].get('tta_speeds')}")
    monitor = Monitor()
    monitor.start()

    t0 = time.perf_counter()
    selections, build_peaks = {t: {} for t in TASKS}, {}
    with mp.get_context("fork").Pool(a.workers) as pool:
        default_bytes = pool.apply(_default_batch_bytes)
        for lang, sel, rows, secs, pid, rss in pool.imap(_build, [(i, lang, out, sizes, tasks["speaker"].get(
                "tta_speeds") or ()) for i, lang in enumerate(languages)]):
            for task in TASKS:
                selections[task][lang] = sel[task]
            build_peaks[pid] = max(build_peaks.get(pid, 0.0), rss)
            print(f"  {lang}: {rows} rows x 13 x {2 * sizes['dim']} float16 ({secs:.1f} s)", flush=True)
    print(f"features written in {time.perf_counter() - t0:.1f} s")
    init_args = (out, languages, selections, tasks, a.threads)
    # a workflow cell job trains one cell at a time with `default_bytes`; here `workers` cells train at once
    batch_bytes = default_bytes // a.workers if a.batch_mb is None else int(a.batch_mb * 1024 ** 2)
    print(f"run_probes batch_bytes: {batch_bytes / 1024 ** 2:.0f} MiB per cell"
          + (f" (the workflow's {default_bytes / 1024 ** 2:.0f} MiB split among the {a.workers} cells trained at "
             "once; no run's numbers depend on it)" if a.batch_mb is None else " (--batch-mb)"))

    grid = [(task, target, cond, seed) for task in TASKS for target in languages
            for cond in conditions_of(target, languages) for seed in range(1, n_seeds + 1)]
    runs = even_sample(grid, a.sample)
    sample = even_sample(runs, a.compare) if a.compare else []
    units = units_of(runs, sample)
    print(f"\n{len(runs)} runs, {len(units)} (task, target) units; batched: a cell per run_probes call, "
          f"{a.workers} cells at once; one by one: an even sample of {len(sample)}, each unit's after its cells")
    mark = len(monitor.load)
    t1 = time.perf_counter()
    batched, cells, alone, wall, t_alone, load_s, grid_peak = run_grid(units, a.workers, init_args, batch_bytes)
    t_process = time.perf_counter() - t1
    grid_load = monitor.load_text(mark)

    # --- what was measured --------------------------------------------------------------------------------
    cpu_cells = sum(c[4] for c in cells)
    idle = a.workers * wall - sum(c[3] for c in cells) - load_s
    print(f"\nBATCHED: {len(batched)} runs in {wall:.1f} s wall ({wall / 60:.2f} min): "
          f"{len(batched) / wall:.2f} runs/s ({a.workers} threads x {a.threads} torch thread(s)); {grid_load} "
          f"during the grid (its process: {t_process:.1f} s with start-up and the one-by-one segments, "
          f"{t_alone:.1f} s)")
    print(f"  CPU of the run_probes calls {cpu_cells:.1f} s ({cpu_cells / len(batched):.3f} s/run); loading blocks "
          f"{load_s:.1f} s; {a.workers} threads x wall - calls - loading = {idle:.1f} s (start-up, a thread waiting "
          f"for the other at the end of a target)")
    per_kind: dict = {}
    for task, kind, n, w, c in cells:
        acc = per_kind.setdefault((task, kind), [0, 0.0, 0.0])
        acc[0], acc[1], acc[2] = acc[0] + n, acc[1] + w, acc[2] + c
    grid_count: dict = {}
    for task, _, cond, _ in grid:
        grid_count[kind_of(task, cond)] = grid_count.get(kind_of(task, cond), 0) + 1
    train_n = {kind_of(k[0], k[2]): s[4] for k, s, _, _ in batched}
    cpu_total = sum(v[2] for v in per_kind.values())
    print("\nbatched, per run (wall: a cell's time on its thread / its runs; CPU: its thread's)")
    print("task     condition   runs  N      wall (CPU) s      share of the CPU")
    for key in sorted(per_kind):
        n, w, c = per_kind[key]
        print(f"{key[0]:8s} {key[1]:11s} {n:5d} {train_n[key]:5d}  {w / n:6.3f} ({c / n:.3f})  "
              f"{100 * c / cpu_total:4.0f} %")

    if alone:
        # paired: each sampled run alone against the batched time per run of its own cell, which trained
        # minutes before on the same threads; per (task, condition kind), weighted to the grid's mix
        by_key = {k: (s, w, c) for k, s, w, c in batched}
        pairs: dict = {}
        for key, _, w, c in alone:
            acc = pairs.setdefault(kind_of(key[0], key[2]), [0, 0.0, 0.0, 0.0, 0.0])
            _, wb, cb = by_key[key]
            acc[0], acc[1], acc[2], acc[3], acc[4] = acc[0] + 1, acc[1] + w, acc[2] + c, acc[3] + wb, acc[4] + cb
        w_a, c_a, w_b, c_b = (sum(grid_count[k] * v[i] / v[0] for k, v in pairs.items()) for i in (1, 2, 3, 4))
        print(f"\nONE BY ONE (run_probe): {len(alone)} sampled runs, {t_alone:.1f} s wall, {a.workers} at once")
        print("paired per run (s)   runs  alone wall (CPU)   their cells batched wall (CPU)   ratio wall (CPU)")
        for k, v in sorted(pairs.items()):
            print(f"{k[0]:8s} {k[1]:11s} {v[0]:5d}  {v[1] / v[0]:8.3f} ({v[2] / v[0]:.3f})   {v[3] / v[0]:8.3f} "
                  f"({v[4] / v[0]:.3f})               {v[1] / v[3]:5.2f} ({v[2] / v[4]:.2f})")
        print(f"RATIO one-by-one / batched per run (paired, grid mix): {w_a / w_b:.3f} wall, {c_a / c_b:.3f} CPU; "
              f"the grid's run time one by one ~ {w_a / a.workers / 60:.1f} min on {a.workers} threads, batched "
              f"{w_b / a.workers / 60:.1f} min")
        diffs = [abs(s[0] - by_key[key][0][0]) for key, s, _, _ in alone]
        same = sum(s[1:4] == by_key[key][0][1:4] for key, s, _, _ in alone)
        print(f"EQUALITY on {len(diffs)} sampled runs: max |value(batched) - value(one by one)| = {max(diffs):.3g}; "
              f"metrics, loss and layer weights identical in {same}/{len(diffs)}")

    parent = _maxrss()
    print(f"\nPEAK MEMORY (RSS, MiB): parent {parent:.0f} (no torch); build processes "
          + ", ".join(f"{v:.0f}" for v in build_peaks.values()) + f" (together {sum(build_peaks.values()):.0f}); "
          f"grid process {grid_peak:.0f}")
    worst = max(parent + sum(build_peaks.values()), parent + grid_peak)
    print(f"  the whole benchmark at most {worst:.0f} MiB: the largest sum of the peaks of the processes alive "
          f"together (an upper bound: a page shared by processes counts in each)")
    if monitor.available:
        print(f"  sampled every {monitor.every} s, all processes: peak summed PSS {monitor.peak_pss:.0f} MiB (a shared "
              f"page split among its sharers), summed RSS {monitor.peak_rss:.0f} MiB")
    if len(runs) < len(grid):
        cpu = sum(grid_count[k] * per_kind[k][1] / per_kind[k][0] for k in grid_count if k in per_kind)
        print(f"\nEXTRAPOLATED from {len(runs)} sampled runs: all {len(grid)} runs ~ {cpu / a.workers / 60:.1f} min "
              f"wall with {a.workers} threads ({cpu / 60:.1f} min of run time)")
    else:
        print(f"\nMEASURED: all {len(grid)} runs in {wall / 60:.2f} min wall")

    # how the grid grows with the number of languages L: per task, L targets x (single + L dual / donor
    # conditions) x seeds runs, each of a cost set by its N, not by L (from this run's per-run times)
    print("\ngrid vs languages (PROJECTED from the measured batched wall per run, as many threads as above)")
    print("L    runs      minutes")
    for L in (4, 8, 16, 32, 54):
        secs = sum(L * n_seeds * (per_kind[(t, "single")][1] / per_kind[(t, "single")][0]
                                  + L * per_kind[(t, "dual/donor")][1] / per_kind[(t, "dual/donor")][0])
                   for t in TASKS if (t, "single") in per_kind and (t, "dual/donor") in per_kind)
        print(f"{L:<4d} {2 * L * (L + 1) * n_seeds:<9d} {secs / a.workers / 60:8.1f}")

    if not a.no_scaling:
        print(f"\ntime per run vs N (MEASURED, run_probe alone, one process x {a.threads} thread(s), single "
              "condition, mean of seeds 2-3)")
        with mp.get_context("fork").Pool(1) as pool:
            rows, rss = pool.apply(_scaling, ((out / "scaling", tasks, a.threads, a.quick),))
        print("task     N      s/run")
        for task, n, secs in rows:
            print(f"{task:8s} {n:<6d} {secs:.3f}")
        print(f"(its process: peak RSS {rss:.0f} MiB)")
    monitor.stop.set()
    print(f"\n{monitor.load_text()} over the whole benchmark")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
