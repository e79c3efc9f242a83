"""cltm.analysis.known_answer: a planted transfer effect read back from a matrix (pair table, Mantel test
against the layout distance, sign agreement, the donor-spread F, the verdict), on hand-built plants and
matrices; and the workflow's wiring of it (targets, report category)."""

from __future__ import annotations

import copy
import itertools
import json
import math
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from scipy import stats

from cltm.analysis.known_answer import (PAIR_COLUMNS, PlantFileError, check_thresholds, donor_spread, known_answer,
                                        one_way_f, pair_table, plot_known_answer, pooled_spread, read_plant,
                                        recovery_summary, sign_agreement, verdict)
from cltm.analysis.matrix import transfer_matrices
from cltm.config import expand_twins, planted_tasks
from cltm.config.targets import final_targets
from cltm.defaults import ANALYSIS
from cltm.errors import ConfigError
from cltm.io import json_safe, write_json
from cltm.paths import PLANT

ROOT = Path(__file__).resolve().parents[1]
ANGLES = {"en": 0, "tr": 36, "es": 72, "ru": 108, "fi": 144, "de": 180}  # the contract's layout
THRESHOLDS = ANALYSIS["known_answer"]


def plant_of(angles=ANGLES, null=False) -> dict:
    """A plant file as the contract writes it: every ordered pair, cos of the planted distance."""
    pairs = []
    for t, d in itertools.permutations(angles, 2):
        layout = float(abs(angles[t] - angles[d]))
        planted = 0.0 if null else layout
        sign = 0 if abs(planted - 90) < 1e-9 else (1 if planted < 90 else -1)
        pairs.append({"target": t, "donor": d, "distance_deg": layout, "planted_distance_deg": planted,
                      "expected_cltm": math.cos(math.radians(planted)), "expected_sign": sign})
    return {"synthetic": True, "label_column": "accents", "classes": ["rule_no", "rule_yes"], "cue_db": 6.0,
            "null": null, "seed": 7, "languages": {k: {"angle_deg": float(v)} for k, v in angles.items()},
            "pairs": pairs}


def squares(values: np.ndarray, langs, se: float = 0.05):
    """(cltm, se, ci_low, ci_high) DataFrames of a matrix, diagonal 1, interval +- 2 SE."""
    m = np.array(values, dtype=float)
    np.fill_diagonal(m, 1.0)
    frame = lambda a: pd.DataFrame(a, index=langs, columns=langs)  # noqa: E731
    s = np.full(m.shape, se)
    np.fill_diagonal(s, 0.0)
    return frame(m), frame(s), frame(m - 2 * s), frame(m + 2 * s)


def expected_matrix(plant: dict, langs) -> np.ndarray:
    lookup = {(p["target"], p["donor"]): p["expected_cltm"] for p in plant["pairs"]}
    return np.array([[1.0 if i == j else lookup[(i, j)] for j in langs] for i in langs])


def read(plant, values, langs, flagged=(), thresholds=THRESHOLDS):
    pairs = pair_table(plant, *squares(values, langs), flagged=flagged)
    summary = recovery_summary(pairs)
    return pairs, summary, verdict(summary, thresholds, null=plant["null"])


# ------------------------------------------------------------------------------------------ recovery


def test_a_perfectly_recovered_plant_passes_every_check():
    plant, langs = plant_of(), list(ANGLES)
    pairs, summary, result = read(plant, expected_matrix(plant, langs), langs)
    assert list(pairs.columns) == list(PAIR_COLUMNS) and len(pairs) == 30
    # cos falls strictly on [0, 180]: the ranks are exactly reversed, the best p the design allows
    assert summary["spearman_rho"] == pytest.approx(-1.0)
    mantel = summary["mantel"]
    assert mantel["exact"] and mantel["permutations"] == math.factorial(6)
    assert mantel["p_value"] == pytest.approx(mantel["min_p"]) and mantel["p_value"] <= 0.01
    assert summary["adjacent"]["cells"] == 10 and summary["adjacent"]["positive"] == 10  # 5 neighbour pairs x 2
    assert summary["opposite"]["cells"] == int((pairs["expected_sign"] == -1).sum())
    assert summary["opposite"]["negative"] == summary["opposite"]["cells"]
    assert summary["sign_agreement"]["share"] == 1.0
    assert result["passed"] and not result["null_control"]
    assert [line["check"] for line in result["lines"]] == ["mantel", "adjacent_positive", "opposite_negative",
                                                           "flagged_rows"]
    assert all(line["passed"] and line["text"].startswith("PASS") for line in result["lines"])


def test_shuffled_matrices_are_not_recovered():
    """The plant's cells shuffled over the matrix: the Mantel test rejects about as often as its level says
    (exact p: at most 1 % of the time at 0.01), and the verdict fails wherever it does not reject."""
    plant, langs = plant_of(), list(ANGLES)
    true = expected_matrix(plant, langs)
    off = ~np.eye(len(langs), dtype=bool)
    rng = np.random.default_rng(11)
    rejected = 0
    for _ in range(20):
        m = true.copy()
        m[off] = rng.permutation(true[off])
        _, summary, result = read(plant, m, langs)
        p = summary["mantel"]["p_value"]
        rejected += p <= THRESHOLDS["max_mantel_p"]
        mantel_line = next(line for line in result["lines"] if line["check"] == "mantel")
        assert mantel_line["passed"] == (p <= THRESHOLDS["max_mantel_p"])
        if not mantel_line["passed"]:
            assert not result["passed"]
    assert rejected <= 2


def test_the_null_control_passes_when_the_mantel_test_does_not_reject():
    plant, langs = plant_of(null=True), list(ANGLES)
    rng = np.random.default_rng(5)
    pairs, summary, result = read(plant, 1 + rng.normal(0, 0.1, (6, 6)), langs)
    # under the null every rule is the same: expected 1 everywhere, the layout distance kept for the test
    assert (pairs["planted_distance_deg"] == 0).all() and (pairs["expected_sign"] == 1).all()
    assert pairs["distance_deg"].max() == 180
    assert result["null_control"]
    assert [line["check"] for line in result["lines"]] == ["mantel_not_rejected", "flagged_rows"]
    p = summary["mantel"]["p_value"]
    assert result["passed"] == (p > THRESHOLDS["max_mantel_p"])
    # a matrix that does follow the layout fails the null control: the Mantel test rejects
    _, summary, result = read(plant, expected_matrix(plant_of(), langs), langs)
    assert summary["mantel"]["p_value"] <= THRESHOLDS["max_mantel_p"]
    assert not result["passed"] and result["headline"] == "FAIL (null control)"


def test_each_threshold_decides_its_line():
    plant, langs = plant_of(), list(ANGLES)
    true = expected_matrix(plant, langs)
    pairs = pair_table(plant, *squares(true, langs))
    # one adjacent cell below 0: fails `all`, passes a share of 0.9 (9 of 10)
    m = true.copy()
    i, j = langs.index("en"), langs.index("tr")
    m[i, j] = -0.05
    _, _, result = read(plant, m, langs)
    assert not next(x for x in result["lines"] if x["check"] == "adjacent_positive")["passed"]
    _, _, result = read(plant, m, langs, thresholds={**THRESHOLDS, "adjacent_positive": 0.9})
    assert next(x for x in result["lines"] if x["check"] == "adjacent_positive")["passed"]
    # exactly half of the opposite cells below 0: not strictly above 0.5
    m = true.copy()
    opposite = pairs[pairs["opposite"]]
    for _, row in opposite.iloc[: len(opposite) // 2].iterrows():
        m[langs.index(row["target"]), langs.index(row["donor"])] = 0.2
    _, summary, result = read(plant, m, langs)
    assert summary["opposite"]["share_negative"] == 0.5
    assert not next(x for x in result["lines"] if x["check"] == "opposite_negative")["passed"]
    _, _, result = read(plant, m, langs, thresholds={**THRESHOLDS, "min_opposite_negative": 0.4})
    assert next(x for x in result["lines"] if x["check"] == "opposite_negative")["passed"]
    # two flagged rows are one too many
    _, summary, result = read(plant, true, langs, flagged=["en", "de"])
    assert summary["flagged_rows"] == ["de", "en"] and not result["passed"]
    assert "de, en" in next(x for x in result["lines"] if x["check"] == "flagged_rows")["text"]


def test_thresholds_are_checked_with_their_key():
    with pytest.raises(ConfigError, match=r"analysis\.known_answer\.min_opposite_negative"):
        check_thresholds({**THRESHOLDS, "min_opposite_negative": 1.0})
    with pytest.raises(ConfigError, match=r"analysis\.known_answer\.adjacent_positive"):
        check_thresholds({**THRESHOLDS, "adjacent_positive": "most"})
    with pytest.raises(ConfigError, match=r"analysis\.known_answer\.max_mantel_p"):
        check_thresholds({**THRESHOLDS, "max_mantel_p": 0})


def test_sign_agreement_and_its_chance_level_by_enumeration():
    expected = [1, 1, 1, -1, 1, -1]
    measured = [0.5, 0.2, -0.3, -0.1, 0.4, 0.3]
    pairs = pd.DataFrame({"expected_sign": expected, "cltm": measured})
    res = sign_agreement(pairs)
    agree = [np.sign(m) == e for m, e in zip(measured, expected)]
    assert res["share"] == pytest.approx(np.mean(agree))
    p_m, p_e = np.mean(np.array(measured) > 0), np.mean(np.array(expected) > 0)
    assert res["chance"] == pytest.approx(p_m * p_e + (1 - p_m) * (1 - p_e))
    # the permutation p: the measured signs over the cells in every order
    signs = np.sign(measured)
    perms = [np.mean(np.array(p) == np.array(expected)) for p in itertools.permutations(signs)]
    assert res["p_value"] == pytest.approx(np.mean(np.array(perms) >= np.mean(agree) - 1e-12))


def test_the_plant_file_is_read_and_checked(tmp_path):
    good = tmp_path / "plant.json"
    write_json(good, plant_of())
    assert read_plant(good)["label_column"] == "accents"
    with pytest.raises(PlantFileError, match="does not exist"):
        read_plant(tmp_path / "absent.json")
    broken = plant_of()
    del broken["pairs"][3]["expected_sign"]
    write_json(tmp_path / "old.json", broken)
    with pytest.raises(PlantFileError, match=r"old\.json: pairs\[3\] lacks \['expected_sign'\]"):
        read_plant(tmp_path / "old.json")
    # a matrix language the plant does not have is named, with the keys to change
    langs = ["en", "tr", "eu"]
    with pytest.raises(PlantFileError, match=r"corpus\.demo\.plant\.angles"):
        pair_table(plant_of(), *squares(np.ones((3, 3)), langs))
    assert PLANT == "results/demo_corpus/plant.json"


# ------------------------------------------------------------------------------------------ the donor spread


def test_one_way_f_by_hand():
    res = one_way_f([0.1, 0.4, 0.7], [0.1, 0.1, 0.1], 4)
    between = ((0.1 - 0.4) ** 2 + 0 + (0.7 - 0.4) ** 2) / (3 - 1)  # 0.09
    within = 0.1 ** 2  # the mean squared SE
    assert res["f"] == pytest.approx(between / within)
    assert (res["df_between"], res["df_within"]) == (2, 9)
    assert res["p_value"] == pytest.approx(stats.f.sf(between / within, 2, 9))
    assert res["expected_under_null"] == pytest.approx(9 / 7)
    known = one_way_f([0.1, 0.4, 0.7], [0.1, 0.1, 0.1], None)
    assert known["p_value"] == pytest.approx(stats.chi2.sf(2 * between / within, 2))
    # unequal seed counts: the classical ANOVA of the seeds' values
    rng = np.random.default_rng(2)
    groups = [rng.normal(0, 1, n) for n in (3, 5, 4)]
    res = one_way_f([g.mean() for g in groups], [g.std(ddof=1) / np.sqrt(len(g)) for g in groups],
                    [len(g) for g in groups])
    assert res["f"] == pytest.approx(stats.f_oneway(*groups).statistic)
    assert res["p_value"] == pytest.approx(stats.f_oneway(*groups).pvalue)


def runs_of(true: np.ndarray, langs, seeds: int, noise: float, rng, seed_effect: float = 0.0) -> pd.DataFrame:
    """Runs whose CLTM is `true`: single 0.6, dual 0.8, donor j at 0.6 + 0.2 true[i, j]; `seed_effect`: a
    per-target seed effect shared by every condition of that seed (as the design's paired seeds have)."""
    rows = []
    for i, t in enumerate(langs):
        shared = rng.normal(0, seed_effect, seeds) if seed_effect else np.zeros(seeds)
        means = {"single": 0.6, "dual": 0.8,
                 **{f"donor-{d}": 0.6 + 0.2 * true[i, j] for j, d in enumerate(langs) if d != t}}
        for condition, mean in means.items():
            for s, v in enumerate(mean + shared + rng.normal(0, noise, seeds)):
                rows.append({"target": t, "condition": condition, "seed": s + 1, "macro_f1": v})
    return pd.DataFrame(rows)


def test_donor_spread_is_the_anova_of_the_row_s_bilingual_runs():
    """The row's F does not depend on its denominator: it is the one-way ANOVA of the donors' runs."""
    langs = list(ANGLES)
    rng = np.random.default_rng(4)
    runs = runs_of(expected_matrix(plant_of(), langs), langs, seeds=4, noise=0.03, rng=rng)
    cells = transfer_matrices(runs, "macro_f1", langs).cells
    rows = donor_spread(cells).set_index("target")
    for t in langs:
        groups = [runs.loc[(runs["target"] == t) & (runs["condition"] == f"donor-{d}"), "macro_f1"].to_numpy()
                  for d in langs if d != t]
        assert rows.loc[t, "f"] == pytest.approx(stats.f_oneway(*groups).statistic)
        assert (rows.loc[t, "df_between"], rows.loc[t, "df_within"]) == (4, 15)


def test_the_f_follows_its_reference_under_its_null():
    """Equal donors, honest SEs: the F averages df2 / (df2 - 2) and rejects at its level; with known SEs
    the chi-square reference holds; donors that differ give a large F."""
    rng = np.random.default_rng(0)
    k, n, reps = 5, 5, 3000
    values = rng.normal(0.3, 0.05, (reps, k, n))
    means, ses = values.mean(axis=2), values.std(axis=2, ddof=1) / np.sqrt(n)
    res = [one_way_f(means[r], ses[r], n) for r in range(reps)]
    f, p = np.array([r["f"] for r in res]), np.array([r["p_value"] for r in res])
    df2 = k * (n - 1)
    assert f.mean() == pytest.approx(df2 / (df2 - 2), abs=0.07)
    assert 0.035 <= (p <= 0.05).mean() <= 0.065
    known = rng.normal(0, 0.1, (reps, k))
    p_known = np.array([one_way_f(known[r], np.full(k, 0.1), None)["p_value"] for r in range(200)])
    assert 0.0 <= (p_known <= 0.05).mean() <= 0.11
    shifted = [one_way_f(means[r] + np.arange(k) * 0.05, ses[r], n)["f"] for r in range(200)]
    assert np.median(shifted) > 10


def test_a_seed_effect_shared_by_the_donors_makes_the_f_conservative():
    langs = list(ANGLES)
    rng = np.random.default_rng(8)
    null = np.ones((6, 6))  # every donor equal
    fs = np.concatenate([donor_spread(transfer_matrices(runs_of(null, langs, 4, 0.03, rng, seed_effect=0.03),
                                                        "macro_f1", langs).cells)["f"].to_numpy()
                         for _ in range(8)])
    assert fs.mean() < 15 / 13 - 0.2  # the reference's mean, df2 = 15; about 0.6 with this seed effect


def test_the_pooled_f_keeps_its_level():
    rng = np.random.default_rng(1)
    d1, d2 = np.array([4, 4, 4, 3, 3, 3]), np.array([15.0, 15.0, 10.0, 12.0, 12.0, 8.0])
    ps = []
    for _ in range(200):
        rows = pd.DataFrame({"f": stats.f.rvs(d1, d2, random_state=rng), "df_between": d1, "df_within": d2})
        ps.append(pooled_spread(rows, draws=1000, seed=int(rng.integers(1 << 30)))["p_value"])
    assert 0.01 <= np.mean(np.array(ps) <= 0.05) <= 0.1
    rows = pd.DataFrame({"f": [1.0, 2.0], "df_between": [4, 2], "df_within": [12.0, 10.0]})
    pooled = pooled_spread(rows, draws=500)
    assert pooled["f"] == pytest.approx((4 * 1.0 + 2 * 2.0) / 6)
    assert pooled["expected_under_null"] == pytest.approx((4 * 12 / 10 + 2 * 10 / 8) / 6)


# ------------------------------------------------------------------------------------------ one task


def test_known_answer_reads_a_simulated_planted_grid():
    langs = ["en", "es", "tr", "fi", "de", "ru"]  # the task's order, not the plant's
    plant = plant_of()
    rng = np.random.default_rng(3)
    res = transfer_matrices(runs_of(expected_matrix(plant, langs), langs, 5, 0.02, rng), "macro_f1", langs)
    pairs, summary = known_answer(plant, res.cltm, res.cltm_se, res.cltm_ci_low, res.cltm_ci_high,
                                  res.baselines.reset_index(), res.cells, THRESHOLDS, task="planted",
                                  label_column="accents")
    assert pairs[["target", "donor"]].apply(tuple, axis=1).tolist()[:2] == [("en", "es"), ("en", "tr")]
    assert summary["verdict"]["passed"], summary["verdict"]["lines"]
    assert summary["synthetic"] and "SYNTHETIC" in summary["what"]
    assert len(summary["donor_spread"]["rows"]) == 6
    json.dumps(json_safe(summary), allow_nan=False)  # strict JSON
    with pytest.raises(PlantFileError, match=r"tasks\.planted\.label_column"):
        known_answer(plant, res.cltm, res.cltm_se, res.cltm_ci_low, res.cltm_ci_high, res.baselines.reset_index(),
                     res.cells, THRESHOLDS, task="planted", label_column="gender")
    fig = plot_known_answer(pairs, summary, summary["verdict"], task="planted", null=False, note="SYNTHETIC")
    texts = " ".join(t.get_text() for ax in fig.axes for t in [ax.title, *ax.texts])
    assert "SYNTHETIC corpus, planted effect" in texts and "verdict: PASS" in texts
    # a flagged row's unbounded intervals and a NaN cell are drawn to the edge and left out, not a crash
    shaky = pairs.assign(cltm_ci_low=np.where(pairs["target"] == "de", -np.inf, pairs["cltm_ci_low"]),
                         cltm_ci_high=np.where(pairs["target"] == "de", np.inf, pairs["cltm_ci_high"]),
                         target_flagged=pairs["target"] == "de")
    shaky.loc[0, "cltm"] = np.nan
    fig = plot_known_answer(shaky, summary, summary["verdict"], task="planted", null=False)
    low, high = fig.axes[0].get_ylim()
    assert np.isfinite([low, high]).all() and high - low < 10


# ------------------------------------------------------------------------------------------ the workflow


def config_with_plant(plant: dict | None, corpus_type: str = "demo") -> dict:
    config = yaml.safe_load((ROOT / "config" / "config.yaml").read_text())
    config["corpus"]["type"] = corpus_type
    config["corpus"]["demo"]["plant"] = plant
    config["tasks"]["planted"] = {**copy.deepcopy(config["tasks"]["gender"]), "label_column": "accents",
                                  "classes": ["rule_no", "rule_yes"]}
    config["tasks"]["planted_probe"] = {"subsets_from": "planted", "mode": "probe"}
    config["tasks"]["planted_twin_unexpanded"] = {"subsets_from": "planted", "mode": "probe"}
    return config


def test_planted_tasks_and_their_targets():
    plant = {"label_column": "accents", "angles": ANGLES, "null": False}
    config = config_with_plant(plant)
    unexpanded = planted_tasks(config)  # a twin takes its twin's label column, expanded or not
    assert unexpanded == ["planted", "planted_probe", "planted_twin_unexpanded"]
    assert planted_tasks(expand_twins(config)) == unexpanded
    targets = final_targets(config)
    for task in unexpanded:
        for name in ("known_answer.csv", "known_answer.json", "known_answer.png", "known_answer.svg"):
            assert f"results/{task}/{name}" in targets
    assert not any("gender/known_answer" in t or "speaker/known_answer" in t for t in targets)
    # the probe twin is compared with the planted task by the twins' own rule
    assert "results/compare/planted_probe_vs_planted.json" in targets
    for config in (config_with_plant(None), config_with_plant(plant, corpus_type="common_voice")):
        assert planted_tasks(config) == [] and not any("known_answer" in t for t in final_targets(config))


def test_the_known_answer_comes_first_in_the_report():
    """Snakemake's HTML report lists its categories sorted (localeCompare: digits before letters); every other
    category is a word or a task name, and task names start with a letter (the schema)."""
    rules = {p.name: p.read_text() for p in (ROOT / "workflow" / "rules").glob("*.smk")}
    first = re.search(r'KNOWN_ANSWER_CATEGORY = "([^"]+)"', rules["known_answer.smk"]).group(1)
    assert first[0].isdigit() and "planted vs recovered" in first
    others = {c for text in rules.values() for c in re.findall(r'category="([^"]+)"', text)}
    assert others and all(c[0].isalpha() or c.startswith("{") for c in others)
    assert (ROOT / "Snakefile").read_text().count('include: "workflow/rules/known_answer.smk"') == 1
    for caption in ("known_answer.rst", "known_answer_table.rst", "known_answer_summary.rst"):
        assert "SYNTHETIC corpus with a planted effect" in (ROOT / "workflow" / "report" / caption).read_text()
