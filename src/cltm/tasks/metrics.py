"""Per-run performance metrics for the two paralinguistic tasks.

Gender identification is scored with macro-F1 (accuracy is logged too);
speaker verification with ROC-AUC over a trial list, plus EER and the
normalised minimum detection cost (minDCF) that speaker-recognition users
expect.  scikit-learn computes what it has (macro-F1, accuracy, ROC-AUC
and the ROC curve); this module adds what it has not: the EER interpolated
on that ROC, the normalised minDCF over its thresholds, and input checks
with clear messages.

Conventions
-----------
* Binary labels are 0/1 (bools accepted).  For verification, 1 = target
  trial (same speaker), 0 = non-target trial.
* Higher scores mean "more likely the same speaker"; a trial is accepted
  when ``score >= threshold``.
* EER and minDCF are returned as fractions (0.05 = 5 %), never percentages.
* minDCF is always *normalised*: ``C_det / min(c_miss * p, c_fa * (1 - p))``.
"""

from __future__ import annotations

import numpy as np
from sklearn.metrics import accuracy_score, f1_score, roc_auc_score, roc_curve

__all__ = [
    "classification_metrics",
    "roc_auc",
    "eer",
    "min_dcf",
    "verification_metrics",
]


# --------------------------------------------------------------------------
# input validation
# --------------------------------------------------------------------------


def _as_binary(values, name: str) -> np.ndarray:
    """Return ``values`` as a 1-D int array of 0/1, or raise a clear ValueError."""
    arr = np.asarray(values)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be 1-D, got shape {arr.shape}")
    if arr.dtype == bool:
        return arr.astype(np.int64)
    if arr.size and not np.issubdtype(arr.dtype, np.number):
        raise ValueError(f"{name} must be numeric 0/1 labels, got dtype {arr.dtype}")
    bad = ~np.isin(arr, (0, 1))
    if bad.any():
        found = np.unique(arr[bad])[:5].tolist()
        raise ValueError(f"{name} must contain only 0 and 1; also found {found}")
    return arr.astype(np.int64)


def _check_lengths(a: np.ndarray, b: np.ndarray, name_a: str, name_b: str) -> None:
    if a.shape[0] != b.shape[0]:
        raise ValueError(
            f"{name_a} and {name_b} differ in length: {a.shape[0]} vs {b.shape[0]}"
        )
    if a.shape[0] == 0:
        raise ValueError(f"{name_a} and {name_b} are empty")


def _verification_inputs(scores, labels) -> tuple[np.ndarray, np.ndarray]:
    """Validate a (scores, labels) trial list; return float scores and 0/1 labels."""
    s = np.asarray(scores, dtype=float)
    if s.ndim != 1:
        raise ValueError(f"scores must be 1-D, got shape {s.shape}")
    y = _as_binary(labels, "labels")
    _check_lengths(s, y, "scores", "labels")
    if not np.all(np.isfinite(s)):
        raise ValueError(
            f"scores contain {int((~np.isfinite(s)).sum())} non-finite value(s) (NaN/inf)"
        )
    n_pos = int(y.sum())
    n_neg = int(y.size - n_pos)
    if n_pos == 0 or n_neg == 0:
        raise ValueError(
            "verification metrics need both target (1) and non-target (0) trials; "
            f"got {n_pos} target and {n_neg} non-target trial(s)"
        )
    return s, y


# --------------------------------------------------------------------------
# classification (gender identification)
# --------------------------------------------------------------------------


def classification_metrics(y_true, y_pred, n_classes: int | None = None) -> dict:
    """Macro-F1 and accuracy for integer class labels 0 .. n_classes - 1 (default 2: binary 0/1).

    Macro-F1 averages the F1 of *every* class, even when a class never
    occurs in ``y_true`` or is never predicted; such a class has F1 = 0
    (scikit-learn's ``f1_score(average="macro", labels=range(n_classes),
    zero_division=0)``).

    Returns ``{"macro_f1": float, "accuracy": float}``.
    """
    if n_classes is None or n_classes == 2:
        t = _as_binary(y_true, "y_true")
        p = _as_binary(y_pred, "y_pred")
        n_classes = 2
    else:
        t, p = (_as_classes(v, name, n_classes) for v, name in ((y_true, "y_true"), (y_pred, "y_pred")))
    _check_lengths(t, p, "y_true", "y_pred")
    labels = list(range(n_classes))  # every class averaged, present or not (F1 0 when absent)
    macro_f1 = f1_score(t, p, average="macro", labels=labels, zero_division=0)
    return {"macro_f1": float(macro_f1), "accuracy": float(accuracy_score(t, p))}


def binary_auc(y_true, score) -> float:
    """ROC-AUC of a binary classifier: the chance that a clip of class 1 gets a higher `score` (its
    probability of class 1) than a clip of class 0 (a tie counts half); 0.5 when `y_true` holds one class
    only (no pair to rank). Unlike macro-F1 it does not depend on where the decision threshold falls, so
    it moves smoothly with how well a model orders the clips (the planted task's metric: docs/demo.md)."""
    t = _as_binary(y_true, "y_true")
    _check_lengths(t, np.asarray(score, dtype=float), "y_true", "score")
    return 0.5 if t.min() == t.max() else roc_auc(score, t)


def _as_classes(values, name: str, n_classes: int) -> np.ndarray:
    """``values`` as a 1-D int array of labels in 0 .. n_classes - 1, or a clear ValueError."""
    arr = np.asarray(values)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be 1-D, got shape {arr.shape}")
    if arr.size and not np.issubdtype(arr.dtype, np.integer):
        raise ValueError(f"{name} must be integer class labels, got dtype {arr.dtype}")
    bad = (arr < 0) | (arr >= n_classes)
    if bad.any():
        raise ValueError(f"{name} must lie in 0..{n_classes - 1}; also found {np.unique(arr[bad])[:5].tolist()}")
    return arr.astype(np.int64)


# --------------------------------------------------------------------------
# verification (speaker verification)
# --------------------------------------------------------------------------


def _roc_points(s: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """False-acceptance and false-rejection rates at every distinct threshold.

    scikit-learn's ROC with every threshold kept (``drop_intermediate=False``),
    from "accept nothing" (FAR 0, FRR 1) to "accept everything" (FAR 1,
    FRR 0); tied scores form a single point, so a tie is crossed as one
    straight ROC segment (the trapezoid convention).
    """
    fpr, tpr, _ = roc_curve(y, s, drop_intermediate=False)
    return fpr, 1.0 - tpr


def roc_auc(scores, labels) -> float:
    """Area under the ROC curve (labels 1 = target trial): scikit-learn's
    ``roc_auc_score`` (trapezoidal; a tie counts as half a win)."""
    s, y = _verification_inputs(scores, labels)
    return float(roc_auc_score(y, s))


def eer(scores, labels) -> float:
    """Equal error rate as a fraction.

    The ROC (FAR, FRR at every distinct threshold) is treated as piecewise
    linear and the EER is the point on it where FAR = FRR, i.e. the same
    linear interpolation that SpeechBrain/WeSpeaker do with
    ``brentq(lambda x: 1 - x - interp1d(fpr, tpr)(x), 0, 1)``.
    """
    s, y = _verification_inputs(scores, labels)
    return _eer_of(*_roc_points(s, y))


def _eer_of(far: np.ndarray, frr: np.ndarray) -> float:
    diff = frr - far  # +1 at "accept nothing", -1 at "accept everything", non-increasing
    k = int(np.argmax(diff <= 0))  # first point at or past the crossing (k >= 1)
    if diff[k] == 0:
        return float(far[k])
    # the crossing lies on the segment (k-1, k): interpolate linearly along it
    t = diff[k - 1] / (diff[k - 1] - diff[k])
    return float(far[k - 1] + t * (far[k] - far[k - 1]))


def min_dcf(scores, labels, p_target, c_miss=1.0, c_fa=1.0) -> float:
    """Normalised minimum detection cost.

    ``min over thresholds of (c_miss * p * P_miss + c_fa * (1 - p) * P_fa)
    / min(c_miss * p, c_fa * (1 - p))``; thresholds include "accept
    nothing" and "accept everything", so the result is at most 1.
    """
    if not 0.0 < float(p_target) < 1.0:
        raise ValueError(f"p_target must lie strictly between 0 and 1, got {p_target}")
    if c_miss <= 0 or c_fa <= 0:
        raise ValueError(f"c_miss and c_fa must be positive, got {c_miss} and {c_fa}")
    s, y = _verification_inputs(scores, labels)
    return _min_dcf_of(*_roc_points(s, y), p_target, c_miss, c_fa)


def _min_dcf_of(far: np.ndarray, frr: np.ndarray, p_target, c_miss=1.0, c_fa=1.0) -> float:
    c_det = c_miss * p_target * frr + c_fa * (1.0 - p_target) * far
    c_default = min(c_miss * p_target, c_fa * (1.0 - p_target))
    return float(c_det.min() / c_default)


def verification_metrics(scores, labels) -> dict:
    """All verification metrics of one trial list.

    Returns ``{"roc_auc", "eer", "min_dcf_p0.01", "min_dcf_p0.05"}``
    (EER and minDCF as fractions; minDCF normalised, c_miss = c_fa = 1,
    p_target 0.01 as NIST/WeSpeaker and 0.05 as VoxSRC).

    The inputs are checked once and the ROC computed once for EER and both minDCFs (the values are those of
    `roc_auc`, `eer` and `min_dcf` called one by one, at a third of the cost).
    """
    s, y = _verification_inputs(scores, labels)
    far, frr = _roc_points(s, y)
    return {
        "roc_auc": float(roc_auc_score(y, s)),
        "eer": _eer_of(far, frr),
        "min_dcf_p0.01": _min_dcf_of(far, frr, 0.01),
        "min_dcf_p0.05": _min_dcf_of(far, frr, 0.05),
    }
