"""The planted known answer's corpus side (cltm.demo.plant): cues, labels, the plant file's expected structure."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from cltm.config import ConfigError
from cltm.demo.plant import PlantSpec, apply_cues, assign_labels, clip_cues, cue_gain_db, pair_table, plant_record
from cltm.demo.synth import SAMPLE_RATE, make_speakers, plant_clips, synthesize

ANGLES = {"en": 0, "tr": 36, "es": 72, "ru": 108, "fi": 144, "de": 180}


def spec(**kw) -> PlantSpec:
    return PlantSpec.from_config({"angles": ANGLES, "cue_db": 12.0, **kw})


def test_labels_are_per_clip_balanced_within_each_gender_and_follow_the_rule():
    table = plant_clips("tr", 12, 6, 7, spec())  # tr's rule: 36 degrees
    assert len(table) == 24 * 6 and set(table["planted_label"]) == {"rule_no", "rule_yes"}
    for _, group in table.groupby("gender"):
        assert (group["planted_label"] == "rule_yes").sum() == len(group) // 2
    # every voice has clips of both classes: the voice does not predict the label
    assert (table.groupby("client_id")["planted_label"].nunique() == 2).all()
    s = math.cos(math.radians(36)) * table["z1"] + math.sin(math.radians(36)) * table["z2"]
    assert ((s > 0) == (table["planted_label"] == "rule_yes")).all()
    assert np.allclose(np.hypot(table["z1"], table["z2"]), 1.0)
    # the cue points cover the circle: the rule is not readable from one cue alone
    phi = np.degrees(np.arctan2(table["z2"], table["z1"])) % 360
    assert np.histogram(phi, bins=8, range=(0, 360))[0].min() > 0


def test_clip_cues_come_in_opposite_pairs_so_every_rule_splits_each_voice():
    cues = clip_cues(np.random.default_rng(3), 5)
    assert len(cues) == 5 and np.allclose(np.hypot(*np.array(cues).T), 1.0)
    assert np.allclose(cues[1], -np.array(cues[0])) and np.allclose(cues[3], -np.array(cues[2]))
    table = pd.DataFrame(cues[:4], columns=["z1", "z2"])
    for angle in (0.0, 15.0, 70.0, 180.0, 300.0):  # any rule: two of the four on each side
        assert (assign_labels(table, angle, ("no", "yes")) == "yes").sum() == 2


def test_the_cues_do_not_depend_on_the_rules():
    """The null control and a moved angle change the labels, never the audio (the same cue points)."""
    planted = plant_clips("de", 3, 4, 7, spec())
    null = plant_clips("de", 3, 4, 7, spec(null_control=True))
    moved = plant_clips("de", 3, 4, 7, PlantSpec.from_config({"angles": {**ANGLES, "de": 30}}))
    for other in (null, moved):
        assert np.allclose(planted[["z1", "z2"]], other[["z1", "z2"]])
    assert (planted["planted_label"] != null["planted_label"]).all()  # 180 degrees against 0


def test_opposite_angles_label_every_speaker_the_other_way_and_90_degrees_is_unrelated():
    rng = np.random.default_rng(0)
    phi = rng.uniform(0, 2 * math.pi, 400)
    table = pd.DataFrame({"gender": np.repeat(["male", "female"], 200), "z1": np.cos(phi), "z2": np.sin(phi)})
    at0 = assign_labels(table, 0.0, ("no", "yes"))
    at180 = assign_labels(table, 180.0, ("no", "yes"))
    at90 = assign_labels(table, 90.0, ("no", "yes"))
    at36 = assign_labels(table, 36.0, ("no", "yes"))
    assert (at0 != at180).all()
    assert 0.35 < (at0 == at90).mean() < 0.65  # unrelated rules agree about half the time
    assert (at0 == at36).mean() > 0.7  # close rules mostly agree (1 - 36/180 = 0.8 on a uniform circle)


def test_cues_are_drawn_apart_from_the_voice():
    """The same speakers with and without a plant: same voices, same clip cues; only cue_db decides if they are heard."""
    plain, planted = make_speakers("tr", 3, 5), make_speakers("tr", 3, 5, cue_db=12.0)
    for a, b in zip(plain, planted):
        assert a.voice.f0_hz == b.voice.f0_hz and a.voice.fir == b.voice.fir
        assert a.voice.cue_db == 0 and b.voice.cue_db == 12.0
    with_plant, without = plant_clips("tr", 3, 4, 5, spec()), plant_clips("tr", 3, 4, 5, None)
    assert np.allclose(with_plant[["z1", "z2"]], without[["z1", "z2"]])
    assert (without["planted_label"] == "").all() and len(with_plant) == len(without) == 24


def _band_db(x: np.ndarray, lo: float, hi: float) -> float:
    spec_ = np.abs(np.fft.rfft(x)) ** 2
    f = np.fft.rfftfreq(len(x), 1 / SAMPLE_RATE)
    return 10 * math.log10(spec_[(f >= lo) & (f < hi)].sum())


def test_a_planted_clip_carries_its_cues_in_its_spectrum():
    """Real speech through the plant filter: the tilt lifts 4 kHz against 250 Hz by the planted amount,
    the resonance lifts 1 kHz against both, each as cue_gain_db says."""
    speaker = make_speakers("en", 1, 3)[0]
    speech = synthesize("The quick brown fox jumps over the lazy dog.", speaker.voice)
    for z1, z2 in ((1.0, 0.0), (0.0, 1.0), (-0.6, 0.8)):
        out = apply_cues(speech, SAMPLE_RATE, z1, z2, 6.0)
        for lo, hi in ((200, 300), (900, 1100), (3600, 4400)):
            gained = _band_db(out, lo, hi) - _band_db(speech, lo, hi)
            planted = float(np.mean(cue_gain_db(np.linspace(lo, hi, 50), z1, z2, 6.0)))
            assert abs(gained - planted) < 1.0, (z1, z2, lo, gained, planted)


def test_the_plant_file_writes_the_expected_structure():
    s = spec()
    langs = list(ANGLES)
    clips = {lang: plant_clips(lang, 4, 4, 7, s) for lang in langs}
    record = plant_record(s, langs, clips, 7)
    assert record["synthetic"] and record["null"] is False
    pairs = pd.DataFrame(record["pairs"])
    assert len(pairs) == 30
    en_de = pairs[(pairs.target == "en") & (pairs.donor == "de")].iloc[0]
    assert en_de.distance_deg == 180 and en_de.expected_sign == -1 and en_de.expected_cltm == -1
    en_tr = pairs[(pairs.target == "en") & (pairs.donor == "tr")].iloc[0]
    assert en_tr.expected_sign == 1 and math.isclose(en_tr.expected_cltm, math.cos(math.radians(36)), rel_tol=1e-5)
    de = record["languages"]["de"]
    assert de["speakers"] == 8 and de["clips"] == 32 and de["rule_yes"] == 16 and record["unit"] == "clip"


def test_the_null_control_keeps_the_layout_and_plants_no_difference():
    table = pair_table(spec(null_control=True), list(ANGLES))
    assert (table.planted_distance_deg == 0).all() and (table.expected_cltm == 1).all()
    assert sorted(table.distance_deg.unique()) == [36, 72, 108, 144, 180]
    b = plant_clips("de", 4, 5, 7, spec(null_control=True))
    assert (b["planted_label"] == assign_labels(b, 0.0, ("rule_no", "rule_yes"))).all() and len(b) == 40


def test_a_changed_angle_changes_the_expected_structure():
    moved = pair_table(PlantSpec.from_config({"angles": {**ANGLES, "de": 36}}), list(ANGLES))
    row = moved[(moved.target == "en") & (moved.donor == "de")].iloc[0]
    assert row.distance_deg == 36 and row.expected_sign == 1


@pytest.mark.parametrize("cfg, key", [({"angles": {}}, "corpus.demo.plant.angles"),
                                      ({"angles": ANGLES, "cue_db": 0}, "corpus.demo.plant.cue_db"),
                                      ({"angles": ANGLES, "classes": ["a", "a"]}, "corpus.demo.plant.classes")])
def test_bad_plant_settings_name_their_key(cfg, key):
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        PlantSpec.from_config(cfg)
