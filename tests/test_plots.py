"""cltm.analysis.figures: files are written, decode, and carry the title, values and flag footnote."""

from __future__ import annotations

import matplotlib.image as mpimg
import numpy as np
import pandas as pd
import pytest

from cltm.analysis.figures import FLAG_FOOTNOTE, plot_baselines, plot_matrix

LANGS16 = ["ar", "en", "de", "ckb", "kmr", "fr", "ca", "es",
           "be", "ru", "uk", "eu", "zh-CN", "zh-TW", "ky", "tr"]


def _square(langs, values, se=0.1):
    """Matrix and SE frames shaped like TransferResult.cltm / cltm_se."""
    values = np.array(values, dtype=float)
    np.fill_diagonal(values, 1.0)
    errors = np.full(values.shape, se)
    np.fill_diagonal(errors, 0.0)
    index, columns = pd.Index(langs, name="target"), pd.Index(langs, name="donor")
    return (pd.DataFrame(values, index=index, columns=columns),
            pd.DataFrame(errors, index=index, columns=columns))


def _check_files(tmp_path, stem, min_px=200):
    png, svg = tmp_path / f"{stem}.png", tmp_path / f"{stem}.svg"
    assert png.stat().st_size > 0 and svg.stat().st_size > 0
    image = mpimg.imread(png)
    assert image.ndim == 3 and image.shape[2] in (3, 4)
    assert min(image.shape[:2]) >= min_px and max(image.shape[:2]) < 20000
    return image, svg.read_text(encoding="utf-8")


def test_two_languages_no_flags(tmp_path):
    m, s = _square(["en", "zh-CN"], [[1.0, 0.83], [0.91, 1.0]], se=0.05)
    title = "Gender CLTM SYNTHETIC DEMO DATA"
    plot_matrix(m, s, [], title=title, path_png=tmp_path / "m.png", path_svg=tmp_path / "m.svg")
    _, svg = _check_files(tmp_path, "m")
    assert title in svg
    assert "0.83" in svg and "±0.05" in svg
    assert "†" not in svg  # nothing flagged, no footnote
    assert "target i (tested)" in svg and "donor j (added)" in svg


def test_sixteen_languages_flagged_and_extreme(tmp_path):
    rng = np.random.default_rng(0)
    m, s = _square(LANGS16, rng.normal(0.2, 0.6, (16, 16)))
    m.loc["tr", "ky"] = -12.0  # an exploding cell
    flagged = pd.Series(False, index=LANGS16)
    flagged["tr"] = True
    title = ("Speaker verification — ROC-AUC CLTM over 16 Common Voice languages, "
             "mHuBERT-147, 10 seeds — SYNTHETIC DEMO DATA")
    plot_matrix(m, s, flagged, title=title, path_png=tmp_path / "big.png",
                path_svg=tmp_path / "big.svg")
    image, svg = _check_files(tmp_path, "big", min_px=1000)
    for word in title.split():  # the title may be wrapped, but every word is there
        assert word in svg
    assert FLAG_FOOTNOTE in svg
    assert "-12.00†" in svg  # true value shown, even though its colour is clipped
    assert svg.count("†") >= 16 + 1  # each cell of the flagged row, plus the footnote


def test_one_sided_values_and_nan(tmp_path):
    # all positive (gender-like) values, one missing cell
    m, s = _square(["a", "b", "c"], [[1, 0.95, 0.9], [0.85, 1, np.nan], [1.02, 0.97, 1]], se=0.02)
    plot_matrix(m, s, ["b"], title="one-sided", path_png=tmp_path / "p.png",
                path_svg=tmp_path / "p.svg", value_label="relative change", center=0.0, mark=1.0)
    _, svg = _check_files(tmp_path, "p")
    assert "n/a" in svg and FLAG_FOOTNOTE in svg


def test_all_far_negative_values(tmp_path):
    m, s = _square(["a", "b"], [[1, -30.0], [-8.0, 1]], se=5.0)
    plot_matrix(m, s, None, title="negative", path_png=tmp_path / "n.png", path_svg=tmp_path / "n.svg")
    _, svg = _check_files(tmp_path, "n")
    assert "-30.00" in svg and "-8.00" in svg


def test_unknown_flagged_row_is_an_error(tmp_path):
    m, s = _square(["a", "b"], [[1, 0.5], [0.5, 1]])
    with pytest.raises(ValueError, match="not rows"):
        plot_matrix(m, s, ["zz"], title="x", path_png=tmp_path / "x.png", path_svg=tmp_path / "x.svg")


def test_baselines_plot(tmp_path):
    baselines = pd.DataFrame(
        {
            "perf_single": [0.80, 0.70, 0.90],
            "perf_single_se": [0.01, 0.02, 0.01],
            "perf_dual": [0.85, 0.71, 0.93],
            "perf_dual_se": [0.01, 0.02, 0.01],
            "flagged": [False, True, False],
        },
        index=pd.Index(["en", "zh-CN", "de"], name="target"),
    )
    title = "Baselines SYNTHETIC DEMO DATA"
    plot_baselines(baselines, metric="macro_f1", title=title,
                   path_png=tmp_path / "b.png", path_svg=tmp_path / "b.svg")
    _, svg = _check_files(tmp_path, "b")
    assert title in svg and FLAG_FOOTNOTE in svg and "zh-CN †" in svg
    assert "macro_f1" in svg

    # the same table with target as a column and nothing flagged: no footnote
    plain = baselines.assign(flagged=False).reset_index()
    plot_baselines(plain, metric="roc_auc", title=title,
                   path_png=tmp_path / "c.png", path_svg=tmp_path / "c.svg")
    _, svg = _check_files(tmp_path, "c")
    assert "†" not in svg


def test_plots_from_transfer_result(tmp_path):
    res = _flagged_result(flag_alpha=0.05)
    assert res.baselines.loc["de", "flagged"]  # dual barely above single
    plot_matrix(res.relative_change, res.relative_change_se, res.baselines["flagged"],
                title="relative change SYNTHETIC", value_label="relative change",
                path_png=tmp_path / "r.png", path_svg=tmp_path / "r.svg", flag_alpha=res.flag_alpha)
    plot_baselines(res.baselines, metric="roc_auc", title="baselines SYNTHETIC",
                   path_png=tmp_path / "b.png", path_svg=tmp_path / "b.svg")
    for stem in ("r", "b"):
        _, svg = _check_files(tmp_path, stem)
        assert FLAG_FOOTNOTE in svg


def _flagged_result(flag_alpha: float = 0.01):
    from cltm.analysis.matrix import transfer_matrices

    rows = []
    for target, means in {"en": (0.70, 0.80, 0.75), "de": (0.60, 0.601, 0.58)}.items():
        donor = "de" if target == "en" else "en"
        for k, (condition, mean) in enumerate(zip(("single", "dual", f"donor-{donor}"), means)):
            rows += [{"target": target, "condition": condition, "seed": s, "roc_auc": mean + off}
                     for s, off in enumerate(np.roll((-0.01, 0.0, 0.01), k))]  # the seeds' noise differs
    return transfer_matrices(pd.DataFrame(rows), "roc_auc", ["en", "de"], flag_alpha=flag_alpha)


def test_footnote_names_the_flagging_level(tmp_path):
    res = _flagged_result()
    plot_matrix(res.cltm, res.cltm_se, res.baselines["flagged"], title="t", path_png=tmp_path / "m.png",
                path_svg=tmp_path / "m.svg", flag_alpha=0.01)
    plot_baselines(res.baselines, metric="roc_auc", title="t", path_png=tmp_path / "b.png",
                   path_svg=tmp_path / "b.svg", flag_alpha=0.01)
    for stem in ("m", "b"):
        svg = (tmp_path / f"{stem}.svg").read_text(encoding="utf-8")
        assert "t(1 \u2212 0.01/2, n \u2212 1)" in svg and "0.05/2" not in svg


def test_the_plot_rule_passes_the_configured_flag_level(tmp_path):
    """matrix.flag_alpha reaches the figures' footnote through the plot rule, and so does a deprecated
    matrix.flag_z, read as its two-sided normal level (z = 3: 0.0027) and named in a warning."""
    import json
    import os
    import subprocess
    import sys

    import yaml

    from conftest import ROOT, copy_checkout

    copy_checkout(tmp_path)
    (tmp_path / "exp.yaml").write_text(yaml.safe_dump({"languages": ["en", "de"], "tasks": {"gender": None},
                                                        "matrix": {"flag_z": 3.0}}))  # deprecated
    res, out = _flagged_result(), tmp_path / "results" / "speaker"
    out.mkdir(parents=True)
    for name in ("cltm", "cltm_se", "relative_change", "relative_change_se", "baselines"):
        getattr(res, name).to_csv(out / f"{name}.csv")
    (out / "summary.json").write_text(json.dumps({"metric": "roc_auc", "seeds": [0, 1, 2]}))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.run([sys.executable, "-m", "snakemake", "results/speaker/cltm.svg", "--cores", "1",
                           "--configfile", "exp.yaml", "--allowed-rules", "plot"],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    assert "'matrix.flag_z' is deprecated" in proc.stderr and "flag_alpha: 0.0027" in proc.stderr
    for fig in ("cltm", "relative_change", "baselines"):
        svg = (out / f"{fig}.svg").read_text(encoding="utf-8")
        assert "t(1 \u2212 0.0027/2, n \u2212 1)" in svg and "0.05/2" not in svg, fig
