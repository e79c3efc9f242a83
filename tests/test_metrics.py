"""cltm.tasks.metrics: scikit-learn computes macro-F1, accuracy, ROC-AUC and the ROC; tested here is what this
module adds (the EER interpolated on that ROC, the normalised minDCF, the input checks) and the
conventions it chooses (both classes in macro-F1, ties as half a win), against brute-force references."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.interpolate import interp1d
from scipy.optimize import brentq

from cltm.tasks.metrics import binary_auc, classification_metrics, eer, min_dcf, roc_auc, verification_metrics


def _trial_lists(seed: int = 0, n_lists: int = 40):
    """Random trial lists, half of them with heavily tied (rounded) scores."""
    rng = np.random.default_rng(seed)
    for k in range(n_lists):
        n = int(rng.integers(4, 400))
        labels = rng.integers(0, 2, n)
        labels[:2] = [0, 1]  # both classes always present
        scores = rng.normal(size=n) + rng.uniform(0, 2) * labels
        if k % 2:
            scores = np.round(scores, 1)  # many ties
        yield scores, labels


def _brute_force_roc(scores, labels):
    """(FPR, TPR) accepting score >= t for every distinct t, from 'accept nothing' to 'accept everything'."""
    scores, labels = np.asarray(scores, float), np.asarray(labels)
    fpr, tpr = [0.0], [0.0]
    for t in np.unique(scores)[::-1]:
        accept = scores >= t
        fpr.append(np.sum(accept & (labels == 0)) / np.sum(labels == 0))
        tpr.append(np.sum(accept & (labels == 1)) / np.sum(labels == 1))
    return np.array(fpr), np.array(tpr)


def _brute_force_auc(scores, labels) -> float:
    """P(target score > non-target score) + P(tie) / 2, over every pair."""
    scores, labels = np.asarray(scores, float), np.asarray(labels)
    pos, neg = scores[labels == 1][:, None], scores[labels == 0][None, :]
    return float(np.mean((pos > neg) + 0.5 * (pos == neg)))


def _reference_eer(scores, labels) -> float:
    """EER as WeSpeaker computes it: root of 1 - x - tpr(x) on the interpolated ROC."""
    fpr, tpr = _brute_force_roc(scores, labels)
    return brentq(lambda x: 1.0 - x - interp1d(fpr, tpr)(x), 0.0, 1.0, xtol=1e-12)


def _brute_force_min_dcf(scores, labels, p, c_miss=1.0, c_fa=1.0) -> float:
    """Loop over every threshold (accept when score >= t), plus 'accept nothing'."""
    scores, labels = np.asarray(scores, float), np.asarray(labels)
    n_pos, n_neg = (labels == 1).sum(), (labels == 0).sum()
    best = np.inf
    for t in np.r_[np.unique(scores), np.inf]:
        accept = scores >= t
        p_miss = np.sum(~accept & (labels == 1)) / n_pos
        p_fa = np.sum(accept & (labels == 0)) / n_neg
        best = min(best, c_miss * p * p_miss + c_fa * (1 - p) * p_fa)
    return best / min(c_miss * p, c_fa * (1 - p))


# -------------------------------------------------------------- classification


@pytest.mark.parametrize(
    "y_true, y_pred, macro_f1",
    [
        ([0, 1, 0, 1], [1, 1, 1, 1], (0 + 2 / 3) / 2),  # class 0 never predicted: its F1 is 0
        ([1, 1, 1, 1], [1, 1, 0, 1], (0 + 6 / 7) / 2),  # class 0 never occurs: still averaged, F1 0
        ([0, 0, 0], [0, 0, 0], 0.5),  # class 1 neither occurs nor is predicted: F1 0, not left out
        ([True, False, True], [True, True, True], (0 + 0.8) / 2),  # bools accepted
    ],
)
def test_classification_averages_both_classes_even_when_one_is_absent(y_true, y_pred, macro_f1):
    got = classification_metrics(y_true, y_pred)
    assert got["macro_f1"] == pytest.approx(macro_f1, abs=1e-12)
    assert got["accuracy"] == pytest.approx(np.mean(np.asarray(y_true) == np.asarray(y_pred)))


def test_classification_hand_example():
    # class 1: TP 2, FP 1, FN 0 -> F1 0.8; class 0: TP 1, FP 0, FN 1 -> F1 2/3
    got = classification_metrics([0, 0, 1, 1], [0, 1, 1, 1])
    assert got["macro_f1"] == pytest.approx((0.8 + 2 / 3) / 2)
    assert got["accuracy"] == pytest.approx(0.75)


def test_classification_errors():
    with pytest.raises(ValueError, match="differ in length: 3 vs 2"):
        classification_metrics([0, 1, 1], [0, 1])
    with pytest.raises(ValueError, match="only 0 and 1"):
        classification_metrics([0, 2], [0, 1])


# ---------------------------------------------------------------- verification


def test_roc_auc_counts_a_tie_as_half_a_win():
    for scores, labels in _trial_lists():
        assert roc_auc(scores, labels) == pytest.approx(_brute_force_auc(scores, labels), abs=1e-12)
    # target 0.5 ties non-target 0.5 (half), beats 0.1 (one); target 0.9 beats both: (0.5 + 1 + 2) / 4
    assert roc_auc([0.1, 0.5, 0.5, 0.9], [0, 0, 1, 1]) == pytest.approx(3.5 / 4)


def test_roc_auc_all_tied_is_half():
    assert roc_auc([0.3] * 6, [0, 1, 0, 1, 1, 0]) == pytest.approx(0.5)


def test_eer_matches_interpolated_roc_reference():
    for scores, labels in _trial_lists(seed=2):
        assert eer(scores, labels) == pytest.approx(_reference_eer(scores, labels), abs=1e-9)


def test_eer_hand_examples():
    # perfectly separated -> 0; perfectly inverted -> 1
    assert eer([0.1, 0.2, 0.8, 0.9], [0, 0, 1, 1]) == 0.0
    assert eer([0.9, 0.8, 0.2, 0.1], [0, 0, 1, 1]) == 1.0
    # one swapped pair among 2+2 trials: ROC (0,0)->(0,.5)->(.5,.5)->(.5,1)->(1,1), EER 0.5 at FAR=FRR
    assert eer([0.1, 0.6, 0.5, 0.9], [0, 0, 1, 1]) == pytest.approx(0.5)
    # crossing inside a sloped segment: scores tied between a target and a non-target
    # (FAR, FRR) goes (0, 1/2) -> (1/2, 0) in one straight step, so FRR = 1/2 - FAR there
    # and FAR = FRR at 1/4 (no threshold achieves it: it is the interpolated point)
    assert eer([0.1, 0.5, 0.5, 0.9], [0, 0, 1, 1]) == pytest.approx(0.25)


@pytest.mark.parametrize("p", [0.01, 0.05])
def test_min_dcf_matches_brute_force(p):
    for scores, labels in _trial_lists(seed=3, n_lists=25):
        got = min_dcf(scores, labels, p)
        assert got == pytest.approx(_brute_force_min_dcf(scores, labels, p), abs=1e-12)
    scores, labels = next(_trial_lists(seed=4))
    assert min_dcf(scores, labels, p, c_miss=10, c_fa=1) == pytest.approx(
        _brute_force_min_dcf(scores, labels, p, c_miss=10, c_fa=1), abs=1e-12
    )


def test_min_dcf_hand_example():
    # 2 targets (0.9, 0.4), 2 non-targets (0.6, 0.1), p = 0.05:
    #   t = 0.9: P_miss 1/2, P_fa 0   -> 0.05*0.5           = 0.025
    #   t = 0.6: P_miss 1/2, P_fa 1/2 -> 0.025 + 0.95*0.5   = 0.5
    #   t = 0.4: P_miss 0,   P_fa 1/2 -> 0.475
    #   reject all -> 0.05, accept all -> 0.95; min 0.025, normalised by 0.05 -> 0.5
    assert min_dcf([0.9, 0.4, 0.6, 0.1], [1, 1, 0, 0], 0.05) == pytest.approx(0.5)
    # perfect separation costs nothing; a useless system costs the default (1)
    assert min_dcf([0.1, 0.2, 0.8, 0.9], [0, 0, 1, 1], 0.01) == 0.0
    assert min_dcf([0.9, 0.8, 0.2, 0.1], [0, 0, 1, 1], 0.01) == pytest.approx(1.0)


def test_verification_metrics_keys_and_values():
    scores, labels = next(_trial_lists(seed=5))
    got = verification_metrics(scores, labels)
    assert set(got) == {"roc_auc", "eer", "min_dcf_p0.01", "min_dcf_p0.05"}
    assert got["roc_auc"] == pytest.approx(_brute_force_auc(scores, labels))
    assert got["eer"] == pytest.approx(_reference_eer(scores, labels), abs=1e-9)
    assert got["min_dcf_p0.01"] == pytest.approx(_brute_force_min_dcf(scores, labels, 0.01))
    assert got["min_dcf_p0.05"] == pytest.approx(_brute_force_min_dcf(scores, labels, 0.05))
    assert all(isinstance(v, float) for v in got.values())


@pytest.mark.parametrize("fn", [roc_auc, eer, verification_metrics, lambda s, y: min_dcf(s, y, 0.01)])
def test_verification_errors_are_clear(fn):
    with pytest.raises(ValueError, match=r"both target .* got 3 target and 0 non-target"):
        fn([0.1, 0.2, 0.3], [1, 1, 1])
    with pytest.raises(ValueError, match=r"got 0 target and 2 non-target"):
        fn([0.1, 0.2], [0, 0])
    with pytest.raises(ValueError, match="differ in length: 3 vs 2"):
        fn([0.1, 0.2, 0.3], [0, 1])
    with pytest.raises(ValueError, match="non-finite"):
        fn([0.1, np.nan], [0, 1])


def test_min_dcf_rejects_bad_prior():
    with pytest.raises(ValueError, match="p_target"):
        min_dcf([0.1, 0.9], [0, 1], 1.0)


def test_verification_metrics_equal_each_metric_computed_alone():
    # verification_metrics checks its inputs and computes the ROC once for all four: bit-for-bit the values
    # of the functions called one by one (and scikit-learn's ROC-AUC)
    from sklearn.metrics import roc_auc_score

    for scores, labels in _trial_lists(seed=3, n_lists=60):
        got = verification_metrics(scores, labels)
        assert got == {"roc_auc": roc_auc(scores, labels), "eer": eer(scores, labels),
                       "min_dcf_p0.01": min_dcf(scores, labels, 0.01), "min_dcf_p0.05": min_dcf(scores, labels, 0.05)}
        assert got["roc_auc"] == float(roc_auc_score(labels, scores))


def test_binary_auc_ranks_the_second_class_and_ignores_the_threshold():
    """A two-class task's ROC-AUC (the planted task's metric): the probability of class 1 ranks the clips;
    moving every probability (the threshold's place) changes macro-F1 but not the AUC."""
    y = np.array([0, 0, 1, 1, 0, 1])
    p = np.array([0.1, 0.4, 0.35, 0.8, 0.2, 0.9])
    assert binary_auc(y, p) == pytest.approx(roc_auc(p, y)) == pytest.approx(8 / 9)
    assert binary_auc(y, p + 0.3) == pytest.approx(8 / 9)
    assert binary_auc(y, 1 - p) == pytest.approx(1 / 9)
    assert binary_auc([1, 1, 1], [0.2, 0.5, 0.9]) == 0.5  # one class: nothing to rank
    with pytest.raises(ValueError):
        binary_auc([0, 1], [0.5])
