"""One fine-tuning run: the condition's training set, the encoder fine-tuned with a head, evaluated on
the target's test set, and its record.

A run = (task, target, condition, seed). Its training set is nested: `single` = N clips of the target,
`dual` = single + N more of the target, `donor-<j>` = single + N clips of donor j (its own `single`
subset). Every run is evaluated on the same test set of the target.
"""

from __future__ import annotations

import time

import pandas as pd
import torch

from cltm.data.selection import training_items
from cltm.model.device import deterministic_kernels
from cltm.model.heads import Classifier
from cltm.model.precision import precision_of
from cltm.records import run_record
from cltm.tasks import make_task
from cltm.train.evaluate import evaluate
from cltm.train.loop import fine_tune
from cltm.train.rng import RunGenerators


def finetune_run(task: str, cfg: dict, *, target: str, condition: str, seed: int, encoder: torch.nn.Module,
                 stores: dict, selections: dict[str, dict], device, sample_rate: int = 16000, log=print,
                 checkpoint=None) -> tuple[dict, pd.DataFrame | None]:
    """Fine-tune `encoder` (consumed: pass a fresh copy) on the condition's training set, evaluate on the
    target's test set; return the run record and its per-item scores. `cfg` is the task's config section;
    `checkpoint` (a `cltm.train.checkpoints.Checkpoint`) makes the training resumable."""
    t0 = time.perf_counter()
    plugin = make_task(task, cfg)
    items = training_items(target, condition, selections)
    metas = [stores[lang].meta(u) for lang, u in items]
    labels, n_classes = plugin.labels(metas, items)
    waves = [stores[lang][u] for lang, u in items]
    log(f"{task} {target} {condition} seed {seed}: {len(items)} training clips, {n_classes} classes, device {device}")

    # the run's own generators (cltm.train.rng): head init, dropout, LayerDrop and time masking draw as if alone
    generators = RunGenerators(seed, device)
    deterministic = bool(cfg["training"].get("deterministic"))
    with generators.active(), deterministic_kernels(deterministic, device):  # training and evaluation
        model = Classifier(encoder, n_classes, plugin.pooling)
        loss = fine_tune(model, waves, labels, cfg["training"], seed=seed, device=device, sample_rate=sample_rate,
                         log=log, checkpoint=checkpoint, task_name=task)
        t_train = time.perf_counter() - t0
        metrics, scores = evaluate(plugin, model, stores[target], selections[target], cfg, device, sample_rate)
    log(f"{task} {target} {condition} seed {seed}: " + ", ".join(f"{k} {v:.4f}" for k, v in metrics.items()))

    record = run_record(plugin, target=target, condition=condition, seed=seed, metrics=metrics,
                        items=items, metas=metas, train_samples=sum(w.size for w in waves), n_classes=n_classes,
                        selections=selections, loss=loss, sample_rate=sample_rate,
                        timing={"train_s": round(t_train, 2), "eval_s": round(time.perf_counter() - t0 - t_train, 2)},
                        device=str(device), precision=precision_of(cfg["training"]), torch_version=torch.__version__,
                        tta_speeds=plugin.tta_speeds if plugin.kind == "speaker_verification" else None,
                        deterministic=True if deterministic else None)  # written when on
    return record, scores
