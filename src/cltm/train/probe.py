"""Probe mode: the encoder frozen, a small head trained on cached features (`cltm.train.features`), per run.

`tasks.<name>.mode: probe` (default `finetune`) makes a task's runs probe runs: same conditions, seeds,
subsets, test sets, trials and metrics as fine-tuning, but each run trains only

- a learned softmax-weighted sum over the encoder's layers (SUPERB's weighted sum: one logit per layer,
  initialised to zero, i.e. equal weights), over each clip's layer features pooled over time, then
- classification: a linear classifier (cross-entropy over the task's classes);
- speaker verification: a linear projection to `embedding_dim` and a linear speaker-identification
  classifier over the training speakers (cross-entropy; donor speakers are extra classes); the
  projection's output is the embedding, L2-normalised, trials scored by cosine (as fine-tuning does).
  Its test clips' features are those of the silence-trimmed clips (`trim_db`), training clips untrimmed.

Hyper-parameters (`tasks.<name>.probe`, each optional; the defaults live in `cltm.defaults.PROBE`, never in
the config):

    key            classification   speaker_verification   meaning
    stats          [mean]           [mean, std]             pooled statistics fed to the head
    normalize      true             true                    per-clip layer norm of each layer's pooled vector
    embedding_dim  -                128                     projection size (speaker verification only)
    epochs         50               5                       passes over the training set (at least)
    min_steps      50               80                      ... and at least this many updates
    batch_size     null             128                     null = full batch
    lr             1.0e-2           5.0e-3                  AdamW, constant
    weight_decay   1.0e-2           1.0e-2                  AdamW (not on the layer logits)

A run is deterministic and independent of what ran before it in the process: its initial weights and data
order come from generators of its own seed (`torch.Generator`, never the global ones), and no state is
shared between runs but the read-only feature blocks (`FeatureStore.block`, shared to save the
conversion). Bit-for-bit equality holds on one machine for one thread count (torch's CPU kernels reduce
in an order that depends on the number of threads): pass `threads` or set torch.set_num_threads once.

Cost of a run: one shuffled copy of its training features (minibatches; into a buffer its thread reuses),
then `updates` steps, each reading its rows twice (the layer mixing is a vector-matrix product over the
features' [layers, rows * features] layout, forward and backward) and multiplying them by the projection
(three [rows, features] x [features, embedding_dim] products: forward, and the backward's two, which is
most of a speaker run's time); updates = max(epochs * steps per epoch, min_steps). AdamW runs fused. So a
speaker run with the defaults costs about the same up to N = 2048 (80 updates of 128 rows) and grows
linearly beyond; a classification run (full batch) grows linearly with N. Evaluation grows with the test
set and the trials. Measured figures: benchmarks/probe_scale.py.
"""

from __future__ import annotations

import math
import threading
import time
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import nn

from cltm.data.selection import training_items
from cltm.defaults import PROBE
from cltm.paths import DUAL, donor_of
from cltm.records import run_record
from cltm.tasks import make_task

if TYPE_CHECKING:
    import pandas as pd

def probe_settings(kind: str, cfg: dict) -> dict:
    """The probe hyper-parameters of a task section: the defaults of its kind (`cltm.defaults.PROBE`)
    updated by `probe:`."""
    return {**PROBE[kind], **((cfg or {}).get("probe") or {})}


def _uniform(shape, bound: float, generator: torch.Generator) -> torch.Tensor:
    return (torch.rand(shape, generator=generator) * 2 - 1) * bound


class ProbeHead(nn.Module):
    """Softmax-weighted sum over layers, then (optionally) a projection, then a linear classifier.

    Initial weights as nn.Linear's (uniform within 1/sqrt(fan_in)), drawn from the run's own generator."""

    def __init__(self, layers: int, width: int, n_classes: int, embedding_dim: int | None,
                 generator: torch.Generator):
        super().__init__()
        self.layer_logits = nn.Parameter(torch.zeros(layers))
        self.projection = None
        if embedding_dim:
            b = 1 / math.sqrt(width)
            self.projection = nn.ParameterList([nn.Parameter(_uniform((embedding_dim, width), b, generator)),
                                                nn.Parameter(_uniform((embedding_dim,), b, generator))])
            width = embedding_dim
        b = 1 / math.sqrt(width)
        self.classifier = nn.ParameterList([nn.Parameter(_uniform((n_classes, width), b, generator)),
                                            nn.Parameter(_uniform((n_classes,), b, generator))])

    def layer_weights(self) -> torch.Tensor:
        return torch.softmax(self.layer_logits, dim=0)

    def mix(self, x: torch.Tensor) -> torch.Tensor:
        """[layers, clips, features] -> [clips, features]: one matrix-vector product, weights @ [layers,
        clips * features] (a long row per layer: about 3x faster than the [clips * features, layers] layout,
        forward and backward). `x` may be a slice of clips of a contiguous block (each layer's rows
        contiguous)."""
        layers, n, f = x.shape
        return (self.layer_weights() @ x.reshape(layers, n * f)).view(n, f)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        z = self.mix(x)
        return z if self.projection is None else F.linear(z, *self.projection)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(self.embed(x), *self.classifier)


def training_blocks(target: str, condition: str, selections: dict) -> list[tuple[str, list]]:
    """The training set as (language, subset clips) blocks, in `training_items` order."""
    blocks = [(target, selections[target]["single"])]
    donor = donor_of(condition)
    if condition == DUAL:
        blocks.append((target, selections[target]["extra"]))
    elif donor is not None:
        blocks.append((donor, selections[donor]["single"]))
    return blocks


class Scratch:
    """One float32 buffer per thread, reused by the training-set copies made on that thread (grown as needed):
    a copy is written there, not into fresh memory, whose page faults cost as much as the copy itself. Runs
    trained on several threads never share a buffer. A view's previous contents never matter: the caller
    overwrites all of it."""

    def __init__(self) -> None:
        self._local = threading.local()

    def view(self, shape) -> torch.Tensor:
        """A float32 tensor of `shape` over this thread's buffer."""
        numel = math.prod(shape)
        buffer = getattr(self._local, "buffer", None)
        if buffer is None or buffer.numel() < numel:
            self._local.buffer = buffer = None  # the smaller one let go first
            self._local.buffer = buffer = torch.empty(numel)
        return buffer[:numel].view(shape)


_SCRATCH = Scratch()  # a run's shuffled copy of its training set


def step_plan(n: int, settings: dict) -> tuple[int, list[int], int]:
    """(batch size, the minibatches' first rows, epochs) of a training set of n clips: full batch unless
    `batch_size` < n; max(epochs, ceil(min_steps / minibatches)) epochs, so that small training sets (the
    demo's) still get at least `min_steps` updates, at little cost."""
    bs = settings.get("batch_size")
    bs, starts = (bs, list(range(0, n, bs))) if bs and bs < n else (n, [0])
    return bs, starts, max(settings["epochs"], math.ceil(settings.get("min_steps", 0) / len(starts)))


def train_head(head: ProbeHead, blocks: list[torch.Tensor], labels: torch.Tensor, settings: dict,
               generator: torch.Generator) -> dict:
    """AdamW on the head, constant learning rate, max(epochs, ceil(min_steps / steps per epoch)) epochs;
    the loss summary.

    Full batch: every epoch is one step over the whole set. Minibatches: the training set is gathered once
    in a random order of the run's generator, and each epoch visits its contiguous minibatches in a fresh
    random order. The loss is read back to the host once per epoch."""
    decay = [p for n, p in head.named_parameters() if n != "layer_logits"]
    optimiser = torch.optim.AdamW([{"params": [head.layer_logits], "weight_decay": 0.0},
                                   {"params": decay, "weight_decay": settings["weight_decay"]}],
                                  lr=settings["lr"], fused=True)  # one kernel per parameter: 2-3x faster
    n = len(labels)
    layers, _, width = blocks[0].shape  # blocks: [layers, clips, features] (FeatureStore.block's 'lnf')
    bs, starts, epochs = step_plan(n, settings)
    if len(starts) > 1:
        # one copy of the training set, in a random order: x[:, position[j]] = (blocks concatenated)[:, j]
        order = torch.randperm(n, generator=generator)
        position = torch.empty_like(order)
        position[order] = torch.arange(n)
        x = _SCRATCH.view((layers, n, width))
        start = 0
        for block in blocks:
            for layer in range(layers):
                x[layer].index_copy_(0, position[start:start + block.shape[1]], block[layer])
            start += block.shape[1]
        y = labels[order]
    else:
        x = blocks[0] if len(blocks) == 1 else torch.cat(blocks, dim=1, out=_SCRATCH.view((layers, n, width)))
        y = labels
    epoch_means, first = [], None
    for _ in range(epochs):
        total = torch.zeros(())
        batch_order = torch.randperm(len(starts), generator=generator).tolist() if len(starts) > 1 else [0]
        for b in batch_order:
            s = starts[b]
            yb = y[s:s + bs]
            loss = F.cross_entropy(head(x[:, s:s + bs]), yb)
            optimiser.zero_grad(set_to_none=True)
            loss.backward()
            optimiser.step()
            total += loss.detach() * len(yb)
            if first is None:
                first = float(loss.detach())
        epoch_means.append(float(total) / n)
    if not math.isfinite(epoch_means[-1]):
        raise FloatingPointError(f"probe training loss became {epoch_means[-1]}; lower tasks.<task>.probe.lr")
    return {"steps": epochs * len(starts), "first": first, "last": epoch_means[-1],
            "epoch_means": epoch_means}


def run_probe(task: str, cfg: dict, *, target: str, condition: str, seed: int, features: dict,
              selections: dict[str, dict], sample_rate: int = 16000, threads: int | None = None,
              log=print) -> tuple[dict, "pd.DataFrame"]:
    """Train a probe head on the condition's training set (features: {language: FeatureStore}, holding
    every clip the selections reference, `cltm.train.features.feature_plan`), evaluate on the target's test set;
    return the run record (the shape of a fine-tuning run's, plus `mode` and `layer_weights`) and its
    per-item scores (the fine-tuning evaluation's format)."""

    if threads:
        torch.set_num_threads(threads)
    t0 = time.perf_counter()
    plugin = make_task(task, cfg)
    settings = probe_settings(plugin.kind, cfg)
    stats = tuple(settings["stats"])
    sv = plugin.kind == "speaker_verification"
    items = training_items(target, condition, selections)
    blocks = training_blocks(target, condition, selections)
    metas = [features[lang].meta(u) for lang, u in items]
    labels, n_classes = plugin.labels(metas, items)
    log(f"{task} {target} {condition} seed {seed} (probe): {len(items)} training clips, {n_classes} classes")

    generator = torch.Generator().manual_seed(int(seed))
    xs = [features[lang].block(ids, stats=stats, normalize=settings["normalize"]) for lang, ids in blocks]
    store = features[target]
    head = ProbeHead(store.layers, xs[0].shape[2], n_classes, settings.get("embedding_dim") if sv else None,
                     generator)
    with torch.enable_grad():
        loss = train_head(head, xs, torch.as_tensor(labels, dtype=torch.long), settings, generator)
    t_train = time.perf_counter() - t0

    test = selections[target]["test"]
    with torch.no_grad():
        if sv:  # at each test-time speed (tta_speeds), the embeddings averaged before scoring
            embeddings = [head.embed(store.block(test, trim_db=cfg.get("trim_db"), stats=stats,
                                                 normalize=settings["normalize"], speed=speed))
                          for speed in plugin.tta_speeds]
            metrics, scores = plugin.score(test, torch.stack(embeddings).mean(dim=0), selections[target])
        else:
            x = store.block(test, stats=stats, normalize=settings["normalize"])
            metrics, scores = plugin.score(store, test, torch.softmax(head(x), dim=-1).numpy())
        weights = head.layer_weights().tolist()
    log(f"{task} {target} {condition} seed {seed} (probe): " + ", ".join(f"{k} {v:.4f}" for k, v in metrics.items()))

    timing = {"train_s": round(t_train, 4), "eval_s": round(time.perf_counter() - t0 - t_train, 4)}
    return probe_record(plugin, target=target, condition=condition, seed=seed, metrics=metrics, items=items,
                        metas=metas, n_classes=n_classes, selections=selections, loss=loss,
                        sample_rate=sample_rate, timing=timing, layer_weights=weights), scores


def probe_record(plugin, *, target: str, condition: str, seed: int, metrics: dict, items, metas, n_classes: int,
                 selections: dict, loss: dict, sample_rate: int, timing: dict, layer_weights: list) -> dict:
    """A probe run's record: `cltm.records.run_record`'s fields (on the CPU, fp32), then `mode` and the
    learned `layer_weights`. Shared by the run trained alone and the runs trained together
    (`cltm.train.probe_batch`)."""
    record = run_record(plugin, target=target, condition=condition, seed=seed, metrics=metrics,
                        items=items, metas=metas, train_samples=sum(int(m["n_samples"]) for m in metas),
                        n_classes=n_classes, selections=selections, loss=loss, sample_rate=sample_rate,
                        timing=timing, device="cpu", precision="fp32", torch_version=torch.__version__,
                        tta_speeds=plugin.tta_speeds if plugin.kind == "speaker_verification" else None)
    record.update(mode="probe", layer_weights=layer_weights)
    return record
