"""Reading the matrix (cltm.analysis, cltm.analysis.families): each analysis checked by hand on small matrices,
the Mantel test against a brute-force enumeration."""

import itertools
import math

import numpy as np
import pandas as pd
import pytest
from scipy.stats import spearmanr

from cltm.analysis.curves import learning_curve_table, recommend_n
from cltm.analysis.seeds import seed_plan
from cltm.analysis.typology import (cluster_order, double_centred, family_mass_test, family_means, family_positive_mass,
                                   holm, mantel_test, top_pairs, transfer_profiles, typology_table)
from cltm.config import analysis_settings, ladder_sizes
from cltm.analysis.families import DISTANCE_TYPES, family_order, language_distances, language_table
from cltm.data.selection import SelectionError, nested_subset

LANGS = ["a", "b", "c", "d"]
FAM = pd.Series({"a": "F", "b": "F", "c": "G", "d": "H"})


def square(values, langs=LANGS):
    return pd.DataFrame(np.array(values, dtype=float), index=langs, columns=langs)


M = square([[1.0, 0.8, -0.2, 0.4],
            [0.6, 1.0, 0.1, np.nan],
            [-0.5, 0.3, 1.0, 0.2],
            [0.9, -0.1, 0.0, 1.0]])


# ------------------------------------------------------------------ families


def test_family_positive_mass_by_hand():
    # positive off-diagonal mass: 0.8 + 0.4 + 0.6 + 0.1 + 0.3 + 0.2 + 0.9 = 3.3 (NaN and negatives count 0);
    # in-family (F = {a, b}): 0.8 + 0.6 = 1.4; G and H have one member each
    assert family_positive_mass(M, FAM) == pytest.approx(1.4 / 3.3)
    assert math.isnan(family_positive_mass(square(-np.ones((4, 4))), FAM))


def test_family_means_by_hand_with_nan_cell():
    """The unit is the target: each target's mean over in-family donors and over other donors, then the
    family's mean and SE over its targets."""
    t = family_means(M, FAM).set_index("family")
    assert t.loc["F", "in_family_mean"] == pytest.approx(0.7)  # a <- b 0.8, b <- a 0.6
    assert t.loc["F", "in_family_se"] == pytest.approx(np.std([0.8, 0.6], ddof=1) / math.sqrt(2))
    assert t.loc["F", "in_family_targets"] == 2
    # a: mean(a <- c, a <- d) = mean(-0.2, 0.4) = 0.1; b: b <- c 0.1 (b <- d is NaN: left out)
    assert t.loc["F", "cross_family_mean"] == pytest.approx(0.1)
    assert t.loc["F", "cross_family_se"] == pytest.approx(0.0)
    assert t.loc["G", "in_family_targets"] == 0 and math.isnan(t.loc["G", "in_family_mean"])
    assert t.loc["H", "cross_family_mean"] == pytest.approx(np.mean([0.9, -0.1, 0.0]))
    assert math.isnan(t.loc["H", "cross_family_se"])  # one target: n/a


def test_family_mass_beside_its_chance_baseline_and_permutation_p():
    """Ordered off-diagonal pairs within a family: 2 of 12 (a <- b, b <- a), chance 1/6. Relabelling the
    languages (12 distinct labellings of F, F, G, H) puts the F pair on each of the 6 unordered pairs twice;
    the pair {a, b} holds the most positive mass (1.4 of 3.3), so p = 2/12."""
    test = family_mass_test(M, FAM)
    assert test["family_positive_mass"] == pytest.approx(1.4 / 3.3)
    assert test["chance"] == pytest.approx(1 / 6)
    assert test["ratio_to_chance"] == pytest.approx(1.4 / 3.3 * 6)
    assert test["p_value"] == pytest.approx(2 / 12) and test["exact"] and test["permutations"] == 12
    # a flagged row is left out: rows b, c, d hold 0.6 + 0.1 + 0.3 + 0.2 + 0.9 = 2.1, in-family b <- a 0.6
    assert family_positive_mass(M, FAM, flagged=["a"]) == pytest.approx(0.6 / 2.1)
    assert family_mass_test(M, FAM, flagged=["a"])["rows_left_out"] == ["a"]
    assert family_mass_test(M, FAM, flagged=LANGS)["note"] == "not computed: every row flagged"


def test_mantel_smallest_reachable_p_with_tied_distances():
    """Distances with ties (a and b in one family, every other pair at 1): many permutations reach the most
    extreme rho, so the design cannot reach p = 1/24 however well the matrix matches."""
    d = np.ones((4, 4)) - np.eye(4)
    d[0, 1] = d[1, 0] = 0.5
    m = -d + np.eye(4)  # as far from the distances as can be: rho = -1 for the raw matrix
    res = mantel_test(m, d)
    iu, ju = np.nonzero(~np.eye(4, dtype=bool))
    rhos = [spearmanr(m[iu, ju], d[list(p)][:, list(p)][iu, ju]).statistic
            for p in itertools.permutations(range(4))]
    assert res["min_p"] == pytest.approx(np.sum(np.isclose(rhos, min(rhos))) / 24)
    assert res["min_p"] > 1 / 24 and res["p_value"] == pytest.approx(res["min_p"])


def test_double_centring_removes_row_and_column_effects_and_holm_by_hand():
    r, c = np.array([0.5, -0.2, 0.1, 0.0]), np.array([0.3, 0.0, -0.4, 0.2])
    m = r[:, None] + c[None, :] + np.eye(4) * 7.0  # the diagonal never enters
    assert np.nanmax(np.abs(double_centred(m))) < 1e-9
    assert holm([0.01, 0.04, 0.03, np.nan]).tolist()[:3] == pytest.approx([0.03, 0.06, 0.06])
    table = typology_table(M, {"genetic": pd.DataFrame(1 - np.eye(4), index=LANGS, columns=LANGS)})
    assert list(table["matrix"]) == ["raw", "symmetric", "double_centred"]
    assert table["p_holm"].tolist() == pytest.approx(holm(table["p_value"]).tolist(), nan_ok=True)
    flagged = typology_table(M, {"genetic": pd.DataFrame(1 - np.eye(4), index=LANGS, columns=LANGS)},
                             flagged=LANGS)
    assert flagged["note"].tolist() == ["not computed: every row flagged"]


def test_language_table_shipped_override_and_unknown():
    t = language_table(["en", "es", "tr", "fi", "xx"], {"xx": {"name": "Mine", "family": "Myfam"},
                                                        "fi": {"genus": "Baltic-Finnic"}})
    assert t.loc["en", "family"] == "Indo-European" and t.loc["en", "genus"] == "Germanic"
    assert t.loc["es", "genus"] == "Romance" and t.loc["tr", "family"] == "Turkic"
    assert t.loc["fi", "family"] == "Uralic" and t.loc["fi", "genus"] == "Baltic-Finnic"
    assert t.loc["fi", "source"] == "config"
    assert t.loc["xx", "name"] == "Mine" and t.loc["xx", "family"] == "Myfam" and t.loc["xx", "genus"] == "Myfam"
    assert language_table(["qq"]).loc["qq", "family"] == "unknown"


def test_every_paper_language_has_a_family_and_the_core_distances():
    paper = ["ar", "en", "de", "ckb", "kmr", "fr", "ca", "es", "be", "ru", "uk", "eu", "zh-CN", "zh-TW", "ky", "tr"]
    info = language_table(paper)
    assert (info["family"] != "unknown").all()
    for kind in ("genetic", "geographic", "syntactic", "featural"):
        d = language_distances(info, kind)
        assert np.isfinite(d.to_numpy()).all(), kind
    phon = language_distances(info, "phonological")
    assert phon.loc["ckb", "kmr"] != phon.loc["ckb", "kmr"]  # NaN: ckb has no phonological features
    assert phon.loc["en", "de"] > 0
    assert language_distances(info, "genetic").loc["zh-CN", "zh-TW"] == 0.0  # both are cmn in URIEL+


def test_family_order_groups_families():
    info = language_table(["en", "tr", "es", "fi", "ky"])
    assert family_order(info, ["en", "tr", "es", "fi", "ky"]) == ["en", "es", "tr", "ky", "fi"]


# ------------------------------------------------------------------ Mantel


def brute_force_mantel(m, d, symmetric):
    n = len(m)
    if symmetric:
        m = (m + m.T) / 2
        idx = [(i, j) for i in range(n) for j in range(i + 1, n)]
    else:
        idx = [(i, j) for i in range(n) for j in range(n) if i != j]

    def rho(perm):
        pd_ = d[np.ix_(perm, perm)]
        xs, ys = zip(*[(m[i, j], pd_[i, j]) for i, j in idx if np.isfinite(m[i, j]) and np.isfinite(pd_[i, j])])
        return spearmanr(xs, ys).statistic

    observed = rho(list(range(n)))
    null = [rho(list(p)) for p in itertools.permutations(range(n))]
    return observed, sum(r <= observed + 1e-12 for r in null) / len(null)


@pytest.mark.parametrize("symmetric", [False, True])
def test_mantel_exact_matches_brute_force_with_nan(symmetric):
    m = M.to_numpy()
    d = np.array([[0, 0.2, 0.9, 0.7], [0.2, 0, 0.8, 0.6], [0.9, 0.8, 0, 0.5], [0.7, 0.6, 0.5, 0]])
    d[0, 3] = d[3, 0] = np.nan  # a missing distance: that pair is skipped
    res = mantel_test(m, d, symmetric=symmetric)
    rho, p = brute_force_mantel(m, d, symmetric)
    assert res["exact"] and res["permutations"] == 24
    assert res["rho"] == pytest.approx(rho)
    assert res["p_value"] == pytest.approx(p)
    assert (res["p_value"] * 24) == pytest.approx(round(res["p_value"] * 24))  # a multiple of 1/24


def test_mantel_sampled_close_to_exact_and_seeded():
    rng = np.random.default_rng(3)
    pts = rng.normal(size=(5, 2))
    d = np.linalg.norm(pts[:, None] - pts[None], axis=-1)
    m = 1 - d + rng.normal(0, 0.3, d.shape)
    exact = mantel_test(m, d)
    sampled = mantel_test(m, d, permutations=4000, seed=1, exact_max=0)
    assert not sampled["exact"] and sampled["permutations"] == 4000
    assert sampled["p_value"] == pytest.approx(exact["p_value"], abs=0.03)
    assert mantel_test(m, d, permutations=500, seed=1, exact_max=0) == mantel_test(m, d, permutations=500, seed=1,
                                                                                   exact_max=0)
    assert mantel_test(m, d, alternative="greater")["p_value"] > 0.5  # rho is negative here


def test_typology_table_reports_missing_languages():
    m = square(np.eye(4) + 0.3)
    d = square([[0, 0.1, np.nan, 0.3], [0.1, 0, np.nan, 0.2], [np.nan] * 4, [0.3, 0.2, np.nan, 0]])
    t = typology_table(m, {"phonological": d})
    assert list(t["matrix"]) == ["raw", "symmetric", "double_centred"]
    assert set(t["languages_missing"]) == {"c"}
    assert t.loc[0, "n_pairs"] == 6 and t.loc[1, "n_pairs"] == 3 and t.loc[2, "n_pairs"] == 6


# ------------------------------------------------------------------ map, pairs, seeds, N


def test_top_pairs_skips_nan_and_marks_flagged():
    se = square(np.full((4, 4), 0.1))
    t = top_pairs(M, se, flagged=["d"], k=2)
    pos, neg = t[t["sign"] == "positive"], t[t["sign"] == "negative"]
    assert list(zip(pos["target"], pos["donor"])) == [("d", "a"), ("a", "b")]
    assert list(pos["flagged"]) == [True, False]
    assert list(zip(neg["target"], neg["donor"])) == [("c", "a"), ("a", "c")]
    assert neg["z"].iloc[0] == pytest.approx(-5.0)


def test_top_pairs_rank_by_the_interval_end_nearer_zero():
    """With intervals, a cell with a wide interval (an exploding cell) does not top the list on its point
    estimate: d <- a (0.9) has the interval (-2, 5), a <- b (0.8) has (0.5, 1.1)."""
    se = square(np.full((4, 4), 0.1))
    low, high = M - 0.3, M + 0.3
    low.loc["d", "a"], high.loc["d", "a"] = -2.0, 5.0
    t = top_pairs(M, se, k=2, ci_low=low, ci_high=high)
    pos = t[t["sign"] == "positive"]
    assert list(zip(pos["target"], pos["donor"])) == [("a", "b"), ("b", "a")]
    assert pos["sign_certain"].tolist() == [True, True]
    assert top_pairs(M, se, flagged=LANGS)["note"].tolist() == ["not computed: every row flagged"]


def test_cluster_order_keeps_blocks_together():
    m = square([[1, 0.9, -0.5, -0.6], [0.8, 1, -0.4, -0.5], [-0.5, -0.6, 1, 0.9], [-0.4, -0.5, 0.8, 1]])
    order = cluster_order(m)
    assert set(order[:2]) in ({"a", "b"}, {"c", "d"})


def test_clustering_takes_infinite_and_nan_cells():
    # a flagged row whose denominator is zero has infinite cells (and NaN where the numerator is zero too):
    # they are filled like the diagonal, with the mean of the finite off-diagonal cells, never passed on
    inf = float("inf")
    m = square([[1, inf, -inf], [0.8, 1, float("nan")], [-0.5, -0.6, 1]], langs=["a", "b", "c"])
    profiles = transfer_profiles(m)
    assert np.isfinite(profiles).all()
    assert profiles[0, 1] == pytest.approx(np.mean([0.8, -0.5, -0.6]))
    assert len(cluster_order(m)) == 3


def test_seed_plan_by_hand():
    # A = 0.5, D = 0.7 (den 0.2), B = 0.6 (num 0.1); sds 0.02 (3 seeds each)
    se = 0.02 / math.sqrt(3)
    baselines = pd.DataFrame([{"target": "a", "perf_single": 0.5, "perf_single_se": se, "n_single": 3,
                               "perf_dual": 0.7, "perf_dual_se": se, "n_dual": 3, "flagged": False}])
    cells = pd.DataFrame([{"target": "a", "donor": "b", "perf_bilingual": 0.6, "perf_bilingual_se": se,
                           "n_bilingual": 3}, {"target": "a", "donor": "a", "perf_bilingual": 0.7,
                                               "perf_bilingual_se": se, "n_bilingual": 3}])
    v = 0.02**2 / 0.2**2 + 0.02**2 * 0.1**2 / 0.2**4 + 0.02**2 * 0.1**2 / 0.2**4  # = 0.015
    plan = seed_plan(cells, baselines, 0.05)
    # the plug-in plan: the pooled sd (0.02, on 3 x 2 = 6 degrees of freedom) as it is
    assert plan.loc[0, "pooled_sd"] == pytest.approx(0.02) and plan.loc[0, "pooled_df"] == 6
    assert plan.loc[0, "seeds_worst_cell_plugin"] == math.ceil(v / 0.05**2) == 6
    assert plan.loc[0, "seeds_median_cell_plugin"] == 6
    # the plan: from the 95 % upper bound of the variance, sd^2 x 6 / chi2(0.05, 6) = sd^2 x 3.67
    from scipy.stats import chi2

    assert plan.loc[0, "seeds_worst_cell"] == math.ceil(v * 6 / chi2.ppf(0.05, 6) / 0.05**2) == 23
    # a zero denominator: no finite answer, and a note says why
    zero = seed_plan(cells, baselines.assign(perf_dual=0.5), 0.05)
    assert pd.isna(zero.loc[0, "seeds_worst_cell"]) and "zero" in zero.loc[0, "note"]


def test_learning_curve_and_recommendation_by_hand():
    rows = []
    for target, gains in {"a": {4: 0.05, 8: 0.04}, "b": {4: 0.002, 8: 0.03}}.items():
        for size, gain in gains.items():
            for seed, noise in zip((1, 2, 3), (-0.005, 0.0, 0.005)):
                rows.append({"target": target, "size": size, "condition": "single", "seed": seed, "value": 0.6 + noise})
                rows.append({"target": target, "size": size, "condition": "dual", "seed": seed,
                             "value": 0.6 + gain - noise})
    curve = learning_curve_table(pd.DataFrame(rows), flag_alpha=0.05)
    # paired over the seeds: dual - single has offsets (0.01, 0, -0.01), sd 0.01; it clears above
    # t(0.975, 2) x 0.01 / sqrt(3) = 0.0248
    se = 0.01 / math.sqrt(3)
    row = curve[(curve["target"] == "a") & (curve["size"] == 4)].iloc[0]
    assert row["denominator"] == pytest.approx(0.05) and row["denominator_se"] == pytest.approx(se)
    assert curve["clears"].tolist() == [True, True, False, True]
    rec = recommend_n(curve)
    assert rec["every_target_clears"] == [8] and rec["recommended_n"] == 8
    assert rec["targets_failing"] == {4: ["b"]}


def test_ladder_sizes_and_settings_defaults():
    config = {"tasks": {"gender": {"n_per_class": 12}, "speaker": {"n_utterances": 32}},
              "analysis": {"learning_curve": {"factors": [0.25, 0.5, 1.0]}}}
    assert ladder_sizes(config, "gender") == [3, 6, 12]
    assert ladder_sizes(config, "speaker") == [8, 16, 32]
    s = analysis_settings(config)
    assert s["learning_curve"]["seeds"] == [1, 2, 3] and s["typology"]["permutations"] == 9999
    assert set(s["typology"]["distances"]) == set(DISTANCE_TYPES)


def _selection():
    index = pd.DataFrame({"utt_id": [f"u{i}" for i in range(32)],
                          "speaker": [f"s{i // 4}" for i in range(32)],
                          "gender": ["male" if (i // 4) % 2 == 0 else "female" for i in range(32)]})
    single = [u for u, s in zip(index["utt_id"], index["speaker"]) if int(s[1:]) < 4]
    extra = [u for u, s in zip(index["utt_id"], index["speaker"]) if int(s[1:]) >= 4]
    return {"language": "xx", "single": single, "extra": extra, "test": ["t1"]}, index


def test_nested_subset_is_nested_balanced_and_speaker_disjoint():
    sel, index = _selection()
    small, big = (nested_subset(sel, index, "gender", n, seed=0) for n in (3, 6))
    spk = index.set_index("utt_id")["speaker"]
    gender = index.set_index("utt_id")["gender"]
    for sub, n in ((small, 3), (big, 6)):
        for part in ("single", "extra"):
            assert set(sub[part]) <= set(sel[part])
            assert (gender[sub[part]] == "male").sum() == n and (gender[sub[part]] == "female").sum() == n
        assert not set(spk[sub["single"]]) & set(spk[sub["extra"]])
        assert sub["test"] == sel["test"]
    assert set(small["single"]) <= set(big["single"]) and set(small["extra"]) <= set(big["extra"])
    spk_sub = nested_subset(sel, index, "speaker", 10, seed=0)
    assert len(spk_sub["single"]) == 10 and len(spk_sub["extra"]) == 10
    with pytest.raises(SelectionError, match="at most 1"):
        nested_subset(sel, index, "gender", 9, seed=0)


# ------------------------------------------------------------------ figures


def test_reading_figures_are_written(tmp_path):
    from cltm.analysis.figures import plot_language_map, plot_learning_curve, plot_matrix, plot_typology

    langs = ["en", "es", "tr", "fi"]
    m = square(M.to_numpy(), langs)
    info = language_table(langs)
    plot_matrix(m, m.abs() * 0.1, ["fi"], title="t", path_png=tmp_path / "m.png", path_svg=tmp_path / "m.svg",
                families=info["family"], labels={c: f"{info.loc[c, 'name']} ({c})" for c in langs})
    assert "Finnish (fi)" in (tmp_path / "m.svg").read_text()
    dist = {"genetic": language_distances(info, "genetic")}
    typ = typology_table(m, dist)
    long = pd.DataFrame([{"distance": "genetic", "target": i, "donor": j, "value": dist["genetic"].loc[i, j],
                          "cltm": m.loc[i, j], "target_flagged": i == "fi"} for i in langs for j in langs if i != j])
    plot_typology(long, typ, title="t", path_png=tmp_path / "t.png", path_svg=tmp_path / "t.svg")
    plot_language_map(m, ["fi"], families=info["family"], title="t", path_png=tmp_path / "l.png",
                      path_svg=tmp_path / "l.svg")
    curve = pd.DataFrame({"target": ["en", "en"], "size": [6, 12], "denominator": [0.01, 0.1],
                          "denominator_se": [0.02, 0.01], "clears": [False, True]})
    plot_learning_curve(curve, n_current=12, flag_alpha=0.05, metric="macro_f1", title="t", path_png=tmp_path / "c.png",
                        path_svg=tmp_path / "c.svg")
    assert all((tmp_path / f).stat().st_size > 1000 for f in ("m.png", "t.png", "l.png", "c.png"))


def test_family_summary_is_strict_json_and_two_languages_work():
    import json

    from cltm.analysis.typology import family_summary

    s = family_summary(M, FAM)
    text = json.dumps(s, allow_nan=False)  # a one-language family has no in-family mean: null, not NaN
    assert json.loads(text)["family_means"]["G"]["in_family_mean"] is None
    two = square([[1.0, 0.5], [-0.2, 1.0]], ["en", "tr"])
    info = language_table(["en", "tr"])
    t = typology_table(two, {"genetic": language_distances(info, "genetic")})
    assert t["p_value"].isna().all()  # 2 pairs: no rank correlation to test
    assert cluster_order(two) in (["en", "tr"], ["tr", "en"])


def test_learning_curve_runs_reuse_the_grid_at_n():
    from cltm.config.targets import learning_curve_runs

    config = {"languages": ["en", "tr"], "seeds": [1, 2], "tasks": {"gender": {"n_per_class": 12}},
              "analysis": {"learning_curve": {"factors": [0.5, 1.0], "seeds": [1, 2, 3]}}}
    runs = learning_curve_runs(config, "gender")
    assert len(runs) == 2 * 2 * 2 * 3
    assert runs["results/gender/runs/en/single/seed1.json"] == 12  # the grid's own run
    assert runs["results/gender/learning_curve/runs/en/n12/dual/seed3.json"] == 12  # a seed the grid lacks
    assert runs["results/gender/learning_curve/runs/tr/n6/single/seed1.json"] == 6


def test_the_seed_plan_from_the_upper_bound_suffices_with_its_confidence():
    """Pilot runs of 3 seeds per condition for a target with 4 donors (pooled df 12) whose true need is
    10 seeds: the plug-in plan falls short about half of the time; the plan from the 95 % upper bound
    covers the true need in about 95 % of pilots (simulation, fixed seed)."""
    rng = np.random.default_rng(7)
    sd, a, d, b = 0.05, 0.6, 0.7, 0.65
    true_v = sd**2 * (1 / 0.1**2 + 0.05**2 / 0.1**4 + 0.05**2 / 0.1**4)
    target_se = math.sqrt(true_v / 10)  # the true need: 10 seeds
    enough, short_plugin = [], []
    for _ in range(400):
        sds = rng.normal(0, sd, (6, 3)).std(axis=1, ddof=1)  # single, dual, 4 donors: 3 pilot seeds each
        se = sds / math.sqrt(3)
        baselines = pd.DataFrame([{"target": "a", "perf_single": a, "perf_single_se": se[0], "n_single": 3,
                                   "perf_dual": d, "perf_dual_se": se[1], "n_dual": 3, "flagged": False}])
        cells = pd.DataFrame([{"target": "a", "donor": f"x{k}", "perf_bilingual": b, "perf_bilingual_se": se[2 + k],
                               "n_bilingual": 3} for k in range(4)])
        plan = seed_plan(cells, baselines, target_se)
        enough.append(plan.loc[0, "seeds_worst_cell"] >= 10)
        short_plugin.append(plan.loc[0, "seeds_worst_cell_plugin"] < 10)
    assert np.mean(enough) == pytest.approx(0.95, abs=0.03)
    assert 0.35 < np.mean(short_plugin) < 0.65
