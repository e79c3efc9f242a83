"""Speaker verification: speaker-identification fine-tuning, cosine scoring of trials, ROC-AUC."""

from __future__ import annotations

import numpy as np
import pandas as pd

from cltm.tasks.base import Task

_TRIALS: dict = {}


def trial_columns(test: list, trials: list) -> tuple:
    """The trial list's columns (enroll, test: Series, as pandas infers them; label: an int64 array) and
    the rows of its enrolment and test clips in `test` (torch int64), kept for the trial list's life: the
    runs of a process that score one language's trials (a probe sweep: 340 of them) build them once.
    Cheaper than a DataFrame of the list and pandas' map, which cost a probe run more than its metrics."""
    key = id(trials)
    hit = _TRIALS.get(key)
    if hit is not None and hit[0] is trials and hit[1] == test and len(hit[2][0]) == len(trials):
        return hit[2]
    import torch  # here, not at the top: the task objects stay free of torch (Snakemake plans with them)

    pos = {u: i for i, u in enumerate(test)}
    enroll, other, label = (list(c) for c in zip(*trials)) if trials else ([], [], [])
    cols = (pd.Series(enroll), pd.Series(other), np.array(label, dtype=np.int64),
            torch.from_numpy(np.fromiter((pos[u] for u in enroll), np.int64, len(enroll))),
            torch.from_numpy(np.fromiter((pos[u] for u in other), np.int64, len(other))))
    if len(_TRIALS) > 256:
        _TRIALS.clear()
    _TRIALS[key] = (trials, list(test), cols)
    return cols


class SpeakerVerificationTask(Task):
    """Speaker verification via speaker-identification fine-tuning; cosine scoring of embeddings."""

    kind, default_metric, pooling = "speaker_verification", "roc_auc", "last4"

    @property
    def tta_speeds(self) -> tuple[float, ...]:
        """Test-time augmentation (`tta_speeds`): the speeds each test clip is embedded at, the embeddings
        averaged before scoring; (1.0,) without it."""
        return tuple(float(s) for s in (self.cfg.get("tta_speeds") or [1.0]))

    def excluded(self, rules) -> frozenset:
        return frozenset()

    def labels(self, metas: list[pd.Series], items) -> tuple[np.ndarray, int]:
        # speakers are keyed by language too: donor speakers are extra classes, never merged
        keys = [f"{lang}/{m['speaker']}" for (lang, _), m in zip(items, metas)]
        classes = {k: i for i, k in enumerate(sorted(set(keys)))}
        return np.array([classes[k] for k in keys]), len(classes)

    def score(self, test: list, embeddings, selection: dict) -> tuple[dict, pd.DataFrame]:
        """(metrics, trials with their cosine scores) of the test clips' embeddings [clips, dim] (a torch
        tensor): shared by fine-tuning and probe runs."""
        # here, not at the top: torch and scikit-learn stay unloaded where tasks are only planned (Snakemake)
        import torch

        from cltm.tasks.metrics import verification_metrics

        emb = torch.nn.functional.normalize(embeddings, dim=-1)
        enroll, other, label, ia, ib = trial_columns(test, selection["trials"])
        trials = pd.DataFrame({"enroll": enroll, "test": other,
                               "score": (emb[ia] * emb[ib]).sum(dim=-1).numpy().astype(float), "label": label})
        metrics = verification_metrics(trials["score"].to_numpy(), trials["label"].to_numpy())
        return metrics, trials
