"""Probe runs trained together: the runs of a batch step in lockstep, one graph, one backward, one optimiser.

`run_probes(runs)` gives every run the record and scores `cltm.train.probe.run_probe` gives it alone, bit for
bit on one machine and thread count (tests/test_probe_batch.py compares every field), so a run rebuilt alone
(`snakemake <run file> -f`) equals the one its cell trained. What the runs of a batch share is what costs a
run alone time without changing its numbers:

- **one step for all**: each step, every run computes its own minibatch's mean cross-entropy with its own
  head (`ProbeHead`, the code a run alone runs, on its training set laid out as alone); then one backward of
  the sum of the runs' losses (the runs share no parameter, so each gets exactly its own loss's gradient),
  one `zero_grad` and one fused AdamW call over every run's parameters (a multi-tensor call: each tensor is
  updated by the kernel a run alone uses, with its own state: AdamW per run). Python's and the optimiser's
  fixed cost per step is paid once per batch, not once per run;
- **its own everything else**: initial weights (each run's `ProbeHead` built from its own generator, as
  alone), data order (the same draws from the same generator: the shuffled order, then each epoch's
  minibatch order, `cltm.train.probe.step_plan`), layer weights, optimiser state;
- **shared data**: a full-batch training set (a cell's seeds train on the same blocks) is one table for the
  runs that read it; minibatch runs copy their training set in their own order, as alone, into one buffer
  for the batch that its thread reuses; features come from the stores' `block` cache, so a test set is
  read once for the runs that share it (`cltm.train.features.FeatureStore`; the caller decides how long).

Runs train in one batch when they have the same settings, layers, feature width and training-set size (so
the same number of steps); a batch holds at most `batch_bytes` of what its runs add to memory
(`run_bytes`: mostly a minibatch run's copy, 160 MB for a paper-size speaker run of 2,000 clips).

Why not one stacked model with batched products (`torch.bmm`, einsum over stacked heads)? Those reduce in
another order than a run's own `F.linear` and vector-matrix products (and a stacked AdamW shares vector
lanes between runs): the results then equal the run alone only up to float rounding (about 6e-7 here), which
breaks the bit-for-bit equality the workflow promises. And they buy little: a paper-size speaker step is
three [128 x 1536] x [1536 x 128] products, already efficient alone, plus reading its 10 MB minibatch twice;
a gender step reads its whole training set twice. docs/benchmarks.md ("Probe mode") has the figures.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from cltm.data.selection import training_items
from cltm.tasks import make_task
from cltm.train.probe import ProbeHead, Scratch, probe_record, probe_settings, step_plan, training_blocks

BATCH_BYTES = 512 * 1024 ** 2  # what a batch's runs may add to memory while they train (`run_bytes`)


@dataclass(eq=False)
class ProbeRun:
    """One probe run: the arguments of `cltm.train.probe.run_probe`."""

    task: str
    cfg: dict
    target: str
    condition: str
    seed: int
    features: dict
    selections: dict
    sample_rate: int = 16000

    @property
    def name(self) -> str:
        return f"{self.task} {self.target} {self.condition} seed {self.seed}"


@dataclass(eq=False)
class _Member:
    """A run made ready to train: what `run_probe` computes before `train_head`, and its draws."""

    index: int
    run: ProbeRun
    log: object
    plugin: object
    settings: dict
    items: list
    metas: list
    labels: torch.Tensor
    n_classes: int
    xs: list  # training blocks, [layers, clips, features] each
    head: ProbeHead
    order: torch.Tensor | None  # the shuffled order (minibatches), else None
    batch_orders: list  # per epoch, the order of its minibatches
    prep_s: float
    loss: dict = field(default_factory=dict)

    @property
    def sv(self) -> bool:
        return self.plugin.kind == "speaker_verification"

    @property
    def n(self) -> int:
        return len(self.labels)


def _prepare(i: int, run: ProbeRun, log, plugins: dict) -> _Member:
    """What `run_probe` does before training, in its order (its generator's draws included)."""
    t0 = time.perf_counter()
    key = (run.task, id(run.cfg))
    if key not in plugins:
        plugins[key] = (make_task(run.task, run.cfg), run.cfg)  # the cfg kept alive: its id stays its own
    plugin = plugins[key][0]
    settings = probe_settings(plugin.kind, run.cfg)
    stats = tuple(settings["stats"])
    sv = plugin.kind == "speaker_verification"
    items = training_items(run.target, run.condition, run.selections)
    metas = [run.features[lang].meta(u) for lang, u in items]
    labels, n_classes = plugin.labels(metas, items)
    log(f"{run.task} {run.target} {run.condition} seed {run.seed} (probe): {len(items)} training clips, "
        f"{n_classes} classes")
    generator = torch.Generator().manual_seed(int(run.seed))
    xs = [run.features[lang].block(ids, stats=stats, normalize=settings["normalize"])
          for lang, ids in training_blocks(run.target, run.condition, run.selections)]
    head = ProbeHead(run.features[run.target].layers, xs[0].shape[2], n_classes,
                     settings.get("embedding_dim") if sv else None, generator)
    # the draws `train_head` makes, in its order: the shuffled order, then each epoch's minibatch order
    n = len(labels)
    _, starts, epochs = step_plan(n, settings)
    order = torch.randperm(n, generator=generator) if len(starts) > 1 else None
    batch_orders = [torch.randperm(len(starts), generator=generator).tolist() if len(starts) > 1 else [0]
                    for _ in range(epochs)]
    return _Member(i, run, log, plugin, settings, items, metas, torch.as_tensor(labels, dtype=torch.long),
                   n_classes, xs, head, order, batch_orders, time.perf_counter() - t0)


def _batch_key(m: _Member) -> tuple:
    """Runs with equal keys train as one batch: the same kind and settings, layers, feature width and
    training-set size (so the same steps, and copies of one shape)."""
    layers, _, width = m.xs[0].shape
    return (m.plugin.kind, repr(sorted(m.settings.items())), layers, width, m.n)


def run_bytes(m: _Member) -> int:
    """About what one run adds to its batch's memory while it trains, in bytes: its shuffled copy of the
    training set (minibatches only: a speaker run of 2,000 clips x 13 layers x 1,536 values holds 160 MB, as
    alone), its activations and their gradients, and its parameters with their gradients and AdamW moments."""
    layers, _, width = m.xs[0].shape
    bs, starts, _ = step_plan(m.n, m.settings)
    dim = m.settings.get("embedding_dim") if m.sv else None
    params = (width * dim + dim if dim else 0) + (dim or width) * m.n_classes + m.n_classes + layers
    copy = layers * m.n * width if len(starts) > 1 else 0
    return 4 * (copy + 3 * bs * (width + (dim or 0) + m.n_classes) + 4 * params)


def plan_batches(members: list, max_bytes: int = BATCH_BYTES) -> list[list]:
    """The runs grouped by `_batch_key` (in order of first appearance), each group cut into batches whose
    `run_bytes` add up to at most `max_bytes` (at least one run each); within a batch, runs training on the
    same blocks are neighbours."""
    groups: dict = {}
    for m in members:
        groups.setdefault(_batch_key(m), []).append(m)
    batches = []
    for group in groups.values():
        data: dict = {}
        for m in group:
            data.setdefault(tuple(id(x) for x in m.xs), []).append(m)
        batch, used = [], 0
        for m in (m for same in data.values() for m in same):
            if batch and used + run_bytes(m) > max_bytes:
                batches.append(batch)
                batch, used = [], 0
            batch.append(m)
            used += run_bytes(m)
        if batch:
            batches.append(batch)
    return batches


_SCRATCH = Scratch()  # a batch's copies of its runs' training sets (to about `batch_bytes`), apart from a run's own


def _training_sets(batch: list, bs: int, starts: list) -> tuple[list, list]:
    """Each run's training set laid out as `train_head` lays it out ([layers, clips, features], and its
    labels): minibatches, its copy in its own random order (the batch's copies in one buffer); full batch,
    its block, or its blocks concatenated (one table for the runs that read the same blocks)."""
    layers, _, width = batch[0].xs[0].shape
    n = batch[0].n
    xs, ys = [], []
    if len(starts) > 1:
        copies = _SCRATCH.view((len(batch), layers, n, width))
        for r, m in enumerate(batch):
            position = torch.empty_like(m.order)
            position[m.order] = torch.arange(n)
            start = 0
            for block in m.xs:
                for layer in range(layers):
                    copies[r, layer].index_copy_(0, position[start:start + block.shape[1]], block[layer])
                start += block.shape[1]
            xs.append(copies[r])
            ys.append(m.labels[m.order])
        return xs, ys
    tables: dict = {}
    for m in batch:
        key = tuple(id(x) for x in m.xs)
        if key not in tables:
            tables[key] = m.xs[0] if len(m.xs) == 1 else torch.cat(m.xs, dim=1)
        xs.append(tables[key])
        ys.append(m.labels)
    return xs, ys


def _train(batch: list) -> None:
    """Train the batch's heads in lockstep; each member's head ends as `train_head` leaves it alone, bit for
    bit, and its `loss` is what `train_head` returns.

    Each step, every run computes its own minibatch's mean cross-entropy with its own head (`ProbeHead`, the
    code a run alone runs, on its training set laid out as alone); then one backward of their sum (the runs
    share no parameter: each gets exactly its own loss's gradient) and one fused AdamW step over every run's
    parameters (one multi-tensor call; each tensor updated as alone)."""
    settings = batch[0].settings
    R, n = len(batch), batch[0].n
    bs, starts, epochs = step_plan(n, settings)
    optimiser = torch.optim.AdamW([{"params": [m.head.layer_logits for m in batch], "weight_decay": 0.0},
                                   {"params": [p for m in batch for name, p in m.head.named_parameters()
                                               if name != "layer_logits"],
                                    "weight_decay": settings["weight_decay"]}],
                                  lr=settings["lr"], fused=True)  # the kernel a run alone uses
    xs, ys = _training_sets(batch, bs, starts)
    totals = torch.zeros((R, epochs))
    first = None
    for epoch in range(epochs):
        for j in range(len(starts)):
            cuts = [starts[m.batch_orders[epoch][j]] for m in batch]
            losses = torch.stack([F.cross_entropy(m.head(x[:, s:s + bs]), y[s:s + bs])
                                  for m, x, y, s in zip(batch, xs, ys, cuts)])
            optimiser.zero_grad(set_to_none=True)
            losses.sum().backward()
            optimiser.step()
            losses = losses.detach()
            totals[:, epoch] += losses * torch.tensor([float(min(bs, n - s)) for s in cuts])
            if first is None:
                first = losses.tolist()
    totals = totals.tolist()
    for r, m in enumerate(batch):
        epoch_means = [v / n for v in totals[r]]  # as train_head: the float32 sum, divided as a Python float
        m.loss = {"steps": epochs * len(starts), "first": first[r], "last": epoch_means[-1],
                  "epoch_means": epoch_means}


def run_probes(runs: list[ProbeRun], *, threads: int | None = None, log=print, logs: list | None = None,
               batch_bytes: int = BATCH_BYTES) -> list:
    """Train and evaluate `runs` in batches (module doc); return, in their order, each run's (record, scores)
    as `cltm.train.probe.run_probe` returns them alone, or the exception that failed it (the others go on).
    `logs`: one log function per run (its lines as `run_probe` logs them; default `log`); `log` also gets a
    line per batch. A run's `timing`: its own preparation and evaluation, and its share of its batch's
    training."""
    if threads:
        torch.set_num_threads(threads)
    logs = logs or [log] * len(runs)
    results: list = [None] * len(runs)
    members, plugins = [], {}
    for i, run in enumerate(runs):
        try:
            members.append(_prepare(i, run, logs[i], plugins))
        except Exception as err:  # noqa: BLE001 - this run fails, the others go on
            results[i] = err
    for batch in plan_batches(members, batch_bytes):
        t0 = time.perf_counter()
        try:
            with torch.enable_grad():
                _train(batch)
        except Exception as err:  # noqa: BLE001 - the batch's runs fail, the others go on
            for m in batch:
                results[m.index] = err
            continue
        t_train = (time.perf_counter() - t0) / len(batch)
        log(f"probe: {len(batch)} run(s) of {batch[0].run.task} ({batch[0].n} training clips) trained together "
            f"in {t_train * len(batch):.2f} s")
        for m in batch:
            if not math.isfinite(m.loss["last"]):
                results[m.index] = FloatingPointError(
                    f"probe training loss became {m.loss['last']}; lower tasks.<task>.probe.lr")
                continue
            try:
                results[m.index] = _finish(m, t_train)
            except Exception as err:  # noqa: BLE001 - this run fails, the others go on
                results[m.index] = err
    return results


def _finish(m: _Member, t_train: float) -> tuple:
    """Evaluate a trained run as `run_probe` does (the test block read from its store's cache, once for the
    runs that share it); its record and scores."""
    t0 = time.perf_counter()
    run, sv, stats, normalize = m.run, m.sv, tuple(m.settings["stats"]), m.settings["normalize"]
    store, test = run.features[run.target], run.selections[run.target]["test"]
    with torch.no_grad():
        if sv:
            # at each test-time speed (tta_speeds), the embeddings averaged before scoring, as run_probe does
            embeddings = [m.head.embed(store.block(test, trim_db=run.cfg.get("trim_db"), stats=stats,
                                                   normalize=normalize, speed=speed))
                          for speed in m.plugin.tta_speeds]
            metrics, scores = m.plugin.score(test, torch.stack(embeddings).mean(dim=0), run.selections[run.target])
        else:
            x = store.block(test, stats=stats, normalize=normalize)
            metrics, scores = m.plugin.score(store, test, torch.softmax(m.head(x), dim=-1).numpy())
        weights = m.head.layer_weights().tolist()
    m.log(f"{run.task} {run.target} {run.condition} seed {run.seed} (probe): "
          + ", ".join(f"{k} {v:.4f}" for k, v in metrics.items()))
    timing = {"train_s": round(m.prep_s + t_train, 4), "eval_s": round(time.perf_counter() - t0, 4)}
    return probe_record(m.plugin, target=run.target, condition=run.condition, seed=run.seed, metrics=metrics,
                        items=m.items, metas=m.metas, n_classes=m.n_classes, selections=run.selections,
                        loss=m.loss, sample_rate=run.sample_rate, timing=timing, layer_weights=weights), scores
