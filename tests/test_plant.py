"""The planted known answer's corpus side (cltm.demo.plant): cues, labels, the plant file's expected structure."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from cltm.config import ConfigError
from cltm.demo.plant import PlantSpec, apply_cues, assign_labels, cue_gain_db, pair_table, plant_record
from cltm.demo.synth import SAMPLE_RATE, make_speakers, plant_speakers, synthesize

ANGLES = {"en": 0, "tr": 36, "es": 72, "ru": 108, "fi": 144, "de": 180}


def spec(**kw) -> PlantSpec:
    return PlantSpec.from_config({"angles": ANGLES, "cue_db": 12.0, **kw})


def test_labels_are_balanced_within_each_gender_and_follow_the_rule():
    table = plant_speakers("en", 12, 7, spec())
    for _, group in table.groupby("gender"):
        assert (group["planted_label"] == "rule_yes").sum() == len(group) // 2
    # the upper half by s = cos(0) z1 + sin(0) z2 = z1 within each gender is rule_yes
    for _, group in table.groupby("gender"):
        yes = group[group["planted_label"] == "rule_yes"]["z1"]
        no = group[group["planted_label"] == "rule_no"]["z1"]
        assert yes.min() > no.max()


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
    """The same speakers with and without a plant: same voices, same cues; only cue_db decides if they are heard."""
    plain, planted = make_speakers("tr", 3, 5), make_speakers("tr", 3, 5, cue_db=12.0)
    for a, b in zip(plain, planted):
        assert a.voice.f0_hz == b.voice.f0_hz and a.voice.fir == b.voice.fir and a.voice.cues == b.voice.cues
        assert a.voice.cue_db == 0 and b.voice.cue_db == 12.0
        assert math.isclose(math.hypot(*a.voice.cues), 1.0)


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
    speakers = {lang: plant_speakers(lang, 4, 7, s) for lang in langs}
    record = plant_record(s, langs, speakers, 7)
    assert record["synthetic"] and record["null"] is False
    pairs = pd.DataFrame(record["pairs"])
    assert len(pairs) == 30
    en_de = pairs[(pairs.target == "en") & (pairs.donor == "de")].iloc[0]
    assert en_de.distance_deg == 180 and en_de.expected_sign == -1 and en_de.expected_cltm == -1
    en_tr = pairs[(pairs.target == "en") & (pairs.donor == "tr")].iloc[0]
    assert en_tr.expected_sign == 1 and math.isclose(en_tr.expected_cltm, math.cos(math.radians(36)), rel_tol=1e-5)
    assert record["languages"]["de"]["rule_yes"] == 4


def test_the_null_control_keeps_the_layout_and_plants_no_difference():
    table = pair_table(spec(null_control=True), list(ANGLES))
    assert (table.planted_distance_deg == 0).all() and (table.expected_cltm == 1).all()
    assert sorted(table.distance_deg.unique()) == [36, 72, 108, 144, 180]
    a = plant_speakers("en", 4, 7, spec(null_control=True))["planted_label"]
    b = plant_speakers("de", 4, 7, spec(null_control=True))
    assert (b["planted_label"] == assign_labels(b, 0.0, ("rule_no", "rule_yes"))).all() and len(a) == 8


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
