import numpy as np
import pandas as pd
import pytest

from conftest import tone, write_wav
from cltm.data.corpora import CorpusError, load_corpus_language, read_common_voice, read_manifest

NEW_HEADER = ["client_id", "path", "sentence_id", "sentence", "sentence_domain", "up_votes", "down_votes", "age",
              "gender", "accents", "variant", "locale", "segment"]
V12_HEADER = ["client_id", "path", "sentence", "up_votes", "down_votes", "age", "gender", "accents", "locale", "segment"]


def _cv(tmp_path, lang, header, genders):
    folder = tmp_path / lang
    rows = []
    for i, g in enumerate(genders):
        clip = f"common_voice_{lang}_{i}.mp3"
        write_wav(folder / "clips" / clip, tone(120 + 10 * i, 1.0, 48000), 48000, "MP3")
        row = {c: "" for c in header}
        row.update(client_id=f"spk{i % 3}", path=clip, sentence='He said "hi".', gender=g, locale=lang)
        rows.append(row)
    pd.DataFrame(rows, columns=header).to_csv(folder / "validated.tsv", sep="\t", index=False)
    return folder


def test_common_voice_both_vocabularies_and_header_order(tmp_path):
    _cv(tmp_path, "zh-CN", NEW_HEADER[::-1], ["male_masculine", "female_feminine", "non-binary", "", "do_not_wish_to_say"])
    _cv(tmp_path, "ca", V12_HEADER, ["male", "female", "other"])
    new = read_common_voice(tmp_path, "zh-CN")
    assert new["gender"].tolist() == ["male", "female", "", "", ""]
    assert new["gender_raw"].tolist()[2] == "non-binary"
    assert new["speaker"].tolist()[:3] == ["spk0", "spk1", "spk2"]
    assert all(p.endswith(".mp3") and "/zh-CN/clips/" in p for p in new["path"])
    old = read_common_voice(tmp_path, "ca")
    assert old["gender"].tolist() == ["male", "female", ""] and old["language"].eq("ca").all()
    assert np.isnan(old["duration"]).all()


def test_common_voice_durations_and_splits(tmp_path):
    folder = _cv(tmp_path, "es", NEW_HEADER, ["male", "female", "male", "female"])
    pd.DataFrame({"clip": ["common_voice_es_0.mp3", "common_voice_es_1.mp3"], "duration[ms]": [1500, 2250]}) \
        .to_csv(folder / "clip_durations.tsv", sep="\t", index=False)
    pd.DataFrame({"path": ["common_voice_es_3.mp3"]}).to_csv(folder / "test.tsv", sep="\t", index=False)
    m = read_common_voice(tmp_path, "es").set_index("utt_id")
    assert m.loc["common_voice_es_1", "duration"] == pytest.approx(2.25)
    assert np.isnan(m.loc["common_voice_es_2", "duration"])
    assert m.loc["common_voice_es_3", "split"] == "test" and m.loc["common_voice_es_0", "split"] == ""


def test_common_voice_errors_name_the_problem(tmp_path):
    _cv(tmp_path, "en", NEW_HEADER, ["male"])
    with pytest.raises(CorpusError, match=r"no folder for language 'de'.*locales present: en"):
        read_common_voice(tmp_path, "de")
    with pytest.raises(CorpusError, match="train.tsv is missing"):
        read_common_voice(tmp_path, "en", "train.tsv")
    pd.DataFrame({"path": ["x.mp3"]}).to_csv(tmp_path / "en" / "bad.tsv", sep="\t", index=False)
    with pytest.raises(CorpusError, match="lacks column.*client_id"):
        read_common_voice(tmp_path, "en", "bad.tsv")
    pd.DataFrame(columns=NEW_HEADER).to_csv(tmp_path / "en" / "other.tsv", sep="\t", index=False)
    with pytest.raises(CorpusError, match="other.tsv lists no clips"):
        read_common_voice(tmp_path, "en", "other.tsv")


def test_generic_manifest(tmp_path):
    write_wav(tmp_path / "audio" / "a.flac", tone(200, 1.0, 16000), 16000)
    df = pd.DataFrame({"path": ["audio/a.flac", "/abs/b.wav", "audio/c.wav"], "speaker": ["s1", "s2", "s3"],
                       "gender": ["F", "male", "unknown"], "language": ["pl", "pl", "it"], "split": ["TEST", "", ""]})
    df.to_csv(tmp_path / "m.csv", index=False)
    m = read_manifest(tmp_path / "m.csv", "pl")
    assert m["utt_id"].tolist() == ["a", "b"] and m["gender"].tolist() == ["female", "male"]
    assert m["path"].iloc[0] == str(tmp_path / "audio" / "a.flac") and m["split"].iloc[0] == "test"
    cfg = {"type": "manifest", "manifest": {"path": str(tmp_path / "m.csv")}}
    assert len(load_corpus_language(cfg, "it", None)) == 1
    with pytest.raises(CorpusError, match=r"no rows for language 'fr' \(languages present: it, pl\)"):
        read_manifest(tmp_path / "m.csv", "fr")
    df.drop(columns=["speaker"]).to_csv(tmp_path / "bad.tsv", sep="\t", index=False)
    with pytest.raises(CorpusError, match=r"bad.tsv lacks column\(s\) speaker"):
        read_manifest(tmp_path / "bad.tsv", "pl")


def test_demo_release_reads_as_common_voice(demo_release):
    m = read_common_voice(demo_release, "tr")
    assert len(m) == 8 * 6 and m["speaker"].nunique() == 8
    assert (m.groupby("gender")["speaker"].nunique() == 4).all()
    assert (m["duration"] > 0.5).all()
    assert not set(m["speaker"]) & set(read_common_voice(demo_release, "en")["speaker"])
