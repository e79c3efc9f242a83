"""Tests of the synthetic Common Voice-shaped corpus (cltm.demo.synth): real eSpeak audio, no mocks."""

import re

import numpy as np
import pandas as pd
import pytest
import soundfile as sf

from cltm.demo import synth
from cltm.demo.synth import SUPPORTED_LANGUAGES, Voice, synthesize, synthesize_language

SR = synth.SAMPLE_RATE
HEADER = ("client_id\tpath\tsentence_id\tsentence\tsentence_domain\tup_votes\tdown_votes\t"
          "age\tgender\taccents\tvariant\tlocale\tsegment")
N_PER_GENDER, N_UTTS = 2, 3


def median_f0(x: np.ndarray, sr: int = SR, fmin: float = 60.0, fmax: float = 400.0) -> float:
    """Median F0 (Hz) over voiced 40 ms frames, by normalised autocorrelation."""
    x = np.asarray(x, dtype=np.float64)
    frame, hop = int(0.04 * sr), int(0.01 * sr)
    frames = np.lib.stride_tricks.sliding_window_view(x, frame)[::hop]
    frames = frames - frames.mean(axis=1, keepdims=True)
    energy = np.sqrt((frames**2).mean(axis=1))
    frames = frames[energy > 0.1 * energy.max()]
    ac = np.fft.irfft(np.abs(np.fft.rfft(frames, 2 * frame, axis=1)) ** 2, axis=1)[:, :frame]
    ac /= np.maximum(ac[:, :1], 1e-12)
    lo, hi = int(sr / fmax), int(sr / fmin)
    lag = lo + np.argmax(ac[:, lo:hi], axis=1)
    voiced = ac[np.arange(len(lag)), lag] > 0.5
    return float(np.median(sr / lag[voiced]))


def read_tsv(path) -> pd.DataFrame:
    """Read a TSV the way the Common Voice reader does: all strings, no quoting."""
    return pd.read_csv(path, sep="\t", dtype=str, keep_default_na=False, quoting=3)


@pytest.fixture(scope="module")
def corpora(tmp_path_factory):
    """Small corpora: en twice with one seed, en with another seed, tr with the first seed."""
    out = {}
    for key, lang, seed in [("en", "en", 11), ("en_again", "en", 11), ("en_seed12", "en", 12), ("tr", "tr", 11)]:
        folder = tmp_path_factory.mktemp(key)
        lines = []
        df = synthesize_language(lang, folder, n_speakers_per_gender=N_PER_GENDER,
                                 utterances_per_speaker=N_UTTS, seed=seed, log=lines.append)
        out[key] = (folder, df, lines)
    return out


@pytest.mark.parametrize("lang", sorted(SUPPORTED_LANGUAGES))
def test_synthesis_is_speech_of_plausible_duration(lang):
    text = synth.load_sentences(lang)[0]
    audio = synthesize(text, Voice(SUPPORTED_LANGUAGES[lang], "m3"))
    assert audio.dtype == np.float32 and audio.ndim == 1
    assert np.isfinite(audio).all() and np.abs(audio).max() <= 1.0
    seconds = len(audio) / SR
    words = len(text.split())
    assert 0.15 * words + 0.2 < seconds < 0.8 * words + 1.0, (lang, text, seconds)
    rms = np.sqrt(np.mean(audio**2))
    assert rms > 0.01
    # Trimmed to ~100 ms margins: the first and last 50 ms are far quieter than the clip as a whole.
    edge = int(0.05 * SR)
    for part in (audio[:edge], audio[-edge:]):
        assert np.sqrt(np.mean(part**2)) < 0.1 * rms


def test_unknown_language_names_it_and_the_supported_ones(tmp_path):
    with pytest.raises(ValueError, match=r"'xx'.*en.*tr"):
        synthesize_language("xx", tmp_path, n_speakers_per_gender=1, utterances_per_speaker=1, seed=0)


def test_unknown_variant_is_rejected():
    with pytest.raises(ValueError, match="whisper"):
        Voice("en", "whisper")
    with pytest.raises(ValueError, match="tract_factor"):
        Voice("en", "m1", tract_factor=2.0)


def test_sentence_banks_are_large_and_clean():
    for lang in SUPPORTED_LANGUAGES:
        sentences = synth.load_sentences(lang)
        assert len(sentences) >= 40, lang
        assert len(set(sentences)) == len(sentences), lang
        assert all(s[-1] in ".?!" for s in sentences), lang


def test_male_voices_have_lower_f0_than_female_voices():
    speakers = synth.make_speakers("en", 4, seed=3)
    texts = synth.load_sentences("en")[:2]
    f0 = {"male": [], "female": []}
    for speaker in speakers:
        f0[speaker.gender].append(np.median([median_f0(synthesize(t, speaker.voice)) for t in texts]))
    assert len(f0["male"]) == len(f0["female"]) == 4
    assert np.mean(f0["male"]) < 0.75 * np.mean(f0["female"])
    assert max(f0["male"]) < min(f0["female"])
    assert all(75 < f < 170 for f in f0["male"]) and all(150 < f < 300 for f in f0["female"])


def test_speakers_differ_and_languages_do_not_share_voices():
    en = synth.make_speakers("en", 3, seed=5)
    es = synth.make_speakers("es", 3, seed=5)
    assert len({s.voice for s in en}) == len(en)
    assert not {(s.voice.variant, s.voice.f0_hz) for s in en} & {(s.voice.variant, s.voice.f0_hz) for s in es}
    # Within a gender and language, variants are not reused while the pool lasts.
    males = [s.voice.variant for s in en if s.gender == "male"]
    assert len(set(males)) == len(males)


def test_corpus_has_common_voice_layout(corpora):
    folder, df, lines = corpora["en"]
    assert (folder / "validated.tsv").read_text(encoding="utf-8").split("\n")[0] == HEADER
    assert (folder / "clip_durations.tsv").read_text(encoding="utf-8").split("\n")[0] == "clip\tduration[ms]"
    table = read_tsv(folder / "validated.tsv")
    assert list(table.columns) == HEADER.split("\t")
    assert table.equals(df.astype(str))
    n_speakers = 2 * N_PER_GENDER
    assert len(table) == n_speakers * N_UTTS
    assert table.groupby("gender").size().to_dict() == {"female_feminine": N_PER_GENDER * N_UTTS,
                                                        "male_masculine": N_PER_GENDER * N_UTTS}
    assert table["client_id"].nunique() == n_speakers
    assert (table.groupby("client_id").size() == N_UTTS).all()
    assert (table.groupby("client_id")["gender"].nunique() == 1).all()
    assert table["client_id"].str.fullmatch(r"[0-9a-f]{64}").all()
    assert table["sentence_id"].str.fullmatch(r"[0-9a-f]{64}").all()
    assert table["path"].str.fullmatch(r"common_voice_en_\d+\.mp3").all() and table["path"].is_unique
    assert (table["up_votes"] == "2").all() and (table["down_votes"] == "0").all()
    assert table["age"].isin(synth.AGES).all() and (table["locale"] == "en").all()
    for column in ("sentence_domain", "accents", "variant", "segment"):
        assert (table[column] == "").all()
    assert set(table["sentence"]) <= {" ".join(p) for p in _sentence_joins(synth.load_sentences("en"))}
    assert len(lines) == n_speakers and all(re.match(r"en speaker \d+/4: (male|female) ", s) for s in lines)
    assert not list(folder.rglob("*.tmp"))


def _sentence_joins(sentences):
    """Every utterance text the writer may produce: one sentence, or two joined."""
    yield from ((s,) for s in sentences)
    short = [s for s in sentences if len(s.split()) <= synth._SHORT_SENTENCE_WORDS]
    yield from ((a, b) for a in short for b in sentences if a != b)


def test_clips_decode_with_listed_durations(corpora):
    folder, df, _ = corpora["en"]
    durations = read_tsv(folder / "clip_durations.tsv")
    assert list(durations["clip"]) == list(df["path"])
    assert sorted(p.name for p in (folder / "clips").iterdir()) == sorted(df["path"])
    for clip, ms in zip(durations["clip"], durations["duration[ms]"].astype(int)):
        audio, sr = sf.read(folder / "clips" / clip, dtype="float32")
        assert sr == SR and audio.ndim == 1
        assert abs(len(audio) / sr * 1000 - ms) <= 50, clip
        assert 500 < ms < 15000 and np.sqrt(np.mean(audio**2)) > 0.01


def test_client_ids_are_distinct_across_languages(corpora):
    en, tr = corpora["en"][1], corpora["tr"][1]
    assert not set(en["client_id"]) & set(tr["client_id"])
    assert (tr["locale"] == "tr").all() and tr["path"].str.startswith("common_voice_tr_").all()


def test_same_seed_gives_identical_corpus(corpora):
    (a, df_a, _), (b, df_b, _) = corpora["en"], corpora["en_again"]
    for name in ("validated.tsv", "clip_durations.tsv"):
        assert (a / name).read_bytes() == (b / name).read_bytes()
    for clip in df_a["path"]:
        assert (a / "clips" / clip).read_bytes() == (b / "clips" / clip).read_bytes()
        assert np.array_equal(sf.read(a / "clips" / clip)[0], sf.read(b / "clips" / clip)[0])


def test_synthesis_is_deterministic_to_the_sample_whatever_came_before():
    voice = synth.make_speakers("fi", 1, seed=9)[1].voice
    text = synth.load_sentences("fi")[3]
    first = synthesize(text, voice, rng=np.random.default_rng(1))
    # eSpeak keeps state between utterances (pitch flutter phase, ...): speak something else in between.
    synthesize(synth.load_sentences("ru")[7], Voice("ru", "m7", rate=150.0))
    assert np.array_equal(first, synthesize(text, voice, rng=np.random.default_rng(1)))
    assert np.array_equal(synthesize(text, voice), synthesize(text, voice))
    assert not np.array_equal(first, synthesize(text, voice, rng=np.random.default_rng(2)))


def test_different_seed_gives_different_corpus(corpora):
    (a, df_a, _), (c, df_c, _) = corpora["en"], corpora["en_seed12"]
    assert (a / "validated.tsv").read_bytes() != (c / "validated.tsv").read_bytes()
    assert not set(df_a["client_id"]) & set(df_c["client_id"])
    first = df_a["path"].iloc[0]
    assert (a / "clips" / first).read_bytes() != (c / "clips" / first).read_bytes()


def test_interrupted_run_leaves_no_validated_tsv(tmp_path):
    (tmp_path / "validated.tsv").write_text(HEADER + "\n")  # a stale one from an earlier run

    def crash(line):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        synthesize_language("es", tmp_path, n_speakers_per_gender=1, utterances_per_speaker=1, seed=0, log=crash)
    assert not (tmp_path / "validated.tsv").exists()
    assert not (tmp_path / "clip_durations.tsv").exists()
