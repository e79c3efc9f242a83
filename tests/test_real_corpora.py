"""Common Voice as it really is (real headers, both gender vocabularies, region locales, MP3 at 48 and
32 kHz, official splits) and bad clips, on a release of real MP3 files written by the tests."""

from __future__ import annotations

import copy
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from cv_release import CORRUPT, RECENT_HEADER, V12_HEADER, merged_config
from cltm.data.audio import check_clip
from cltm.data.prepare import prepare_selection
from cltm.data.corpora import CorpusError, read_common_voice
from cltm.data.plan import select_language
from cltm.data.selection import SelectionError


@pytest.fixture
def release(cv_release, tmp_path) -> Path:
    """A private copy of the release that a test may damage."""
    return Path(shutil.copytree(cv_release, tmp_path / cv_release.name))


def test_recent_and_v12_releases_read_by_header(cv_release):
    assert pd.read_csv(cv_release / "sv-SE" / "validated.tsv", sep="\t", nrows=0).columns.tolist() == RECENT_HEADER
    assert pd.read_csv(cv_release / "zh-CN" / "validated.tsv", sep="\t", nrows=0).columns.tolist() == V12_HEADER
    new, old = read_common_voice(cv_release, "sv-SE"), read_common_voice(cv_release, "zh-CN")
    # only the two binary labels enter gender-labelled sets; every other label, and none, is kept out
    assert dict(new.groupby("gender_raw")["gender"].first()) == {
        "": "", "do_not_wish_to_say": "", "female_feminine": "female", "intersex": "", "male_masculine": "male",
        "non-binary": "", "transgender": ""}
    assert dict(old.groupby("gender_raw")["gender"].first()) == {"": "", "female": "female", "male": "male",
                                                                 "other": ""}
    for m, lang in ((new, "sv-SE"), (old, "zh-CN")):
        assert m["language"].eq(lang).all() and m["path"].str.contains(f"/{lang}/clips/").all()
        assert m["speaker"].str.len().eq(128).all()  # client_id, as released
        assert set(m["split"]) == {"train", "dev", "test"}
        test_spk, train_spk = set(m.loc[m.split == "test", "speaker"]), set(m.loc[m.split != "test", "speaker"])
        assert not test_spk & train_spk  # the official splits are speaker-disjoint
    assert (new["duration"] > 0.5).all()  # clip_durations.tsv (recent release)
    assert new["duration"].isna().sum() == 0 and old["duration"].isna().all()  # v12: no durations


@pytest.mark.parametrize("reason", sorted(CORRUPT))
@pytest.mark.parametrize("lang", ["sv-SE", "zh-CN"])
def test_each_bad_clip_is_named_with_its_reason(release, lang, reason):
    m = read_common_voice(release, lang).set_index("utt_id")
    utt = m.index[0]
    good, _, _ = check_clip(m.at[utt, "path"], 16000, listed_seconds=m.at[utt, "duration"])
    assert good is not None and good.dtype == np.float32
    CORRUPT[reason](Path(m.at[utt, "path"]))
    m = read_common_voice(release, lang).set_index("utt_id")  # clip_durations.tsv may have changed
    wave, got, detail = check_clip(m.at[utt, "path"], 16000, listed_seconds=m.at[utt, "duration"])
    # v12 has no listed durations: truncation is caught from the MP3's own header
    assert (wave, got) == (None, reason), detail
    assert detail


def test_bad_clips_are_replaced_by_the_same_speakers_next_clip(release, default_config):
    cfg = merged_config(default_config, release)
    m = read_common_voice(release, "sv-SE")
    plan = select_language(cfg, m, "sv-SE")
    info = m.set_index("utt_id")
    victims = {"missing": plan["gender"]["test"][0], "empty": plan["gender"]["single"][0],
               "truncated": plan["gender"]["extra"][0],
               "silent": next(u for u in plan["speaker"]["single"] if u not in plan["gender"]["single"])}
    for reason, utt in victims.items():
        CORRUPT[reason](Path(info.at[utt, "path"]))
    lines = []
    prepared = prepare_selection(cfg, read_common_voice(release, "sv-SE"), "sv-SE", plan, log=lines.append)
    dropped = prepared.dropped.set_index("utt_id")
    assert dict(dropped["reason"]) == {u: r for r, u in victims.items()}
    for utt in victims.values():  # each drop is logged with its path and reason
        assert any(info.at[utt, "path"] in line and dropped.at[utt, "reason"] in line for line in lines)
    for task, before in plan.items():
        after = prepared.selections[task]
        for part in ("test", "single", "extra"):
            assert len(after[part]) == len(before[part])  # sizes unchanged
            assert not set(after[part]) & set(victims.values())
            gone, new = set(before[part]) - set(after[part]), set(after[part]) - set(before[part])
            assert len(gone) == len(new)  # one replacement per bad clip, nothing else moved
            assert sorted(info.loc[list(gone), "speaker"]) == sorted(info.loc[list(new), "speaker"])
            assert (info.loc[after[part], "gender"].value_counts().to_dict()
                    == info.loc[before[part], "gender"].value_counts().to_dict())
        train_spk = set(info.loc[after["single"] + after["extra"], "speaker"])
        assert not train_spk & set(after["test_speakers"])
        assert not set(info.loc[after["single"], "speaker"]) & set(info.loc[after["extra"], "speaker"])
    trials = prepared.selections["speaker"]["trials"]
    assert {u for a, b, _ in trials for u in (a, b)} <= set(prepared.selections["speaker"]["test"])
    assert set(prepared.pcm) == {u for s in prepared.selections.values() for u in s["test"] + s["single"] + s["extra"]}


def test_a_language_that_runs_short_fails_with_its_counts(release, default_config):
    cfg = merged_config(default_config, release)
    m = read_common_voice(release, "zh-CN")
    female = sorted(m.loc[m["gender"] == "female", "speaker"].unique())
    for path in m.loc[m["speaker"].isin(female[1:]), "path"]:
        Path(path).unlink()
    with pytest.raises(SelectionError) as err:
        prepare_selection(cfg, m, "zh-CN", select_language(cfg, m, "zh-CN"), log=lambda s: None)
    msg = str(err.value)
    assert "language 'zh-CN': after dropping" in msg and "missing" in msg and "female" in msg


def test_a_wrong_clips_folder_stops_at_once(release, default_config):
    cfg = merged_config(default_config, release)
    m = read_common_voice(release, "sv-SE")
    shutil.rmtree(release / "sv-SE" / "clips")
    with pytest.raises(CorpusError, match=r"language 'sv-SE': 20 of the 20 clips checked so far are bad \(20 missing"):
        prepare_selection(cfg, m, "sv-SE", select_language(cfg, m, "sv-SE"), log=lambda s: None)


def test_official_split(cv_release, default_config):
    cfg = merged_config(default_config, cv_release, data={"split": "official"})
    for lang in ("sv-SE", "zh-CN"):
        m = read_common_voice(cv_release, lang)
        split_of = dict(zip(m["utt_id"], m["split"]))
        for sel in select_language(cfg, m, lang).values():
            assert {split_of[u] for u in sel["test"]} == {"test"}
            assert {split_of[u] for u in sel["single"] + sel["extra"]} <= {"train", "dev"}
    no_test = m[m["split"] != "test"]
    with pytest.raises(SelectionError, match="data.split is 'official'.*test.tsv"):
        select_language(cfg, no_test, "zh-CN")


def _shared_corpus(tmp_path):
    """en and es with real WAV clips; half of es's speakers reuse en speaker ids (one person, two languages)."""
    from conftest import make_manifest, tone, write_wav

    manifests = {}
    for lang in ("en", "es"):
        m = make_manifest(lang, 8, 8)
        for i, row in m.iterrows():
            m.at[i, "path"] = str(write_wav(tmp_path / lang / f"{row.utt_id}.wav",
                                            tone(120 + 7 * (i % 40), 2.0, 16000), 16000))
        manifests[lang] = m
    es = manifests["es"]
    shared = es["speaker"].str.match(r"es-(male|female)-[0-3]$")
    es.loc[shared, "speaker"] = es.loc[shared, "speaker"].str.replace("es-", "en-", regex=False)
    return manifests


def test_replacing_bad_clips_never_brings_a_test_voice_into_training(tmp_path, default_config):
    """A test speaker of es loses its clips, so es re-selects its test set: the newcomer must not be a voice
    that en already trains on; and replaced training clips must not come from en's test speakers."""
    from leakage import assert_selections_disjoint

    from cltm.data.plan import select_all
    from cltm.data.speakers import SpeakerRules

    cfg = copy.deepcopy(default_config)
    cfg["languages"] = ["en", "es"]
    cfg["tasks"]["gender"].update(n_per_class=6, max_clips_per_speaker=3)
    cfg["tasks"]["speaker"].update(n_utterances=12, max_utterances_per_speaker=4, max_positives_per_speaker=5)
    cfg["data"]["test"].update(speakers_per_gender=2, min_clips_per_speaker=4, max_clips_per_speaker=5)
    manifests = _shared_corpus(tmp_path)
    es, speaker_of = manifests["es"], {lang: dict(zip(m.utt_id, m.speaker)) for lang, m in manifests.items()}
    for seed in range(20):  # a seed where re-selecting es without the corpus-wide rules would leak
        cfg["data"]["seed"] = seed
        plan = select_all(cfg, manifests)
        victim = plan["es"]["gender"]["test_speakers"][0]
        lost = es[es["speaker"] == victim]
        naive = select_language(cfg, es[~es["utt_id"].isin(lost["utt_id"])], "es")
        newcomer = set(naive["gender"]["test_speakers"]) - set(plan["es"]["gender"]["test_speakers"])
        en_train = {speaker_of["en"][u] for s in plan["en"].values() for u in s["single"] + s["extra"]}
        if newcomer & en_train:
            break
    else:
        pytest.fail("no seed makes the naive re-selection leak; the test would prove nothing")
    for path in lost["path"]:
        Path(path).unlink()  # every clip of that test speaker: it can no longer be tested
    rules = SpeakerRules.from_selection(plan["es"]["speaker"])
    assert newcomer <= rules.no_test and rules.no_training == set(plan["es"]["speaker"]["speaker_checks"]["excluded_speakers"])
    Path(es.loc[es["utt_id"] == plan["es"]["speaker"]["single"][0], "path"].iloc[0]).write_bytes(b"")  # a bad training clip
    prepared = prepare_selection(cfg, es, "es", plan["es"], log=lambda s: None)
    assert victim not in prepared.selections["gender"]["test_speakers"] and len(prepared.dropped) > 5
    assert not newcomer & set(prepared.selections["gender"]["test_speakers"])
    final = {"en": plan["en"], "es": prepared.selections}
    assert assert_selections_disjoint(final, speaker_of) == 2 * 2 * 3
    shared = set(plan["es"]["gender"]["speaker_checks"]["shared_speakers"]) - {victim}  # no clip of it is left
    assert set(prepared.selections["gender"]["speaker_checks"]["shared_speakers"]) == shared
