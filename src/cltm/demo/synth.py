"""Synthetic multilingual speech corpus, written in the layout of a Mozilla Common Voice release.

Speech comes from libespeak-ng (the copy shipped by the ``espeakng-loader`` wheel, driven through
ctypes in synchronous mode), so the demo needs no downloads, no system packages and no network.
A *speaker* is an eSpeak voice variant plus rng-drawn median F0 (reached through a per-variant
calibration of eSpeak's pitch parameter), intonation range, speaking rate, a vocal-tract-length
factor (formant scaling by resampling) and a recording channel (short FIR colouring and a noise
floor). Everything is drawn from ``numpy.random.default_rng`` seeded from (seed, language,
speaker index), so every language has its own speakers and a corpus is bit-for-bit reproducible.
libespeak-ng is global state: it is initialised once per process and used from one thread at a time.

Public API: ``SUPPORTED_LANGUAGES``, ``Voice``, ``synthesize``, ``synthesize_language``.
"""

from __future__ import annotations

import csv
import ctypes
import dataclasses
import hashlib
import math
import os
import re
import struct
import threading
import warnings
import zlib
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd
import soundfile as sf
import soxr

from cltm.config import DEMO_LANGUAGES
from cltm.demo.plant import PlantSpec, apply_cues, assign_labels, clip_cues

SAMPLE_RATE = 22050
"""Output sample rate in Hz: eSpeak NG's native rate, kept so no extra resampling is needed."""

SUPPORTED_LANGUAGES: dict[str, str] = DEMO_LANGUAGES
"""cltm language code (Common Voice locale) -> eSpeak NG voice name, checked against espeak-ng-data/lang."""

CV_COLUMNS = [
    "client_id", "path", "sentence_id", "sentence", "sentence_domain", "up_votes", "down_votes",
    "age", "gender", "accents", "variant", "locale", "segment",
]
"""Header of validated.tsv in recent Common Voice releases (17.0 and later), in order."""

PLANT_COLUMNS = ("accents", "variant", "segment", "sentence_domain")
"""Columns of validated.tsv the demo leaves empty, so a planted label may be written to one of them."""

CV_GENDER = {"male": "male_masculine", "female": "female_feminine"}
"""Common Voice's gender labels since release 17.0."""

AGES = ("teens", "twenties", "thirties", "forties", "fifties", "sixties", "seventies", "eighties")
"""Common Voice age values the demo's speakers get (see `_assign_ages`)."""

_AGE_BINS = ((1 / 6, "teens"), (1 / 3, "twenties"), (4 / 9, "thirties"), (5 / 9, "forties"), (2 / 3, "fifties"),
             (7 / 9, "sixties"), (8 / 9, "seventies"), (1.0, "eighties"))
"""Rank quantile of a speaker's age score within its language and gender -> age value: a third each
under 30, 30-59 and 60+ (the default map of the age task, config/demo_age.yaml)."""


@dataclass(frozen=True)
class _Variant:
    """An eSpeak voice variant with its measured pitch behaviour (see VARIANTS)."""

    gender: str
    range_hz: float  # the variant file's own pitch range ("pitch <base> <top>": top - base)
    f0_at_pitch: tuple[float, ...]  # median F0 (Hz) at the eSpeak pitch values of _PITCH_GRID, range 50


_PITCH_GRID = (10, 20, 35, 50, 65, 80, 90)
"""eSpeak pitch parameter values at which VARIANTS' F0 was measured."""

VARIANTS: dict[str, _Variant] = {
    # Median F0 over two sentences in each of the seven languages (spread across languages ~5%), measured
    # with this build by autocorrelation; eSpeak's pitch parameter maps to F0 differently per variant.
    # m*/f* are eSpeak's standard male/female variants; the named ones declare that gender in their
    # voice file, measured in the matching F0 range, and have no whisper, robot or extreme settings.
    "m1": _Variant("male", 34, (72, 76, 84, 95, 110, 128, 143)),
    "m2": _Variant("male", 27, (72, 77, 87, 102, 120, 142, 160)),
    "m3": _Variant("male", 42, (81, 85, 94, 107, 123, 142, 158)),
    "m4": _Variant("male", 40, (75, 79, 85, 95, 109, 126, 140)),
    "m5": _Variant("male", 36, (76, 81, 91, 104, 119, 139, 155)),
    "m6": _Variant("male", 35, (75, 80, 89, 102, 119, 139, 156)),
    "m7": _Variant("male", 50, (86, 91, 97, 108, 123, 141, 156)),
    "m8": _Variant("male", 37, (71, 72, 79, 87, 100, 115, 127)),
    "Andy": _Variant("male", 25, (70, 73, 82, 96, 114, 135, 152)),
    "Denis": _Variant("male", 35, (74, 79, 88, 100, 117, 136, 152)),
    "antonio": _Variant("male", 46, (85, 89, 99, 112, 129, 150, 166)),
    "michel": _Variant("male", 40, (79, 83, 93, 106, 123, 143, 160)),
    "miguel": _Variant("male", 50, (85, 90, 100, 112, 129, 148, 164)),
    "victor": _Variant("male", 30, (71, 75, 84, 96, 113, 132, 148)),
    "f1": _Variant("female", 60, (127, 137, 156, 181, 211, 246, 277)),
    "f2": _Variant("female", 78, (142, 153, 172, 197, 227, 265, 296)),
    "f3": _Variant("female", 100, (160, 170, 190, 213, 242, 279, 308)),
    "f4": _Variant("female", 58, (125, 135, 155, 180, 211, 248, 277)),
    "f5": _Variant("female", 68, (144, 156, 178, 206, 241, 285, 317)),
    "Andrea": _Variant("female", 65, (167, 181, 209, 245, 290, 342, 387)),
    "belinda": _Variant("female", 47, (150, 165, 194, 229, 274, 327, 371)),
    "linda": _Variant("female", 47, (149, 164, 193, 230, 274, 327, 371)),
    "steph": _Variant("female", 34, (118, 131, 155, 185, 222, 266, 302)),
    "Alicia": _Variant("female", 95, (181, 194, 218, 249, 290, 337, 377)),
}
"""Voice variants speakers are made from. Left out after measuring: Annie and aunty (F0 erratic with range)."""

_RANGE_F0_SLOPE = 0.4
"""Measured: eSpeak range r moves the median F0 by about 0.4 * range_hz * (r - 50) / 50 Hz."""

# Per-gender ranges of the rng-drawn speaker parameters (uniform unless noted).
_F0_HZ = {"male": (85.0, 140.0), "female": (175.0, 255.0)}  # median F0 as heard, log-uniform
_TRACT = {"male": (0.90, 1.02), "female": (0.98, 1.12)}  # formant scale; >1 = shorter vocal tract
_RATE_WPM = (140, 195)  # speaking rate as heard, words per minute
_PITCH_RANGE = (30, 75)  # eSpeak intonation range 0-100 (50 = default)
_SNR_DB = (25.0, 40.0)  # speech-to-noise-floor ratio of the speaker's channel
_LEVEL_DBFS = (-27.0, -19.0)  # RMS of active speech after the channel

# Per-utterance jitter so a speaker's utterances differ beyond the text.
_JITTER_F0 = 0.04  # relative, +-
_JITTER_RATE = 0.06  # relative, +-
_JITTER_RANGE = 6  # eSpeak range units, +-


def _range_shift_hz(variant: str, pitch_range: float) -> float:
    """How far eSpeak's range setting moves the variant's median F0 away from its value at range 50."""
    return _RANGE_F0_SLOPE * VARIANTS[variant].range_hz * (pitch_range - 50) / 50


def _f0_limits(variant: str, pitch_range: float, tract_factor: float) -> tuple[float, float]:
    """The median F0 a variant reaches within the calibrated pitch values (10-90), after tract scaling."""
    table, shift = VARIANTS[variant].f0_at_pitch, _range_shift_hz(variant, pitch_range)
    return (table[0] + shift) * tract_factor, (table[-1] + shift) * tract_factor


def _espeak_pitch(variant: str, f0_hz: float, pitch_range: float) -> float:
    """The eSpeak pitch parameter that gives median F0 f0_hz at this range, by the VARIANTS calibration."""
    f0_at_50 = f0_hz - _range_shift_hz(variant, pitch_range)
    logs = np.log(VARIANTS[variant].f0_at_pitch)
    # Extend the table to pitch 0 and 100 along its end slopes, so targets just outside stay monotonic.
    grid = np.array([0, *_PITCH_GRID, 100], dtype=np.float64)
    lo = logs[0] - (logs[1] - logs[0]) / (_PITCH_GRID[1] - _PITCH_GRID[0]) * _PITCH_GRID[0]
    hi = logs[-1] + (logs[-1] - logs[-2]) / (_PITCH_GRID[-1] - _PITCH_GRID[-2]) * (100 - _PITCH_GRID[-1])
    return float(np.interp(math.log(max(f0_at_50, 1.0)), [lo, *logs, hi], grid))


_MARGIN_S = 0.10
"""Silence kept (or padded) before and after the speech, like a trimmed Common Voice clip."""

_SHORT_SENTENCE_WORDS = 5
"""Sentences with at most this many words may be joined with a second one into one utterance."""


# --------------------------------------------------------------------------------------------------
# libespeak-ng through ctypes
# --------------------------------------------------------------------------------------------------

_AUDIO_OUTPUT_SYNCHRONOUS = 2  # espeak_AUDIO_OUTPUT: espeak_Synth returns after all audio went to the callback
_INITIALIZE_DONT_EXIT = 0x8000  # espeakINITIALIZE_DONT_EXIT: report errors instead of calling exit()
_POS_CHARACTER = 1  # espeak_POSITION_TYPE
_CHARS_UTF8 = 1  # espeakCHARS_UTF8
_PARAM_RATE, _PARAM_PITCH, _PARAM_RANGE = 1, 3, 4  # espeak_PARAMETER
_EE_OK, _EE_NOT_FOUND = 0, 2  # espeak_ERROR

_SynthCallback = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.c_void_p)
"""t_espeak_callback: int cb(short *wav, int numsamples, espeak_EVENT *events); return 0 to continue."""

_CARRIED_STATE = {"Flutter_ix": 0, "cycle_count": 0, "agc": 256, "echo_complete": 0, "modulation_type": 0,
                  "glottal_flag": 0}
"""Wavegen statics (C ints) that carry over from one utterance to the next, with their initial values.

eSpeak's pitch-flutter phase (a function-local static), the roughness cycle counter and a few
others are never reset by the API, so the same text and voice sound slightly different (even
in length) depending on what was spoken before. Resetting them, plus espeak_ng_SetRandSeed
for the breath noise, makes every utterance a pure function of its inputs.
"""


def _elf_symbols(path: str) -> dict[str, int]:
    """Symbol name -> value from the .symtab of a 64-bit little-endian ELF file (locals included)."""
    data = Path(path).read_bytes()
    if data[:4] != b"\x7fELF" or data[4] != 2 or data[5] != 1:
        return {}
    (shoff,) = struct.unpack_from("<Q", data, 0x28)
    shentsize, shnum = struct.unpack_from("<HH", data, 0x3A)
    sections = [struct.unpack_from("<IIQQQQIIQQ", data, shoff + i * shentsize) for i in range(shnum)]
    symbols = {}
    for _, kind, _, _, offset, size, link, _, _, _ in sections:
        if kind != 2:  # SHT_SYMTAB
            continue
        strtab = sections[link][4]
        for j in range(size // 24):
            name, _, _, _, value, _ = struct.unpack_from("<IBBHQQ", data, offset + 24 * j)
            start = strtab + name
            symbols[data[start: data.index(b"\0", start)].decode("ascii", "replace")] = value
    return symbols


def _carried_state(lib: ctypes.CDLL, path: str) -> list[tuple[ctypes.c_int, int]]:
    """ctypes views on the _CARRIED_STATE statics in the loaded library, paired with their reset values."""
    symbols = _elf_symbols(path)
    if "espeak_Synth" not in symbols:
        return []
    base = ctypes.cast(lib.espeak_Synth, ctypes.c_void_p).value - symbols["espeak_Synth"]
    state = []
    for name, value in _CARRIED_STATE.items():
        # Function-local statics carry a compiler suffix, e.g. "Flutter_ix.5965".
        matches = [v for k, v in symbols.items() if re.fullmatch(rf"{name}(\.\d+)?", k)]
        if len(matches) != 1:
            return []
        state.append((ctypes.c_int.from_address(base + matches[0]), value))
    return state


class _Espeak:
    """The process-wide libespeak-ng instance; the library is global state, so one per process."""

    def __init__(self) -> None:
        import espeakng_loader

        path = espeakng_loader.get_library_path()
        lib = ctypes.CDLL(path)
        lib.espeak_Initialize.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_int]
        lib.espeak_Initialize.restype = ctypes.c_int
        lib.espeak_SetSynthCallback.argtypes = [_SynthCallback]
        lib.espeak_SetSynthCallback.restype = None
        lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
        lib.espeak_SetVoiceByName.restype = ctypes.c_int
        lib.espeak_SetParameter.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int]
        lib.espeak_SetParameter.restype = ctypes.c_int
        lib.espeak_Synth.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_uint, ctypes.c_int,
                                     ctypes.c_uint, ctypes.c_uint, ctypes.c_void_p, ctypes.c_void_p]
        lib.espeak_Synth.restype = ctypes.c_int
        lib.espeak_Synchronize.restype = ctypes.c_int
        lib.espeak_ng_SetRandSeed.argtypes = [ctypes.c_long]
        lib.espeak_ng_SetRandSeed.restype = None
        data_path = espeakng_loader.get_data_path().encode()
        rate = lib.espeak_Initialize(_AUDIO_OUTPUT_SYNCHRONOUS, 0, data_path, _INITIALIZE_DONT_EXIT)
        if rate != SAMPLE_RATE:
            raise RuntimeError(f"espeak_Initialize failed or gave an unexpected sample rate ({rate})")
        self._lib = lib
        self._state = _carried_state(lib, path)
        if not self._state:
            warnings.warn(f"cltm.demo.synth: cannot locate eSpeak's wavegen state in {path}; synthesis is "
                          "deterministic only for a fixed sequence of calls from process start", stacklevel=3)
        self._chunks: list[np.ndarray] = []
        self._callback = _SynthCallback(self._collect)  # kept referenced: the library holds a raw pointer
        lib.espeak_SetSynthCallback(self._callback)

    def _collect(self, wav, numsamples, events) -> int:
        """Copy each block of int16 samples out of the library's buffer before it is reused."""
        if numsamples > 0 and wav:
            self._chunks.append(np.ctypeslib.as_array(wav, shape=(numsamples,)).copy())
        return 0

    def render(self, voice_name: str, text: str, *, rate: int, pitch: int, pitch_range: int,
               noise_seed: int = 0) -> np.ndarray:
        """Synthesise text with an eSpeak voice ("en+m3") and parameters; int16 samples at 22050 Hz."""
        err = self._lib.espeak_SetVoiceByName(voice_name.encode())
        if err != _EE_OK:
            why = "not found" if err == _EE_NOT_FOUND else f"error {err}"
            raise ValueError(f"eSpeak voice '{voice_name}': {why}")
        # Parameters are set after the voice, every time, so a voice change can never reset them.
        for param, value in ((_PARAM_RATE, rate), (_PARAM_PITCH, pitch), (_PARAM_RANGE, pitch_range)):
            self._lib.espeak_SetParameter(param, int(value), 0)
        for variable, value in self._state:
            variable.value = value
        self._lib.espeak_ng_SetRandSeed(int(noise_seed))
        data = text.encode("utf-8") + b"\0"
        self._chunks = []
        err = self._lib.espeak_Synth(data, len(data), 0, _POS_CHARACTER, 0, _CHARS_UTF8, None, None)
        if err != _EE_OK:
            raise RuntimeError(f"espeak_Synth failed with error {err} for voice '{voice_name}'")
        self._lib.espeak_Synchronize()
        chunks, self._chunks = self._chunks, []
        return np.concatenate(chunks) if chunks else np.zeros(0, dtype=np.int16)


_ENGINE: _Espeak | None = None
_ENGINE_LOCK = threading.Lock()


def _engine() -> _Espeak:
    """Initialise libespeak-ng on first use only, so importing cltm.demo.synth stays cheap."""
    global _ENGINE
    if _ENGINE is None:
        _ENGINE = _Espeak()
    return _ENGINE


# --------------------------------------------------------------------------------------------------
# Voices and synthesis
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Voice:
    """Everything that defines how one speaker sounds, in physical terms: F0 and rate are as heard."""

    language: str  # eSpeak voice name, e.g. "en" (see SUPPORTED_LANGUAGES)
    variant: str  # eSpeak voice variant, one of VARIANTS, e.g. "m3" or "f2"
    f0_hz: float | None = None  # median F0 of the output; None: the variant's own (eSpeak pitch 50)
    pitch_range: float = 50.0  # eSpeak intonation range 0-100 (50 = the variant's own)
    rate: float = 175.0  # words per minute
    tract_factor: float = 1.0  # formant scaling by resampling (>1: shorter vocal tract, higher formants)
    fir: tuple[float, ...] = (1.0,)  # channel impulse response (microphone/room colouring)
    snr_db: float = 60.0  # speech-to-noise-floor ratio of the channel
    level_dbfs: float = -23.0  # RMS of the active speech in the final clip
    cues: tuple[float, float] = (0.0, 0.0)  # planted cues (z1, z2) of cltm.demo.plant; heard only with cue_db > 0
    cue_db: float = 0.0  # strength of the planted cues (0: no plant, the voice as drawn)

    def __post_init__(self) -> None:
        """Reject variants without an F0 calibration and tract factors that would not sound like speech."""
        if self.variant not in VARIANTS:
            raise ValueError(f"unknown eSpeak variant '{self.variant}'; calibrated ones: {', '.join(VARIANTS)}")
        if not 0.7 <= self.tract_factor <= 1.4:
            raise ValueError(f"tract_factor {self.tract_factor} is outside 0.7-1.4")

    @property
    def gender(self) -> str:
        """'male' or 'female': the gender of the eSpeak variant."""
        return VARIANTS[self.variant].gender

    @property
    def espeak_name(self) -> str:
        """The name given to espeak_SetVoiceByName: language voice plus variant."""
        return f"{self.language}+{self.variant}"

    def jittered(self, rng: np.random.Generator) -> Voice:
        """A copy with small random F0/rate/range changes: the same speaker on another occasion."""
        f0 = self.f0_hz if self.f0_hz is not None else VARIANTS[self.variant].f0_at_pitch[_PITCH_GRID.index(50)]
        return dataclasses.replace(
            self,
            f0_hz=f0 * (1.0 + rng.uniform(-_JITTER_F0, _JITTER_F0)),
            rate=self.rate * (1.0 + rng.uniform(-_JITTER_RATE, _JITTER_RATE)),
            pitch_range=float(np.clip(self.pitch_range + rng.uniform(-_JITTER_RANGE, _JITTER_RANGE), 0, 100)),
        )


def synthesize(text: str, voice: Voice, *, rng: np.random.Generator | None = None) -> np.ndarray:
    """Speak ``text`` with ``voice``: float32 mono at 22050 Hz, trimmed to ~100 ms margins, channel applied.

    ``rng`` draws the channel noise; without it a seed is derived from text and voice, so the
    result is deterministic either way.
    """
    if rng is None:
        digest = hashlib.sha256(repr((text, voice)).encode("utf-8")).digest()
        rng = np.random.default_rng(int.from_bytes(digest[:8], "little"))
    # eSpeak renders at an F0 and rate that the tract resampling below brings to the requested ones.
    alpha = float(voice.tract_factor)
    pitch = 50.0 if voice.f0_hz is None else _espeak_pitch(voice.variant, voice.f0_hz / alpha, voice.pitch_range)
    with _ENGINE_LOCK:
        raw = _engine().render(
            voice.espeak_name, text,
            rate=int(round(np.clip(voice.rate / alpha, 80, 450))),
            pitch=int(round(np.clip(pitch, 0, 100))),
            pitch_range=int(round(np.clip(voice.pitch_range, 0, 100))),
            noise_seed=int(rng.integers(2**31)),
        )
    speech = raw.astype(np.float32) / 32768.0
    if alpha != 1.0 and speech.size:
        # Declaring the signal as recorded at alpha*sr and converting to sr scales all frequencies by alpha.
        speech = soxr.resample(speech, SAMPLE_RATE * alpha, SAMPLE_RATE, quality="HQ").astype(np.float32)
    speech = _trim(speech)
    if voice.cue_db > 0 and speech.size:
        speech = apply_cues(speech, SAMPLE_RATE, *voice.cues, voice.cue_db)
    return _apply_channel(speech, voice, rng)


def _frame_rms(x: np.ndarray, frame: int) -> np.ndarray:
    """RMS of consecutive non-overlapping frames (the tail shorter than a frame is dropped)."""
    n = len(x) // frame
    if n == 0:
        return np.zeros(0, dtype=np.float64)
    return np.sqrt(np.mean(x[: n * frame].astype(np.float64).reshape(n, frame) ** 2, axis=1))


def _trim(x: np.ndarray, threshold_db: float = -45.0) -> np.ndarray:
    """Cut leading/trailing silence to a ~100 ms margin each side, padding with zeros where eSpeak left less."""
    frame = int(0.01 * SAMPLE_RATE)
    rms = _frame_rms(x, frame)
    if rms.size == 0 or rms.max() <= 0:
        return x
    active = np.flatnonzero(rms > rms.max() * 10 ** (threshold_db / 20))
    margin = int(_MARGIN_S * SAMPLE_RATE)
    start = active[0] * frame - margin
    end = (active[-1] + 1) * frame + margin
    clip = x[max(start, 0): min(end, len(x))]
    return np.pad(clip, (max(-start, 0), max(end - len(x), 0))).astype(np.float32)


def _active_rms(x: np.ndarray) -> float:
    """RMS over the frames within 35 dB of the loudest one, so the level ignores pauses."""
    rms = _frame_rms(x, int(0.02 * SAMPLE_RATE))
    if rms.size == 0 or rms.max() <= 0:
        return 0.0
    active = rms[rms > rms.max() * 10 ** (-35 / 20)]
    return float(np.sqrt(np.mean(active**2)))


def _apply_channel(speech: np.ndarray, voice: Voice, rng: np.random.Generator) -> np.ndarray:
    """Add the speaker's noise floor, colour with the speaker's FIR and set the speaker's level."""
    level = _active_rms(speech)
    if level == 0.0:
        return speech.astype(np.float32)
    noise = rng.standard_normal(len(speech)) * level * 10 ** (-voice.snr_db / 20)
    x = np.convolve(speech + noise, np.asarray(voice.fir, dtype=np.float64))[: len(speech)]
    x *= 10 ** (voice.level_dbfs / 20) / max(_active_rms(x), 1e-12)
    peak = np.abs(x).max()
    if peak > 0.98:  # a loud voice keeps its level but never clips
        x *= 0.98 / peak
    return x.astype(np.float32)


# --------------------------------------------------------------------------------------------------
# Speakers and sentences
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Speaker:
    """One synthetic speaker of one language: its voice plus the Common Voice metadata it gets."""

    index: int
    client_id: str
    age: str
    voice: Voice

    @property
    def gender(self) -> str:
        """'male' or 'female', from the voice's eSpeak variant."""
        return self.voice.gender


def _language_key(lang: str) -> int:
    """A stable integer for a language code (Python's hash() is salted per process)."""
    return zlib.crc32(lang.encode("utf-8"))


def _rng(seed: int, lang: str, *path: int) -> np.random.Generator:
    """An independent generator for (seed, language, *path), e.g. one speaker or one utterance."""
    return np.random.default_rng([int(seed), _language_key(lang), *path])


def _client_id(seed: int, lang: str, index: int) -> str:
    """A Common Voice-like 64-hex client id, unique per (seed, language, speaker)."""
    return hashlib.sha256(f"cltm-synth|{seed}|{lang}|{index}".encode("utf-8")).hexdigest()


def _channel_fir(rng: np.random.Generator) -> tuple[float, ...]:
    """A short random impulse response: a few dB of spectral ripple plus a gentle tilt, unit energy."""
    n = int(rng.integers(6, 17))
    decay = rng.uniform(1.5, 4.0)
    h = np.zeros(n)
    h[0] = 1.0
    h[1:] = rng.normal(0.0, 0.25, n - 1) * np.exp(-np.arange(1, n) / decay)
    h = np.convolve(h, [1.0, rng.uniform(-0.45, 0.45)])
    h /= np.sqrt(np.sum(h**2))
    return tuple(float(v) for v in h)


def make_speakers(lang: str, n_speakers_per_gender: int, seed: int, cue_db: float = 0.0) -> list[Speaker]:
    """The speakers of one language: even indices male, odd female, each voice drawn from its own rng.

    `cue_db` is the strength of the planted cues (cltm.demo.plant) each clip of the voice will carry (0: none);
    the cues themselves are drawn per clip (`plant_clips`), so the voice is the same with or without a plant."""
    if lang not in SUPPORTED_LANGUAGES:
        raise ValueError(_unknown_language(lang))
    # Variants are dealt per gender from a shuffled pool, so a language repeats one only once all are used.
    order_rng = _rng(seed, lang, 0)
    pools = {g: [str(v) for v in order_rng.permutation([n for n, c in VARIANTS.items() if c.gender == g])]
             for g in ("male", "female")}
    speakers = []
    for index in range(2 * n_speakers_per_gender):
        gender = "male" if index % 2 == 0 else "female"
        rng = _rng(seed, lang, 1, index)
        variant = pools[gender][(index // 2) % len(pools[gender])]
        lo, hi = _F0_HZ[gender]
        f0 = math.exp(rng.uniform(math.log(lo), math.log(hi)))
        pitch_range = rng.uniform(*_PITCH_RANGE)
        tract = rng.uniform(*_TRACT[gender])
        voice = Voice(
            language=SUPPORTED_LANGUAGES[lang],
            variant=variant,
            f0_hz=float(np.clip(f0, *_f0_limits(variant, pitch_range, tract))),  # what eSpeak can reach
            pitch_range=pitch_range,
            rate=rng.uniform(*_RATE_WPM),
            tract_factor=tract,
            fir=_channel_fir(rng),
            snr_db=rng.uniform(*_SNR_DB),
            level_dbfs=rng.uniform(*_LEVEL_DBFS),
            cue_db=float(cue_db),
        )
        speakers.append(Speaker(index, _client_id(seed, lang, index), "", voice))
    return _assign_ages(speakers)


def age_score(voice: Voice) -> float:
    """How old a voice sounds, 0 (young) to 1 (old), from three audible cues of its drawn parameters:
    a slower speaking rate, a narrower intonation range, and F0 moving with age as it does in people
    (male voices rise, female voices fall, within the gender's range). Each cue counts one third."""
    slow = (_RATE_WPM[1] - voice.rate) / (_RATE_WPM[1] - _RATE_WPM[0])
    flat = (_PITCH_RANGE[1] - voice.pitch_range) / (_PITCH_RANGE[1] - _PITCH_RANGE[0])
    lo, hi = _F0_HZ[voice.gender]
    high = (math.log(voice.f0_hz) - math.log(lo)) / (math.log(hi) - math.log(lo))
    return float(np.clip((slow + flat + (high if voice.gender == "male" else 1 - high)) / 3, 0, 1))


def _assign_ages(speakers: list[Speaker]) -> list[Speaker]:
    """Each speaker's Common Voice age value from its rank by `age_score` within its gender: the voices
    (and so the audio) are the ones drawn without ages, and the ages follow what is audible in them;
    every language gets the same spread of ages per gender (_AGE_BINS)."""
    ages = {}
    for gender in ("male", "female"):
        group = sorted((s for s in speakers if s.gender == gender), key=lambda s: (age_score(s.voice), s.index))
        for rank, spk in enumerate(group):
            q = (rank + 0.5) / len(group)
            ages[spk.index] = next(age for bound, age in _AGE_BINS if q <= bound)
    return [dataclasses.replace(s, age=ages[s.index]) for s in speakers]


def plant_clips(lang: str, n_speakers_per_gender: int, utterances_per_speaker: int, seed: int,
                spec: PlantSpec | None) -> pd.DataFrame:
    """Every clip of one language with its planted cues and label (metadata only, no audio), in the order
    `synthesize_language` writes them: columns client_id, gender, clip (index within the speaker), z1, z2,
    planted_label (empty where the language has no angle or there is no plant)."""
    speakers = make_speakers(lang, n_speakers_per_gender, seed, spec.cue_db if spec else 0.0)
    return _plant_table(lang, speakers, utterances_per_speaker, seed, spec)


def _plant_table(lang: str, speakers: list[Speaker], count: int, seed: int, spec: PlantSpec | None) -> pd.DataFrame:
    """`plant_clips` of speakers already made: each speaker's cues from a generator of its own."""
    angle = spec.rule_angle(lang) if spec is not None and spec.planted(lang) else None
    rows = []
    for speaker in speakers:
        for u, (z1, z2) in enumerate(clip_cues(_rng(seed, lang, 4, speaker.index), count)):
            rows.append({"client_id": speaker.client_id, "gender": speaker.gender, "clip": u, "z1": z1, "z2": z2})
    table = pd.DataFrame(rows, columns=["client_id", "gender", "clip", "z1", "z2"])
    table["planted_label"] = ""
    if angle is not None:
        table["planted_label"] = assign_labels(table, angle, spec.classes)
    return table


def load_sentences(lang: str) -> list[str]:
    """The sentence bank of a language: one sentence a line, no tabs or double quotes (TSVs stay unquoted)."""
    if lang not in SUPPORTED_LANGUAGES:
        raise ValueError(_unknown_language(lang))
    text = resources.files("cltm.demo").joinpath("sentences", f"{lang}.txt").read_text(encoding="utf-8")
    sentences = [line.strip() for line in text.splitlines() if line.strip()]
    bad = [s for s in sentences if "\t" in s or '"' in s]
    if bad:
        raise ValueError(f"sentence bank '{lang}' has lines with tabs or double quotes: {bad[:3]}")
    return sentences


def _utterance_texts(sentences: list[str], count: int, rng: np.random.Generator) -> list[str]:
    """Texts for one speaker: sentences in a random order without repeats; a short one may take a second."""
    order = list(rng.permutation(len(sentences)))
    texts = []
    while len(texts) < count:
        if len(order) < 2:
            order += list(rng.permutation(len(sentences)))
        text = sentences[order.pop(0)]
        if len(text.split()) <= _SHORT_SENTENCE_WORDS and rng.random() < 0.5:
            text = f"{text} {sentences[order.pop(0)]}"
        texts.append(text)
    return texts


def speaker_utterances(lang: str, speaker: Speaker, count: int, seed: int, sentences: list[str],
                       cues: list[tuple[float, float]] | None = None):
    """Yield (text, audio) for `count` utterances of one speaker, each drawn from its own generator;
    `cues`, each utterance's planted cues (heard with the voice's `cue_db` > 0)."""
    texts = _utterance_texts(sentences, count, _rng(seed, lang, 2, speaker.index))
    for u, text in enumerate(texts):
        rng = _rng(seed, lang, 3, speaker.index, u)
        voice = speaker.voice.jittered(rng)
        if cues is not None:
            voice = dataclasses.replace(voice, cues=cues[u])
        yield text, synthesize(text, voice, rng=rng)


def _unknown_language(lang: str) -> str:
    """The error message for a language without a sentence bank and eSpeak voice mapping."""
    return (f"the synthetic corpus has no language '{lang}'; "
            f"supported: {', '.join(sorted(SUPPORTED_LANGUAGES))}")


# --------------------------------------------------------------------------------------------------
# Common Voice-shaped writer
# --------------------------------------------------------------------------------------------------


def _write_tsv_atomically(df: pd.DataFrame, path: Path) -> None:
    """Write a TSV under a temporary name and rename it, so a crash never leaves a complete-looking file."""
    tmp = path.with_name(path.name + ".tmp")
    df.to_csv(tmp, sep="\t", index=False, quoting=csv.QUOTE_NONE, lineterminator="\n")
    os.replace(tmp, path)


CLIP_FORMATS = {"mp3": "MP3", "flac": "FLAC"}
"""Clip formats of the demo corpus: MP3 as in Common Voice, or FLAC (about ten times cheaper to encode)."""


def _write_clip(audio: np.ndarray, path: Path) -> None:
    """Encode one clip (format from its extension) under a temporary name, then rename: no half-written
    clip keeps a real name."""
    tmp = path.with_name(path.name + ".tmp")
    sf.write(tmp, audio, SAMPLE_RATE, format=CLIP_FORMATS[path.suffix[1:]])
    os.replace(tmp, path)


class _ClipWriter:
    """Encodes clips on worker threads while eSpeak (single-threaded) renders the next ones.

    MP3 encoding (LAME at libsndfile's fixed quality 2) is most of the cost, and soundfile's cffi
    calls release the GIL, so worker threads overlap it with synthesis. The first clip is encoded
    inline, in case LAME builds shared tables lazily. Output bytes do not depend on threading.
    """

    def __init__(self, workers: int | None = None) -> None:
        self._workers = workers or min(4, os.cpu_count() or 1)
        self._pool = ThreadPoolExecutor(self._workers) if self._workers > 1 else None
        self._pending: list[Future] = []
        self._warm = False

    def submit(self, audio: np.ndarray, path: Path) -> None:
        """Queue one clip for encoding to path (inline for the first clip, or without workers)."""
        if self._pool is None or not self._warm:
            _write_clip(audio, path)
            self._warm = True
            return
        self._pending.append(self._pool.submit(_write_clip, audio, path))
        if len(self._pending) > 4 * self._workers:  # bound the audio held in memory
            self._pending.pop(0).result()

    def close(self) -> None:
        """Wait for every clip (re-raising the first encoding error) and stop the threads."""
        try:
            for future in self._pending:
                future.result()
        finally:
            self._pending = []
            if self._pool is not None:
                self._pool.shutdown(wait=True, cancel_futures=True)


def synthesize_language(
    lang: str,
    out_dir: str | Path,
    *,
    n_speakers_per_gender: int,
    utterances_per_speaker: int,
    seed: int,
    clip_format: str = "mp3",
    plant: PlantSpec | None = None,
    log: Callable[[str], None] | None = None,
) -> pd.DataFrame:
    """Write one language as a Common Voice release folder (clips/*.mp3 or *.flac by `clip_format`,
    validated.tsv, clip_durations.tsv).

    With a `plant` (cltm.demo.plant), every clip carries its planted cues and, if the language has an
    angle, its planted label is written to the plant's label column (`accents` by default).

    Returns the validated.tsv rows. The TSVs are written last and atomically; stale ones are removed
    first, so an interrupted run leaves no validated.tsv behind.
    """
    if lang not in SUPPORTED_LANGUAGES:
        raise ValueError(_unknown_language(lang))
    if n_speakers_per_gender < 1 or utterances_per_speaker < 1:
        raise ValueError("n_speakers_per_gender and utterances_per_speaker must be at least 1")
    if seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed}")
    if clip_format not in CLIP_FORMATS:
        raise ValueError(f"clip_format must be one of {', '.join(CLIP_FORMATS)}, got '{clip_format}'")
    out = Path(out_dir)
    clips = out / "clips"
    clips.mkdir(parents=True, exist_ok=True)
    for name in ("validated.tsv", "clip_durations.tsv"):
        (out / name).unlink(missing_ok=True)

    sentences = load_sentences(lang)
    speakers = make_speakers(lang, n_speakers_per_gender, seed, plant.cue_db if plant else 0.0)
    planted = dict(tuple(_plant_table(lang, speakers, utterances_per_speaker, seed, plant).groupby("client_id")))
    column = plant.label_column if plant is not None else None
    if column is not None and column not in PLANT_COLUMNS:
        raise ValueError(f"corpus.demo.plant.label_column '{column}' is not a free column of validated.tsv: "
                         f"use one of {', '.join(PLANT_COLUMNS)}")
    rows, durations = [], []
    writer = _ClipWriter()
    try:
        for speaker in speakers:
            seconds = 0.0
            clip_plan = planted[speaker.client_id]  # its clips in order
            cues, labels = list(zip(clip_plan["z1"], clip_plan["z2"])), list(clip_plan["planted_label"])
            for u, (text, audio) in enumerate(speaker_utterances(lang, speaker, utterances_per_speaker, seed,
                                                                 sentences, cues)):
                name = f"common_voice_{lang}_{len(rows) + 1}.{clip_format}"
                writer.submit(audio, clips / name)
                seconds += len(audio) / SAMPLE_RATE
                durations.append({"clip": name, "duration[ms]": int(round(len(audio) * 1000 / SAMPLE_RATE))})
                rows.append({
                    "client_id": speaker.client_id,
                    "path": name,
                    "sentence_id": hashlib.sha256(text.encode("utf-8")).hexdigest(),
                    "sentence": text,
                    "sentence_domain": "",
                    "up_votes": 2,
                    "down_votes": 0,
                    "age": speaker.age,
                    "gender": CV_GENDER[speaker.gender],
                    "accents": "",
                    "variant": "",
                    "locale": lang,
                    "segment": "",
                })
                if column is not None:
                    rows[-1][column] = labels[u]
            if log is not None:
                v = speaker.voice
                log(f"{lang} speaker {speaker.index + 1}/{2 * n_speakers_per_gender}: {speaker.gender} {speaker.age} "
                    f"{v.variant} f0={v.f0_hz:.0f}Hz range={v.pitch_range:.0f} rate={v.rate:.0f}wpm "
                    f"tract={v.tract_factor:.3f} snr={v.snr_db:.1f}dB, {utterances_per_speaker} clips"
                    + (f" ({sum(x == plant.classes[1] for x in labels)} {plant.classes[1]})" if labels[0] else "")
                    + f", {seconds:.1f} s")
    finally:
        writer.close()

    validated = pd.DataFrame(rows, columns=CV_COLUMNS)
    _write_tsv_atomically(pd.DataFrame(durations, columns=["clip", "duration[ms]"]), out / "clip_durations.tsv")
    _write_tsv_atomically(validated, out / "validated.tsv")
    return validated
