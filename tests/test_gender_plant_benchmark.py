"""benchmarks/gender_plant.py, the measurement of a known answer planted in gender (docs/benchmarks.md, "A
planted effect in gender"), keeps measuring what it says: its voices are the demo's with F0 moved by the
language's shift (or clipped where the eSpeak variant cannot reach it, and counted), `by_f0` deals each voice
a variant that reaches its F0, the expected signs follow the shift distance, and the whole script runs on
real synthesised audio and the shipped encoder at a reduced size."""

from __future__ import annotations

import importlib.util
import math

from conftest import ROOT

from cltm.demo.synth import VARIANTS, _f0_limits, make_speakers

SCRIPT = ROOT / "benchmarks" / "gender_plant.py"


def _module():
    spec = importlib.util.spec_from_file_location("gender_plant", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_voices_are_the_demos_with_f0_shifted_or_clipped_and_counted():
    gp = _module()
    demo = make_speakers("en", 6, 7)
    same, genders, clipped = gp.shifted_voices("en", 0.0, 6, 7, "demo")
    assert clipped == 0 and [v for v in same] == [s.voice for s in demo]
    assert genders == ["male", "female"] * 6
    up, _, clipped_up = gp.shifted_voices("en", 6.0, 6, 7, "demo")
    moved = 0
    for before, after in zip(demo, up):
        lo, hi = _f0_limits(after.variant, after.pitch_range, after.tract_factor)
        assert after.variant == before.voice.variant and lo - 1e-9 <= after.f0_hz <= hi + 1e-9
        if math.isclose(after.f0_hz, before.voice.f0_hz * 2 ** 0.5, rel_tol=1e-9):
            moved += 1
        else:  # clipped: at its variant's upper reach, below the shifted F0
            assert math.isclose(after.f0_hz, hi, rel_tol=1e-9) and after.f0_hz < before.voice.f0_hz * 2 ** 0.5
    assert moved + clipped_up == 12 and moved > 0 and clipped_up > 0


def test_by_f0_deals_a_variant_that_reaches_the_shifted_f0():
    gp = _module()
    demo = make_speakers("de", 6, 7)
    voices, _, clipped = gp.shifted_voices("de", 3.0, 6, 7, "by_f0")
    assert clipped == 0
    for before, after in zip(demo, voices):
        assert math.isclose(after.f0_hz, before.voice.f0_hz * 2 ** 0.25, rel_tol=1e-9)
        assert gp.NEUTRAL_TRACT[0] <= after.tract_factor <= gp.NEUTRAL_TRACT[1]
    # the variant follows F0, not gender: male voices moved 9 semitones up (143-235 Hz) are beyond what
    # some male variants reach, and those get a female variant
    high, genders, _ = gp.shifted_voices("de", 9.0, 6, 7, "by_f0")
    assert any(g == "male" and VARIANTS[v.variant].gender == "female" for v, g in zip(high, genders))


def test_expected_signs_follow_the_shift_distance():
    gp = _module()
    pairs = gp.plant_pairs({"en": -6.0, "tr": -4.0, "es": -1.0, "ru": 1.0, "fi": 4.0, "de": 6.0})["pairs"]
    assert len(pairs) == 30
    by = {(p["target"], p["donor"]): p for p in pairs}
    assert by[("en", "tr")]["expected_sign"] == 1 and by[("en", "tr")]["distance_deg"] == 2.0
    assert by[("en", "de")]["expected_sign"] == -1 and by[("es", "fi")]["expected_sign"] == 0
    assert all((p["expected_sign"] == -1) == (p["distance_deg"] > gp.OPPOSITE_ST) for p in pairs)
    assert 5.0 < gp.OPPOSITE_ST < 5.3  # the female centre's distance from where the ranges meet


def test_the_script_runs_on_real_audio_at_a_reduced_size(capsys):
    gp = _module()
    assert gp.main(["--speakers", "6", "--clips", "2", "--test-voices", "3", "--n", "2", "--seeds", "3",
                    "--threads", "1"]) == 0
    out = capsys.readouterr().out
    assert "voices clipped to their variant's F0 reach: en " in out and "SYNTHETIC" in out
    rows = [line.split()[0] for line in out.splitlines() if line[:2] in {"en", "tr", "es", "ru", "fi", "de"}
            and "single" not in line]
    assert rows == ["en", "tr", "es", "ru", "fi", "de"]
    assert "Mantel rho" in out and ("verdict at analysis.known_answer" in out)
