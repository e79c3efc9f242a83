"""Build Common Voice-shaped releases for the tests: real MP3 clips of synthetic speech, the real TSV
headers of a recent release (v17 and later) and of a v12 release, the label edge cases, and bad clips.

Header facts (common-voice/cv-dataset CHANGELOG and the Corpora Creator files): up to v12 the clip
lists have client_id, path, sentence, up_votes, down_votes, age, gender, accents, locale, segment;
v13 added `variant`; v17 added `sentence_id` and `sentence_domain`. clip_durations.tsv (`clip`,
`duration[ms]`) exists from v16.1. Gender: male/female/other up to v16; from v17 male_masculine,
female_feminine, intersex, transgender, non-binary, do_not_wish_to_say; empty = not given.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pandas as pd
import soundfile as sf
import soxr

from cltm.demo.synth import SAMPLE_RATE, load_sentences, make_speakers, synthesize

RECENT_HEADER = ["client_id", "path", "sentence_id", "sentence", "sentence_domain", "up_votes", "down_votes", "age",
                 "gender", "accents", "variant", "locale", "segment"]
V12_HEADER = ["client_id", "path", "sentence", "up_votes", "down_votes", "age", "gender", "accents", "locale",
              "segment"]
VOCABULARY = {
    "recent": {"male": "male_masculine", "female": "female_feminine",
               "excluded": ["", "non-binary", "transgender", "do_not_wish_to_say", "intersex"]},
    "v12": {"male": "male", "female": "female", "excluded": ["", "other"]},
}


def write_language(root: Path, locale: str, *, release: str, sample_rate: int, speakers_per_gender: int,
                   clips_per_speaker: int, excluded_clips: int = 2, voice_language: str = "en",
                   seed: int = 0) -> pd.DataFrame:
    """One locale folder: clips/*.mp3, validated.tsv, train/dev/test.tsv (speaker-disjoint) and, for a
    recent release, clip_durations.tsv. Speakers with each excluded gender label are added too."""
    header = RECENT_HEADER if release == "recent" else V12_HEADER
    vocab = VOCABULARY[release]
    folder = root / locale
    (folder / "clips").mkdir(parents=True, exist_ok=True)
    speakers = make_speakers(voice_language, speakers_per_gender + len(vocab["excluded"]), seed)
    labelled = {"male": [s for s in speakers if s.gender == "male"][:speakers_per_gender],
                "female": [s for s in speakers if s.gender == "female"][:speakers_per_gender]}
    extra = [s for s in speakers if s not in labelled["male"] + labelled["female"]][:len(vocab["excluded"])]
    labels = [(s, vocab[g]) for g in ("male", "female") for s in labelled[g]]
    labels += [(s, lab) for s, lab in zip(extra, vocab["excluded"])]
    sentences = load_sentences(voice_language)
    rng = np.random.default_rng(seed)
    rows, durations = [], []
    for k, (spk, label) in enumerate(labels):
        client_id = hashlib.sha512(f"{locale}-{spk.client_id}".encode()).hexdigest()  # 128 hex, as in CV
        for c in range(clips_per_speaker if label in (vocab["male"], vocab["female"]) else excluded_clips):
            text = sentences[(7 * k + c) % len(sentences)]
            wave = synthesize(text, spk.voice.jittered(rng), rng=rng)
            wave = soxr.resample(wave, SAMPLE_RATE, sample_rate).astype(np.float32)
            name = f"common_voice_{locale}_{40000000 + 100 * k + c}.mp3"
            sf.write(folder / "clips" / name, wave, sample_rate, format="MP3")
            row = dict.fromkeys(header, "")
            row.update(client_id=client_id, path=name, sentence=text, up_votes="2", down_votes="0",
                       age="thirties", gender=label, locale=locale)
            if "sentence_id" in row:
                row["sentence_id"] = hashlib.sha256(text.encode()).hexdigest()
            rows.append(row)
            durations.append({"clip": name, "duration[ms]": int(round(len(wave) * 1000 / sample_rate))})
    validated = pd.DataFrame(rows, columns=header)
    write_tsv(validated, folder / "validated.tsv")
    if release == "recent":
        write_tsv(pd.DataFrame(durations, columns=["clip", "duration[ms]"]), folder / "clip_durations.tsv")
    # official splits: whole speakers, 2 per gender in test, 1 per gender in dev, the rest in train
    split_of = {}
    for g in ("male", "female"):
        for i, spk in enumerate(labelled[g]):
            split_of[spk.client_id] = "test" if i < 2 else "dev" if i == 2 else "train"
    ids = {hashlib.sha512(f"{locale}-{s.client_id}".encode()).hexdigest(): s.client_id for s, _ in labels}
    split = validated["client_id"].map(lambda c: split_of.get(ids[c], "train"))
    for name in ("train", "dev", "test"):
        write_tsv(validated[split == name], folder / f"{name}.tsv")
    return validated


def write_tsv(df: pd.DataFrame, path: Path) -> None:
    df.to_csv(path, sep="\t", index=False)


# ------------------------------------------------------------------ bad clips

def make_missing(path: Path) -> None:
    path.unlink()


def make_empty(path: Path) -> None:
    path.write_bytes(b"")


def make_truncated(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 3])


def make_undecodable(path: Path) -> None:
    path.write_bytes(b"ID3\x03\x00\x00\x00\x00\x00\x00" + bytes(range(256)) * 4)


def make_silent(path: Path) -> None:
    info = sf.info(str(path))
    sf.write(path, np.zeros(info.frames, np.float32), info.samplerate, format="MP3")


def make_too_short(path: Path, seconds: float = 0.4) -> None:
    data, sr = sf.read(str(path), dtype="float32")
    sf.write(path, data[: int(seconds * sr)], sr, format="MP3")
    set_listed_duration(path.parent.parent, path.name, seconds)


CORRUPT = {"missing": make_missing, "empty": make_empty, "truncated": make_truncated,
           "undecodable": make_undecodable, "silent": make_silent, "too_short": make_too_short}


def set_listed_duration(folder: Path, clip: str, seconds: float) -> None:
    """Make clip_durations.tsv (when the release has one) list `seconds` for `clip`, as CV would."""
    table = folder / "clip_durations.tsv"
    if table.is_file():
        df = pd.read_csv(table, sep="\t", dtype=str)
        df.loc[df["clip"] == clip, "duration[ms]"] = str(int(round(seconds * 1000)))
        write_tsv(df, table)


# ------------------------------------------------------------------ a reduced experiment on such a release

FAST_TRAINING = {"epochs": 2, "batch_size": 2, "crop_seconds": 0.5}


def overrides(root: Path) -> dict:
    """What a user's config file says to run a tiny experiment on the test release."""
    return {
        "languages": ["sv-SE", "zh-CN"],
        "corpus": {"type": "common_voice", "common_voice": {"root": str(root), "tsv": "validated.tsv"}},
        "data": {"test": {"speakers_per_gender": 2, "min_clips_per_speaker": 4, "max_clips_per_speaker": 4}},
        "tasks": {
            "gender": {"n_per_class": 2, "max_clips_per_speaker": 2, "training": FAST_TRAINING},
            "speaker": {"n_utterances": 6, "max_utterances_per_speaker": 3, "max_positives_per_speaker": 4,
                        "training": FAST_TRAINING},
        },
        "encoder": {"source": "random",
                    "config": {"hidden_size": 32, "num_attention_heads": 2, "intermediate_size": 64}},
        "seeds": [1],
    }


def merged_config(default: dict, root: Path, **extra) -> dict:
    """The config Snakemake would run: config/config.yaml updated key by key, as --configfile does."""
    import copy

    from snakemake.utils import update_config

    cfg = copy.deepcopy(default)
    update_config(cfg, overrides(root))
    update_config(cfg, extra)
    return cfg
