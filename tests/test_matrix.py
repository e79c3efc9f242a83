"""cltm.analysis.matrix on hand-built run tables with known values."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from cltm.analysis.matrix import TransferResult, condition_table, matrix_summary, transfer_matrices

LANGS = ["en", "zh-CN", "de"]  # zh-CN: a code with a hyphen

# seed values per (target, condition); means are round numbers, sd = 0.02 everywhere
BASE = {
    "en": {"single": 0.72, "dual": 0.82, "donor-zh-CN": 0.77, "donor-de": 0.84},
    "zh-CN": {"single": 0.60, "dual": 0.70, "donor-en": 0.55, "donor-de": 0.65},
    "de": {"single": 0.80, "dual": 0.90, "donor-en": 0.88, "donor-zh-CN": 0.79},
}
OFFSETS = np.array([-0.02, 0.0, 0.02])  # three seeds: mean unchanged, sd exactly 0.02


def make_runs(base=BASE, offsets=OFFSETS, metric="macro_f1", task="gender") -> pd.DataFrame:
    """Seed values: each condition's offsets are `offsets` rolled by the condition's place (single 0, dual 1,
    first donor 2, ...), so every condition has the same mean and sd, and seed s of two conditions differ:
    the pairing of the seeds matters."""
    rows = []
    for target, conditions in base.items():
        for k, (condition, mean) in enumerate(conditions.items()):
            donor = condition[len("donor-"):] if condition.startswith("donor-") else ""
            for seed, off in enumerate(np.roll(offsets, k)):
                rows.append(
                    {"task": task, "target": target, "condition": condition, "donor": donor,
                     "seed": seed, metric: mean + off, "accuracy": 0.5}
                )
    return pd.DataFrame(rows)


SE = 0.02 / math.sqrt(3)


# ----------------------------------------------------------------- condition table


def test_condition_table_statistics():
    table = condition_table(make_runs(), "macro_f1").set_index(["target", "condition"])
    row = table.loc[("en", "single")]
    assert row["n_seeds"] == 3
    assert row["mean"] == pytest.approx(0.72)
    assert row["sd"] == pytest.approx(0.02)
    assert row["se"] == pytest.approx(SE)
    assert table.loc[("en", "donor-zh-CN"), "donor"] == "zh-CN"
    assert pd.isna(table.loc[("en", "dual"), "donor"])


def test_condition_table_single_seed_has_nan_spread():
    runs = make_runs(offsets=np.array([0.0]))
    table = condition_table(runs, "macro_f1")
    assert (table["n_seeds"] == 1).all()
    assert table["sd"].isna().all() and table["se"].isna().all()


# ----------------------------------------------------------------- matrix values


def test_layout_and_diagonal():
    res = transfer_matrices(make_runs(), "macro_f1", LANGS)
    for frame in (res.cltm, res.cltm_se, res.relative_change, res.relative_change_se):
        assert list(frame.index) == LANGS and list(frame.columns) == LANGS
        assert frame.index.name == "target" and frame.columns.name == "donor"
    assert np.all(np.diag(res.cltm.to_numpy()) == 1.0)
    assert np.all(np.diag(res.cltm_se.to_numpy()) == 0.0)
    assert list(res.baselines.index) == LANGS
    assert len(res.cells) == len(LANGS) ** 2


def test_cells_computed_by_hand():
    res = transfer_matrices(make_runs(), "macro_f1", LANGS)
    # en <- zh-CN: (0.77 - 0.72) / (0.82 - 0.72) = 0.5
    assert res.cltm.loc["en", "zh-CN"] == pytest.approx(0.5)
    # en <- de: (0.84 - 0.72) / 0.10 = 1.2 (donor beats more target data)
    assert res.cltm.loc["en", "de"] == pytest.approx(1.2)
    # zh-CN <- en: (0.55 - 0.60) / 0.10 = -0.5 (donor hurts)
    assert res.cltm.loc["zh-CN", "en"] == pytest.approx(-0.5)
    assert res.relative_change.loc["en", "zh-CN"] == pytest.approx(0.05 / 0.72)
    # diagonal relative change uses Perf(i+i)
    assert res.relative_change.loc["de", "de"] == pytest.approx(0.10 / 0.80)

    # paired delta-method SE for en <- zh-CN, written out: num = 0.05, den = 0.10, so the gradient
    # (dM/dA, dM/dB, dM/dD) = ((B - D)/den^2, 1/den, -num/den^2) = (-5, 10, -5); seed offsets
    # A: (-.02, 0, .02), D: (.02, -.02, 0), B: (0, .02, -.02); L_s = -5 A_s + 10 B_s - 5 D_s has offsets
    # (0, .3, -.3): sd .3, SE .3 / sqrt(3). (Independent seeds would give sqrt(25 + 100 + 25) x SE = 0.141.)
    assert res.cltm_se.loc["en", "zh-CN"] == pytest.approx(0.3 / math.sqrt(3))
    # R = B/A - 1: gradient (-B/A^2, 1/A); L_s offsets -0.77/0.72^2 x A + 1/0.72 x B
    lin = -0.77 / 0.72**2 * np.array([-0.02, 0, 0.02]) + 1 / 0.72 * np.array([0, 0.02, -0.02])
    assert res.relative_change_se.loc["en", "zh-CN"] == pytest.approx(lin.std(ddof=1) / math.sqrt(3))
    assert (res.cells["se_method"] == "paired").all() and (res.cells["n_paired"] == 3).all()

    base = res.baselines.loc["en"]
    assert base["perf_single"] == pytest.approx(0.72) and base["perf_dual"] == pytest.approx(0.82)
    assert base["n_single"] == 3 and base["n_dual"] == 3
    assert base["denominator"] == pytest.approx(0.10)
    # paired: D_s - A_s has offsets (.04, -.02, -.02): sd sqrt(.0012), SE .02
    assert base["denominator_se"] == pytest.approx(0.02)
    assert base["denominator_df"] == 2 and base["se_method"] == "paired"
    assert not res.baselines["flagged"].any()

    cell = res.cells.set_index(["target", "donor"]).loc[("en", "zh-CN")]
    assert cell["perf_bilingual"] == pytest.approx(0.77)
    assert cell["n_bilingual"] == 3 and cell["condition"] == "donor-zh-CN"
    assert cell["cltm"] == pytest.approx(0.5)


def _finite_difference_gradient(f, x, h=1e-7):
    x = np.asarray(x, float)
    grad = np.zeros_like(x)
    for k in range(x.size):
        step = np.zeros_like(x)
        step[k] = h
        grad[k] = (f(x + step) - f(x - step)) / (2 * h)
    return grad


def test_delta_method_matches_numerical_jacobian():
    # unequal SEs per condition so that every term of the formula matters
    base = {
        "a": {"single": 0.70, "dual": 0.78, "donor-b": 0.75},
        "b": {"single": 0.60, "dual": 0.66, "donor-a": 0.58},
    }
    rng = np.random.default_rng(0)
    rows = []
    for t, conds in base.items():
        for c, m in conds.items():
            for s in range(int(rng.integers(3, 8))):
                rows.append({"target": t, "condition": c, "seed": s,
                             "roc_auc": m + rng.normal(0, rng.uniform(0.005, 0.03))})
    runs = pd.DataFrame(rows)
    res = transfer_matrices(runs, "roc_auc", ["a", "b"])
    # the conditions have different seeds: the cells fall back to independent means, and say so
    assert set(res.cells.loc[res.cells["target"] != res.cells["donor"], "se_method"]) == {"independent (seeds differ)"}
    stats = condition_table(runs, "roc_auc").set_index(["target", "condition"])
    for t, d in (("a", "b"), ("b", "a")):
        a, b, dd = (stats.loc[(t, c)] for c in ("single", f"donor-{d}", "dual"))
        x = [a["mean"], b["mean"], dd["mean"]]
        se = np.array([a["se"], b["se"], dd["se"]])

        g = _finite_difference_gradient(lambda v: (v[1] - v[0]) / (v[2] - v[0]), x)
        assert res.cltm.loc[t, d] == pytest.approx((x[1] - x[0]) / (x[2] - x[0]))
        assert res.cltm_se.loc[t, d] == pytest.approx(np.sqrt(np.sum((g * se) ** 2)), rel=1e-5)

        g = _finite_difference_gradient(lambda v: (v[1] - v[0]) / v[0], x)
        assert res.relative_change_se.loc[t, d] == pytest.approx(
            np.sqrt(np.sum((g * se) ** 2)), rel=1e-5
        )


def test_delta_method_roughly_matches_monte_carlo():
    # many seeds, so the sample SDs are close to the true ones
    true = {"single": (0.70, 0.03), "dual": (0.80, 0.03), "donor-b": (0.76, 0.04)}
    n = 200
    rng = np.random.default_rng(1)
    rows = []
    for c, (m, sd) in true.items():
        rows += [{"target": "a", "condition": c, "seed": s, "f1": v}
                 for s, v in enumerate(rng.normal(m, sd, n))]
    for c, m in (("single", 0.5), ("dual", 0.6), ("donor-a", 0.55)):
        rows += [{"target": "b", "condition": c, "seed": s, "f1": v}
                 for s, v in enumerate(rng.normal(m, 0.03, n))]
    res = transfer_matrices(pd.DataFrame(rows), "f1", ["a", "b"])

    # simulate the three seed means many times and look at the spread of the CLTM
    sims = 20000
    means = {c: rng.normal(m, sd / np.sqrt(n), sims) for c, (m, sd) in true.items()}
    cltm = (means["donor-b"] - means["single"]) / (means["dual"] - means["single"])
    assert res.cltm_se.loc["a", "b"] == pytest.approx(np.std(cltm), rel=0.12)


# ----------------------------------------------------------------- flagging


def test_row_with_dual_close_to_single_is_flagged_not_hidden():
    base = {k: dict(v) for k, v in BASE.items()}
    base["de"]["dual"] = 0.801  # gain 0.001, far below 2 SE (about 0.033)
    res = transfer_matrices(make_runs(base), "macro_f1", LANGS)
    assert res.baselines.loc["de", "flagged"]
    assert not res.baselines.loc[["en", "zh-CN"], "flagged"].any()
    de_cells = res.cells[res.cells["target"] == "de"]
    assert de_cells["flagged"].all() and len(de_cells) == 3
    assert not res.cells.loc[res.cells["target"] != "de", "flagged"].any()
    # the exploding value is still reported: (0.88 - 0.80) / 0.001 = 80
    assert res.cltm.loc["de", "en"] == pytest.approx(80.0)
    assert np.isfinite(res.cltm_se.loc["de", "en"])
    assert res.cltm.loc["de", "de"] == 1.0
    assert matrix_summary(res)["n_flagged_rows"] == 1


def test_negative_denominator_and_single_seed_are_flagged():
    base = {k: dict(v) for k, v in BASE.items()}
    base["en"]["dual"] = 0.70  # more target data hurt
    assert transfer_matrices(make_runs(base), "macro_f1", LANGS).baselines.loc["en", "flagged"]
    single_seed = transfer_matrices(make_runs(offsets=np.array([0.0])), "macro_f1", LANGS)
    assert single_seed.baselines["flagged"].all()  # SE unknown -> not clearly positive


def test_zero_denominator_reports_inf_and_flags():
    base = {k: dict(v) for k, v in BASE.items()}
    base["de"]["dual"] = base["de"]["single"]  # exactly no gain from more target data
    res = transfer_matrices(make_runs(base), "macro_f1", LANGS)
    assert res.baselines.loc["de", "flagged"]
    assert res.cltm.loc["de", "en"] == np.inf  # (0.88 - 0.80) / 0, reported as is
    assert res.cltm.loc["de", "de"] == 1.0
    assert res.relative_change.loc["de", "en"] == pytest.approx(0.08 / 0.80)
    assert matrix_summary(res)["share_positive"] == pytest.approx(4 / 6)


def test_flag_threshold_follows_flag_alpha():
    # denominator 0.10 over its paired SE 0.02 is 5 SE: above t(0.975, 2) = 4.30, below t(0.995, 2) = 9.92
    res_loose = transfer_matrices(make_runs(), "macro_f1", LANGS, flag_alpha=0.05)
    res_strict = transfer_matrices(make_runs(), "macro_f1", LANGS, flag_alpha=0.01)
    assert not res_loose.baselines["flagged"].any()
    assert res_strict.baselines["flagged"].all()


# ----------------------------------------------------------------- no filtering, errors


def test_every_run_counts_outlier_changes_mean():
    runs = make_runs()
    outlier = runs[(runs.target == "en") & (runs.condition == "single")].iloc[[0]].copy()
    outlier["seed"], outlier["macro_f1"] = 99, 0.92  # beats the dual mean: the reference dropped such seeds
    res = transfer_matrices(pd.concat([runs, outlier], ignore_index=True), "macro_f1", LANGS)
    base = res.baselines.loc["en"]
    assert base["n_single"] == 4
    assert base["perf_single"] == pytest.approx((0.70 + 0.72 + 0.74 + 0.92) / 4)
    assert res.cltm.loc["en", "zh-CN"] == pytest.approx((0.77 - 0.77) / (0.82 - 0.77))


def test_missing_runs_are_all_named():
    runs = make_runs()
    gone = ((runs.target == "de") & (runs.condition == "donor-zh-CN")) | (
        (runs.target == "en") & (runs.condition == "dual")
    )
    with pytest.raises(ValueError) as err:
        transfer_matrices(runs[~gone], "macro_f1", LANGS)
    message = str(err.value)
    assert "(de, donor-zh-CN)" in message and "(en, dual)" in message
    assert message.startswith("2 ")


def test_missing_language_entirely():
    with pytest.raises(ValueError, match=r"\(fr, single\).*\(fr, dual\).*\(en, donor-fr\)"):
        transfer_matrices(make_runs(), "macro_f1", ["fr"] + LANGS)


def test_missing_metric_names_available_columns():
    with pytest.raises(ValueError, match=r"'roc_auc'.*available columns.*macro_f1"):
        transfer_matrices(make_runs(), "roc_auc", LANGS)
    with pytest.raises(ValueError, match="'roc_auc'"):
        condition_table(make_runs(), "roc_auc")


def test_other_input_errors():
    runs = make_runs()
    with pytest.raises(ValueError, match="several tasks"):
        transfer_matrices(pd.concat([runs, make_runs(task="speaker")]), "macro_f1", LANGS)
    bad = runs.copy()
    bad.loc[0, "macro_f1"] = np.nan
    with pytest.raises(ValueError, match=r"1 run\(s\) have a missing"):
        transfer_matrices(bad, "macro_f1", LANGS)
    clash = runs.copy()
    clash.loc[clash.condition == "donor-de", "donor"] = "fr"
    with pytest.raises(ValueError, match="donor column disagrees"):
        transfer_matrices(clash, "macro_f1", LANGS)
    with pytest.raises(ValueError, match="more than once"):
        transfer_matrices(runs, "macro_f1", ["en", "en"])


def test_sub_matrix_ignores_other_languages():
    runs = make_runs()
    runs.loc[runs.target == "zh-CN", "macro_f1"] = np.nan  # outside the sub-matrix: not checked
    res = transfer_matrices(runs, "macro_f1", ["de", "en"])
    assert list(res.cltm.index) == ["de", "en"]
    assert res.cltm.loc["de", "en"] == pytest.approx((0.88 - 0.80) / 0.10)


# ----------------------------------------------------------------- summary


def _result_from_matrix(m, flagged):
    langs = ["a", "b", "c"]
    df = pd.DataFrame(m, index=langs, columns=langs)
    baselines = pd.DataFrame({"flagged": flagged}, index=pd.Index(langs, name="target"))
    return TransferResult(cltm=df, cltm_se=df * 0, relative_change=df, relative_change_se=df * 0,
                          baselines=baselines, cells=pd.DataFrame())


def test_matrix_summary_by_hand():
    m = np.array([[1.0, 0.5, -0.2], [1.5, 1.0, 0.3], [0.4, -0.1, 1.0]])
    s = matrix_summary(_result_from_matrix(m, [False, True, False]))
    assert s["n_languages"] == 3 and s["n_offdiagonal"] == 6
    # off-diagonal M - M^T: -1, -0.6, 0.4 (each twice); ||M_off||^2 = 2.8
    assert s["asymmetry"] == pytest.approx(math.sqrt(2 * (1 + 0.36 + 0.16)) / math.sqrt(2.8))
    assert s["asymmetry_full"] == pytest.approx(math.sqrt(3.04) / math.sqrt(2.8 + 3))
    # sum of (m - 1)^2 off the diagonal = 4.0 over 6 cells
    assert s["distance_from_ones"] == pytest.approx(2.0 / math.sqrt(6))
    assert s["distance_from_ones_full"] == pytest.approx(2.0 / 3)
    assert s["share_positive"] == pytest.approx(4 / 6)
    assert s["share_negative"] == pytest.approx(2 / 6)
    assert s["share_above_one"] == pytest.approx(1 / 6)
    assert s["reciprocity"] == pytest.approx(1 / 3)  # only {a, b}
    assert s["reciprocity_mass"] == pytest.approx((0.5 + 0 + 0) / (1.5 + 0.4 + 0.3))
    assert s["donor_strength_mean"] == pytest.approx({"a": 0.95, "b": 0.2, "c": 0.05})
    assert s["recipient_strength_mean"] == pytest.approx({"a": 0.15, "b": 0.9, "c": 0.15})
    # the reference's strengths: sums of the positive part off the diagonal
    assert s["donor_strength_positive_sum"] == pytest.approx({"a": 1.9, "b": 0.5, "c": 0.3})
    assert s["recipient_strength_positive_sum"] == pytest.approx({"a": 0.5, "b": 1.8, "c": 0.4})
    assert "reference" in s["strength_definitions"]["donor_strength_positive_sum"]
    assert s["n_flagged_rows"] == 1
    # unflagged rows a and c: 0.5, -0.2, 0.4, -0.1
    assert s["share_positive_unflagged"] == pytest.approx(0.5)
    assert s["share_negative_unflagged"] == pytest.approx(0.5)
    assert s["share_above_one_unflagged"] == 0.0


def test_matrix_summary_all_flagged_gives_nan_unflagged_shares():
    m = np.array([[1.0, 0.5, -0.2], [1.5, 1.0, 0.3], [0.4, -0.1, 1.0]])
    s = matrix_summary(_result_from_matrix(m, [True, True, True]))
    assert s["n_flagged_rows"] == 3
    assert math.isnan(s["share_positive_unflagged"])
    assert s["share_positive"] == pytest.approx(4 / 6)


def test_matrix_summary_on_computed_result_is_json_ready():
    import json

    s = matrix_summary(transfer_matrices(make_runs(), "macro_f1", LANGS))
    json.dumps(s)  # plain floats/ints/dicts only
    assert set(s["donor_strength_mean"]) == set(LANGS)
