"""Common Voice as it really is (real headers, both gender vocabularies, region locales, MP3 at 48 and
32 kHz, official splits) and bad clips, on a release of real MP3 files written by the tests."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from cv_release import CORRUPT, RECENT_HEADER, V12_HEADER, merged_config
from cltm.audio import check_clip, prepare_selection
from cltm.corpora import CorpusError, read_common_voice
from cltm.sampling import SelectionError, select_language


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
