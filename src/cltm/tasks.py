"""The two paralinguistic tasks as small plug-ins over the shared trainer, and one run of the grid.

A run = (task, target, condition, seed). Its training set is nested: `single` = N clips of the
target, `dual` = single + N more of the target, `donor-<j>` = single + N clips of donor j (its
own `single` subset). Every run is evaluated on the same test set of the target.
"""

from __future__ import annotations

import time

import numpy as np
import pandas as pd
import torch

from cltm import __version__
from cltm.audio import AudioStore, trim_silence
from cltm.metrics import classification_metrics, verification_metrics
from cltm.rng import RunGenerators
from cltm.runs import donor_of
from cltm.training import Classifier, embed_clips, fine_tune, predict_proba

GENDER_LABEL = {"male": 0, "female": 1}


def training_items(target: str, condition: str, selections: dict[str, dict]) -> list[tuple[str, str]]:
    """(language, utt_id) pairs of a condition's training set."""
    items = [(target, u) for u in selections[target]["single"]]
    donor = donor_of(condition)
    if condition == "dual":
        items += [(target, u) for u in selections[target]["extra"]]
    elif donor is not None:
        if donor == target:
            raise ValueError(f"condition '{condition}' names the target itself; use 'dual'")
        items += [(donor, u) for u in selections[donor]["single"]]
    elif condition != "single":
        raise ValueError(f"unknown condition '{condition}' (use single, dual or donor-<language>)")
    return items


class GenderTask:
    """Gender identification: last layer, mean pooling, 2-way head; macro-F1 and accuracy."""

    name, pooling = "gender", "last"

    def labels(self, metas: list[pd.Series], items) -> tuple[np.ndarray, int]:
        try:
            return np.array([GENDER_LABEL[m["gender"]] for m in metas]), 2
        except KeyError as err:
            raise ValueError(f"a gender training clip has no male/female label: {err}") from err

    def evaluate(self, model, store: AudioStore, selection: dict, cfg: dict, device) -> tuple[dict, pd.DataFrame]:
        test = selection["test"]
        y_true = np.array([GENDER_LABEL[store.meta(u)["gender"]] for u in test])
        proba = predict_proba(model, [store[u] for u in test], device)
        y_pred = proba.argmax(axis=1)
        predictions = pd.DataFrame({"utt_id": test, "label": y_true, "predicted": y_pred, "p_female": proba[:, 1]})
        return classification_metrics(y_true, y_pred), predictions


class SpeakerTask:
    """Speaker verification via speaker-identification fine-tuning; cosine scoring of embeddings."""

    name, pooling = "speaker", "last4"

    def labels(self, metas: list[pd.Series], items) -> tuple[np.ndarray, int]:
        # speakers are keyed by language too: donor speakers are extra classes, never merged
        keys = [f"{lang}/{m['speaker']}" for (lang, _), m in zip(items, metas)]
        classes = {k: i for i, k in enumerate(sorted(set(keys)))}
        return np.array([classes[k] for k in keys]), len(classes)

    def evaluate(self, model, store: AudioStore, selection: dict, cfg: dict, device) -> tuple[dict, pd.DataFrame]:
        test = selection["test"]
        waves = [trim_silence(store[u], cfg.get("trim_db")) for u in test]
        emb = torch.nn.functional.normalize(embed_clips(model, waves, device), dim=-1)
        pos = {u: i for i, u in enumerate(test)}
        trials = pd.DataFrame(selection["trials"], columns=["enroll", "test", "label"])
        a = emb[[pos[u] for u in trials["enroll"]]]
        b = emb[[pos[u] for u in trials["test"]]]
        trials["score"] = (a * b).sum(dim=-1).numpy().astype(float)
        metrics = verification_metrics(trials["score"].to_numpy(), trials["label"].to_numpy())
        return metrics, trials[["enroll", "test", "score", "label"]]


TASKS = {"gender": GenderTask(), "speaker": SpeakerTask()}


def pick_device(name: str = "auto") -> torch.device:
    if name == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("config key 'device' is 'cuda' but no CUDA device is visible to this job")
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    return torch.device(name)


def run_one(task: str, cfg: dict, *, target: str, condition: str, seed: int, encoder: torch.nn.Module,
            stores: dict[str, AudioStore], selections: dict[str, dict], device: torch.device,
            sample_rate: int = 16000, log=print, checkpoint=None) -> tuple[dict, pd.DataFrame | None]:
    """Fine-tune `encoder` (consumed: pass a fresh copy) on the condition's training set, evaluate on the
    target's test set; return the run record and its per-item scores. `checkpoint` (a
    `cltm.checkpoints.Checkpoint`) makes the training resumable."""
    t0 = time.perf_counter()
    plugin = TASKS[task]
    items = training_items(target, condition, selections)
    metas = [stores[lang].meta(u) for lang, u in items]
    labels, n_classes = plugin.labels(metas, items)
    waves = [stores[lang][u] for lang, u in items]
    log(f"{task} {target} {condition} seed {seed}: {len(items)} training clips, {n_classes} classes, device {device}")

    # the run's own generators (cltm.rng): head init, dropout, LayerDrop and time masking draw as if alone
    generators = RunGenerators(seed, device)
    with generators.active():
        model = Classifier(encoder, n_classes, plugin.pooling)
        loss = fine_tune(model, waves, labels, cfg["training"], seed=seed, device=device, sample_rate=sample_rate,
                         log=log, checkpoint=checkpoint)
        t_train = time.perf_counter() - t0
        metrics, scores = plugin.evaluate(model, stores[target], selections[target], cfg, device)
    log(f"{task} {target} {condition} seed {seed}: " + ", ".join(f"{k} {v:.4f}" for k, v in metrics.items()))

    donor = donor_of(condition)
    target_clips = sum(1 for lang, _ in items if lang == target)
    record = {
        "task": task, "target": target, "condition": condition, "donor": donor, "seed": seed,
        "metric": cfg["metric"], "value": metrics[cfg["metric"]], "metrics": metrics,
        "sizes": {
            "train_clips": len(items), "target_clips": target_clips, "donor_clips": len(items) - target_clips,
            "train_speakers": len({(lang, m["speaker"]) for (lang, _), m in zip(items, metas)}),
            "train_seconds": round(sum(w.size for w in waves) / sample_rate, 2),
            "classes": n_classes, "test_clips": len(selections[target]["test"]),
            "test_speakers": len(selections[target]["test_speakers"]),
            "trials": len(selections[target].get("trials", [])),
        },
        "loss": loss,
        "timing": {"train_s": round(t_train, 2), "eval_s": round(time.perf_counter() - t0 - t_train, 2)},
        "device": str(device), "torch": torch.__version__, "cltm": __version__,
    }
    return record, scores
