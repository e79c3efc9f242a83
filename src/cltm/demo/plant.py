"""A planted known answer: a label of each clip whose rule differs between languages by a set angle.

Every synthetic clip carries two acoustic cues, a point (z1, z2) on the unit circle drawn for that clip
(like a speaking style, it changes from one utterance to the next; the voice is the demo's otherwise):
z1, a spectral tilt (``cue_db * z1`` dB at 4 kHz and minus that at 250 Hz, turning about 1 kHz, weighted
twice), and z2, a broad mid-band resonance (``cue_db * z2`` dB at 1 kHz, none at 250 Hz and 4 kHz). A
language l labels each clip by the rule

    label = rule_yes where cos(theta_l) * z1 + sin(theta_l) * z2 > 0, else rule_no

A speaker's clips come in antipodal pairs of cue points (`clip_cues`), so under any rule each voice has
clips of both classes and the classes balance (exactly for an even number of clips per speaker),
independent of gender. A donor whose angle is
close to the target's teaches the target's rule; at 90 degrees it teaches nothing the target can use; at
180 degrees it teaches the opposite rule. The true direction and rough size of every cell of the CLTM are
therefore known before anything is trained: `pair_table` writes them down.

Why per clip and not per speaker (measured, docs/benchmarks.md): with a speaker's label, a few training
voices per class separate by any trait of the voice, the learning curve is flat between N and 2N voices and
most rows are flagged; with a label per clip the voice predicts nothing and only the cues do.

The null control (``null_control: true``) labels every language with the rule of angle 0 (the true CLTM is 1
everywhere) while `angles` keeps the layout the known-answer test is run against.

Public API: ``PlantSpec``, ``clip_cues``, ``cue_gain_db``, ``apply_cues``, ``assign_labels``,
``pair_table``, ``plant_record``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

from cltm.errors import ConfigError

PIVOT_HZ = 1000.0
"""Both cues are shapes of the spectral envelope in log frequency about this pivot."""

HALF_SPAN_OCTAVES = 2.0
"""u = log2(f / PIVOT_HZ) / HALF_SPAN_OCTAVES: u = -1 at 250 Hz, +1 at 4 kHz."""

BAND_HZ = (125.0, 8000.0)
"""The cues are held flat outside this band (u = -1.5 to 1.5), so a strong cue never boosts DC or the
Nyquist region."""

TILT_WEIGHT = 2.0
"""The tilt is weighted twice: while tuning, the demo's tiny encoder read a tilt of the resonance's size about
half as well as the resonance; weighted, the two read about equally (benchmarks/plant_cues.py: a ridge
read-out of frozen features, r 0.84 for z1 and 0.71 for z2 at cue_db 16)."""

CUES = {
    "z1": f"spectral tilt: {TILT_WEIGHT:g} * cue_db * z1 * u dB, u = log2(f / {PIVOT_HZ:.0f} Hz) / {HALF_SPAN_OCTAVES:.0f} "
          f"(+-{TILT_WEIGHT:g} cue_db at 250 Hz and 4 kHz per unit z1)",
    "z2": f"mid-band resonance: cue_db * z2 * (1 - u^2) dB (+cue_db at {PIVOT_HZ:.0f} Hz, 0 at 250 Hz and 4 kHz "
          f"per unit z2); both flat outside {BAND_HZ[0]:.0f}-{BAND_HZ[1]:.0f} Hz",
}
"""What each planted cue does to a speaker's audio (written into the plant file)."""


@dataclass(frozen=True)
class PlantSpec:
    """The plant of `corpus.demo.plant`: which column, which classes, how strong, which angle per language."""

    angles: dict[str, float]
    cue_db: float = 3.0
    label_column: str = "accents"
    classes: tuple[str, str] = ("rule_no", "rule_yes")
    null: bool = False

    @classmethod
    def from_config(cls, cfg: dict | None) -> PlantSpec | None:
        """The spec of a `corpus.demo.plant` section, or None when there is no plant."""
        if not cfg:
            return None
        angles = cfg.get("angles") or {}
        if not angles:
            raise ConfigError("config key 'corpus.demo.plant.angles' is empty: give each planted language an "
                              "angle in degrees, e.g. {en: 0, tr: 36, es: 72}, or set 'corpus.demo.plant: null'")
        classes = tuple(cfg.get("classes") or cls.classes)
        if len(classes) != 2 or classes[0] == classes[1]:
            raise ConfigError(f"config key 'corpus.demo.plant.classes' must name two different values, got {list(classes)}")
        cue_db = float(cfg.get("cue_db", cls.cue_db))
        if not 0 < cue_db <= 24:
            raise ConfigError(f"config key 'corpus.demo.plant.cue_db' must be in (0, 24] dB, got {cue_db}")
        return cls(angles={str(k): float(v) for k, v in angles.items()}, cue_db=cue_db,
                   label_column=str(cfg.get("label_column", cls.label_column)), classes=classes,
                   null=bool(cfg.get("null_control", False)))

    def rule_angle(self, lang: str) -> float:
        """The angle (degrees) of the rule that labels `lang`'s speakers (0 for every language under null)."""
        return 0.0 if self.null else self.angles[lang]

    def planted(self, lang: str) -> bool:
        """Whether `lang` gets planted labels (every language gets the cues in its audio)."""
        return lang in self.angles


def clip_cues(rng: np.random.Generator, count: int) -> list[tuple[float, float]]:
    """(z1, z2) of each of a speaker's `count` clips, from the generator of its own the synthesiser passes:
    points on the unit circle in antipodal pairs (clip 2k at a uniform angle, clip 2k + 1 opposite it).
    Every clip carries the cues at full strength (none sits near the origin, where no rule could be read
    from it), only their mix differs; and whatever a rule's angle, the two clips of a pair fall on opposite
    sides of it, so each voice has clips of both classes and the classes balance under every rule. The
    cues do not depend on the angles: the null control and a changed layout change the labels only."""
    points = []
    for u in range(count):
        phi = rng.uniform(0.0, 2.0 * math.pi) if u % 2 == 0 else points[-1] + math.pi
        points.append(phi)
    return [(float(math.cos(phi)), float(math.sin(phi))) for phi in points]


def cue_gain_db(freqs: np.ndarray, z1: float, z2: float, cue_db: float) -> np.ndarray:
    """The planted gain (dB) at each frequency (Hz) for a speaker's cues: the first two shapes of a
    spectral envelope in log frequency (a tilt and a bowing), measured with the demo's tiny encoder to be
    about equally audible to it at the same `cue_db` (docs/demo.md, "The planted task")."""
    f = np.clip(np.asarray(freqs, dtype=np.float64), *BAND_HZ)
    u = np.log2(f / PIVOT_HZ) / HALF_SPAN_OCTAVES
    return cue_db * (TILT_WEIGHT * z1 * u + z2 * (1.0 - u**2))


def apply_cues(audio: np.ndarray, sample_rate: int, z1: float, z2: float, cue_db: float) -> np.ndarray:
    """`audio` through the speaker's planted filter: zero-phase, by its gain in the frequency domain.

    The level is left to the caller (the synthesiser's channel sets every speaker's level afterwards).
    """
    x = np.asarray(audio, dtype=np.float64)
    if x.size == 0 or cue_db == 0:
        return np.asarray(audio, dtype=np.float32)
    n = 1 << int(math.ceil(math.log2(x.size + 1024)))  # padded: the filter's response does not wrap
    spectrum = np.fft.rfft(x, n)
    gain = 10 ** (cue_gain_db(np.fft.rfftfreq(n, 1.0 / sample_rate), z1, z2, cue_db) / 20)
    return np.fft.irfft(spectrum * gain, n)[: x.size].astype(np.float32)


def assign_labels(clips: pd.DataFrame, angle_deg: float, classes: tuple[str, str]) -> pd.Series:
    """The planted label of each clip (columns z1, z2) under the rule at `angle_deg`: classes[1] where
    s = cos(theta) z1 + sin(theta) z2 > 0, classes[0] elsewhere."""
    theta = math.radians(angle_deg)
    s = math.cos(theta) * clips["z1"] + math.sin(theta) * clips["z2"]
    return pd.Series(np.where(s > 0, classes[1], classes[0]), index=clips.index, dtype=object)


def _sign(x: float, tol: float = 1e-9) -> int:
    return 0 if abs(x) < tol else (1 if x > 0 else -1)


def pair_table(spec: PlantSpec, languages: list[str]) -> pd.DataFrame:
    """Every ordered pair (target, donor) of planted languages: the layout distance (what the
    known-answer test is run against), the planted distance (of the rules used for the labels), and the
    expected CLTM's sign and rough size (cos of the planted distance)."""
    langs = [lang for lang in languages if spec.planted(lang)]
    rows = []
    for target in langs:
        for donor in langs:
            if donor == target:
                continue
            layout = abs(spec.angles[target] - spec.angles[donor])
            planted = abs(spec.rule_angle(target) - spec.rule_angle(donor))
            expected = math.cos(math.radians(planted))
            rows.append({"target": target, "donor": donor, "distance_deg": float(layout),
                         "planted_distance_deg": float(planted), "expected_cltm": round(expected, 6),
                         "expected_sign": _sign(expected)})
    return pd.DataFrame(rows, columns=["target", "donor", "distance_deg", "planted_distance_deg",
                                       "expected_cltm", "expected_sign"])


def plant_record(spec: PlantSpec, languages: list[str], clips: dict[str, pd.DataFrame], seed: int) -> dict:
    """The plant file's content (results/demo_corpus/plant.json): the plant's settings, per planted
    language its angle and label counts (of clips), and the expected structure of every ordered pair.
    `clips`: per language, a table of its clips (client_id, gender, z1, z2, planted_label)."""
    per_language = {}
    for lang in languages:
        if not spec.planted(lang):
            continue
        table = clips[lang]
        yes = table["planted_label"] == spec.classes[1]
        per_language[lang] = {
            "angle_deg": spec.angles[lang],
            "rule_angle_deg": spec.rule_angle(lang),
            "speakers": int(table["client_id"].nunique()),
            "clips": int(len(table)),
            spec.classes[1]: int(yes.sum()),
            "by_gender": {g: {spec.classes[1]: int(yes[table["gender"] == g].sum()),
                              "clips": int((table["gender"] == g).sum())}
                          for g in sorted(table["gender"].unique())},
        }
    return {
        "synthetic": True,
        "unit": "clip",
        "what": "SYNTHETIC corpus with a planted effect: the label's rule differs between languages by a set angle "
                "(cltm.demo.plant, docs/demo.md)",
        "label_column": spec.label_column,
        "classes": list(spec.classes),
        "cue_db": spec.cue_db,
        "null": spec.null,
        "seed": int(seed),
        "cues": CUES,
        "languages": per_language,
        "pairs": pair_table(spec, languages).to_dict(orient="records"),
    }
