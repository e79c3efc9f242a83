import copy

import pandas as pd
import pytest

from conftest import make_manifest
from cltm.data.plan import select_all, select_language
from cltm.data.report import data_summary
from cltm.data.selection import SelectionError, make_trials, select_classes, select_speaker, split_test_speakers
from cltm.tasks.labels import GENDERS, unrecognised_genders


def select_gender(manifest, test_speakers, *, n_per_class, max_clips_per_speaker, seed, exclude=frozenset()):
    """The gender task's selection (cltm.data.plan.select_classification does the same for a configured task)."""
    lang = manifest["language"].iloc[0]
    labels = manifest["gender"].where(manifest["gender"].isin(GENDERS), "")
    return select_classes(manifest, test_speakers, labels, GENDERS, task="gender", n_per_class=n_per_class,
                          max_clips_per_speaker=max_clips_per_speaker, seed=seed, exclude=exclude,
                          keys=(lang, "gender"), hint=lambda: unrecognised_genders(manifest))


def _cfg(config):
    config["tasks"]["gender"].update(n_per_class=6, max_clips_per_speaker=3)
    config["tasks"]["speaker"].update(n_utterances=12, max_utterances_per_speaker=4, max_positives_per_speaker=5)
    config["data"]["test"].update(speakers_per_gender=2, min_clips_per_speaker=4, max_clips_per_speaker=5)
    return config


def test_test_split_is_speaker_disjoint_and_balanced(config):
    m = make_manifest("en", speakers_per_gender=8, clips_per_speaker=8, unlabelled=2)
    sel = select_language(_cfg(config), m, "en")
    for task, s in sel.items():
        spk = dict(zip(m["utt_id"], m["speaker"]))
        test_spk = {spk[u] for u in s["test"]}
        train_spk = {spk[u] for u in s["single"] + s["extra"]}
        assert test_spk == set(s["test_speakers"]) and not test_spk & train_spk
        genders = m.set_index("speaker")["gender"].groupby(level=0).first()
        assert sorted(genders[list(test_spk)]) == ["female", "female", "male", "male"]
        assert all(sum(spk[u] == t for u in s["test"]) <= 5 for t in test_spk)
    assert sel["gender"]["test"] == sel["speaker"]["test"]  # one test set per language


def test_gender_subsets_are_nested_balanced_and_capped():
    m = make_manifest("de", speakers_per_gender=8, clips_per_speaker=8)
    test = split_test_speakers(m, speakers_per_gender=2, min_clips=2, seed=0)
    sel = select_gender(m, test, n_per_class=6, max_clips_per_speaker=3, seed=0)
    info = m.set_index("utt_id")
    for block in ("single", "extra"):
        g = info.loc[sel[block], "gender"].value_counts()
        assert g["male"] == 6 and g["female"] == 6
        assert info.loc[sel[block], "speaker"].value_counts().max() <= 3
    # extra comes from other voices than single: dual = single + new speakers
    assert not set(info.loc[sel["single"], "speaker"]) & set(info.loc[sel["extra"], "speaker"])
    assert not set(sel["single"]) & set(sel["extra"])


def test_speaker_subsets_have_enough_speakers():
    m = make_manifest("fr", speakers_per_gender=10, clips_per_speaker=10)
    test = split_test_speakers(m, speakers_per_gender=2, min_clips=2, seed=1)
    sel = select_speaker(m, test, n_utterances=20, max_utterances_per_speaker=4, min_speaker_fraction=0.0125, seed=1)
    info = m.set_index("utt_id")
    assert len(sel["single"]) == len(sel["extra"]) == 20
    assert info.loc[sel["single"], "speaker"].nunique() == 5
    assert not set(info.loc[sel["single"], "speaker"]) & set(info.loc[sel["extra"], "speaker"])


def test_selection_is_deterministic_and_seeded(config):
    m = make_manifest("en", speakers_per_gender=8, clips_per_speaker=8)
    cfg = _cfg(config)
    a, b = select_language(cfg, m, "en"), select_language(cfg, m.sample(frac=1, random_state=3), "en")
    assert a == b  # row order of the corpus does not matter
    cfg["data"]["seed"] = 5
    assert select_language(cfg, m, "en")["gender"]["single"] != a["gender"]["single"]


def test_trials_follow_the_protocol():
    m = make_manifest("es", speakers_per_gender=3, clips_per_speaker=6)
    trials = make_trials(m, max_positives_per_speaker=5, seed=0)
    info = m.set_index("utt_id")
    pos, neg = trials[trials["label"] == 1], trials[trials["label"] == 0]
    assert len(pos) == len(neg) == 6 * 5
    assert (info.loc[pos["enroll"], "speaker"].values == info.loc[pos["test"], "speaker"].values).all()
    assert (info.loc[neg["enroll"], "speaker"].values != info.loc[neg["test"], "speaker"].values).all()
    assert (info.loc[neg["enroll"], "gender"].values == info.loc[neg["test"], "gender"].values).all()
    assert not trials.duplicated(["enroll", "test"]).any()
    assert trials.equals(make_trials(m, max_positives_per_speaker=5, seed=0))


def test_short_language_fails_with_counts_and_every_language_is_reported(config):
    cfg = _cfg(config)
    ok = make_manifest("en", speakers_per_gender=8, clips_per_speaker=8)
    few_clips = make_manifest("tr", speakers_per_gender=4, clips_per_speaker=2)
    few_speakers = make_manifest("fi", speakers_per_gender=1, clips_per_speaker=20)
    with pytest.raises(SelectionError) as err:
        select_all(cfg, {"en": ok, "tr": few_clips, "fi": few_speakers})
    msg = str(err.value)
    assert "no training was started" in msg
    assert "language 'fi'" in msg and "needs 2 male speakers" in msg and "only 1 exist" in msg
    assert "language 'tr'" in msg and "min_clips_per_speaker" in msg
    assert "language 'en'" not in msg


def test_gender_shortage_names_need_and_counts(config):
    m = make_manifest("eu", speakers_per_gender=4, clips_per_speaker=8)
    test = split_test_speakers(m, speakers_per_gender=1, min_clips=2, seed=0)
    with pytest.raises(SelectionError) as err:
        select_gender(m, test, n_per_class=10, max_clips_per_speaker=3, seed=0)
    msg = str(err.value)
    assert "language 'eu', task gender" in msg and "2 x 10 male" in msg and "only 9 are usable from 3 male speakers" in msg


def test_data_summary_counts(config):
    m = make_manifest("en", speakers_per_gender=8, clips_per_speaker=8, unlabelled=3)
    sel = select_all(_cfg(config), {"en": m})
    s = data_summary({"en": m}, sel).iloc[0]
    assert s["speakers"] == 19 and s["clips_unlabelled"] == 24 and s["speakers_male"] == 8
    assert s["gender_single_clips"] == 12 and s["speaker_trials"] == 2 * 4 * 5
    assert isinstance(data_summary({"en": m}, sel), pd.DataFrame)


def test_per_language_selection_config_gives_the_same_selection(config):
    from cltm.config import selection_config

    cfg = _cfg(config)
    cfg["tasks"]["speaker"]["languages"] = ["en", "es"]
    for lang, tasks in (("en", {"gender", "speaker"}), ("tr", {"gender"})):
        m = make_manifest(lang, speakers_per_gender=8, clips_per_speaker=8)
        sub = selection_config(cfg, lang)
        assert set(sub["tasks"]) == tasks and "training" not in sub["tasks"]["gender"]
        assert select_language(sub, m, lang) == select_language(cfg, m, lang)
    other = copy.deepcopy(cfg)
    other["languages"].append("fi")  # adding a language leaves the others' preparation settings alone
    other["tasks"]["gender"]["training"]["lr"] = 1.0
    assert selection_config(other, "tr") == selection_config(cfg, "tr")


# sha256[:16] of results/selection/<lang>.json as written by the code before speaker identity (commit abded43)
OLD_DIGESTS = {"en": "847fad3f2686afa7", "es": "9b9522893724dfc4", "tr": "bb3b3ee29463bb63"}


# --- speaker identity across the corpus --------------------------------------------------------------

def _shared_ids(config, seeds=range(6)):
    """en and es where every es speaker reuses an en speaker id (one contributor, two languages)."""
    cfg = _cfg(config)
    cfg["languages"] = ["en", "es"]
    en, es = make_manifest("en", 8, 8), make_manifest("es", 8, 8)
    es["speaker"] = es["speaker"].str.replace("es-", "en-", regex=False)
    return cfg, {"en": en, "es": es}


def _speaker_of(manifests):
    return {lang: dict(zip(m["utt_id"], m["speaker"])) for lang, m in manifests.items()}


def test_test_speakers_of_every_language_never_train_in_any_language(config):
    from leakage import assert_selections_disjoint

    cfg, manifests = _shared_ids(config)
    for seed in range(6):  # on the old code several seeds put en's test voices into donor-es training
        cfg["data"]["seed"] = seed
        sel = select_all(cfg, manifests)
        assert assert_selections_disjoint(sel, _speaker_of(manifests)) == 2 * 2 * 3
        for lang, other in (("en", "es"), ("es", "en")):
            checks = sel[lang]["gender"]["speaker_checks"]
            assert checks == sel[lang]["speaker"]["speaker_checks"]
            excluded = set(sel[other]["gender"]["test_speakers"]) - set(sel[lang]["gender"]["test_speakers"])
            assert set(checks["excluded_speakers"]) == excluded and len(checks["shared_speakers"]) == 16
            assert checks["excluded_clips"] == 8 * len(excluded)  # every clip of those speakers in lang
        row = data_summary(manifests, sel).set_index("language").loc["es"]
        assert row["shared_speakers"] == 16 and row["excluded_clips"] == sel["es"]["gender"]["speaker_checks"]["excluded_clips"]


def test_per_language_speaker_ids_keep_languages_apart(config):
    cfg, manifests = _shared_ids(config)
    cfg["data"]["speaker_ids"] = "per_language"
    sel = select_all(cfg, manifests)
    for lang, m in manifests.items():  # as if each language were alone: a shared id is not one person
        assert sel[lang] == select_language(cfg, m, lang)
        assert "speaker_checks" not in sel[lang]["gender"]
    cfg["data"]["speaker_ids"] = "nobody"
    with pytest.raises(SelectionError, match="data.speaker_ids"):
        select_all(cfg, manifests)


def test_without_shared_or_mixed_speakers_selections_are_byte_identical(config, tmp_path):
    """Selections of a corpus without shared ids are byte for byte those of the code before speaker
    identity existed (digest recorded from that code), so existing runs stay valid."""
    import hashlib

    from cltm.io import write_json

    cfg = _cfg(config)
    cfg["languages"] = ["en", "es", "tr"]
    manifests = {lang: make_manifest(lang, 8, 8, unlabelled=2) for lang in cfg["languages"]}
    digests = {}
    for lang, sel in select_all(cfg, manifests).items():
        write_json(tmp_path / f"{lang}.json", sel)
        digests[lang] = hashlib.sha256((tmp_path / f"{lang}.json").read_bytes()).hexdigest()[:16]
    assert digests == OLD_DIGESTS


def test_a_speaker_with_both_gender_labels_stays_out_of_gender_sets(config):
    cfg = _cfg(config)
    m = make_manifest("en", 8, 8)
    # two voices labelled both ways: one within the language, one many-clipped so selection would want it
    m.loc[m["speaker"] == "en-male-0", "gender"] = ["male", "female"] * 4
    m.loc[m["utt_id"].str.startswith("en_female1_00") & m["utt_id"].str[-1].isin(list("0123")), "gender"] = "male"
    mixed = {"en-male-0", "en-female-1"}
    info = m.set_index("utt_id")
    for seed in range(6):
        cfg["data"]["seed"] = seed
        sel = select_all(cfg, {"en": m})["en"]
        g = sel["gender"]
        assert not mixed & set(g["test_speakers"])  # the test set's labels must be trustworthy
        assert not mixed & set(info.loc[g["single"] + g["extra"], "speaker"])
        assert len(g["test_speakers"]) == len(set(g["test_speakers"])) == 4
        assert sorted(g["speaker_checks"]["mixed_gender_speakers"]) == sorted(mixed)
        assert data_summary({"en": m}, {"en": sel}).iloc[0]["mixed_gender_speakers"] == 2
    # across languages, with corpus-wide ids: male in en, female in es is a conflict too
    cfg["languages"] = ["en", "es"]
    en, es = make_manifest("en", 8, 8), make_manifest("es", 8, 8)
    es.loc[es["speaker"] == "es-female-0", "speaker"] = "en-male-0"
    sel = select_all(cfg, {"en": en, "es": es})
    for lang in ("en", "es"):
        assert sel[lang]["gender"]["speaker_checks"]["mixed_gender_speakers"] == ["en-male-0"]
        assert "en-male-0" not in sel[lang]["gender"]["test_speakers"]


def test_data_report_lists_affected_speakers_and_refuses_a_cross_language_leak(config):
    import pandas as pd_

    from cltm.data.report import check_no_leaks, language_record, report_tables, speaker_check_table

    cfg, manifests = _shared_ids(config)
    manifests["en"].loc[manifests["en"]["speaker"] == "en-male-1", "gender"] = ["male", "female"] * 4
    sel = select_all(cfg, manifests)
    empty = pd_.DataFrame(columns=["utt_id", "path", "speaker", "gender", "reason", "detail"])
    records = [language_record(lang, manifests[lang], sel[lang], empty, 0, 0, 16000) for lang in ("en", "es")]
    check_no_leaks(records)
    table = speaker_check_table(records)
    mixed = table[table["issue"] == "mixed_gender"].set_index("language")
    assert set(mixed["speaker"]) == {"en-male-1"} and mixed.loc["en", "clips_female"] == 4
    assert mixed.loc["es", "detail"].startswith("the other label in another language")
    elsewhere = table[table["issue"] == "test_speaker_elsewhere"]
    assert (elsewhere["action"] == "kept out of every training subset").all() and len(elsewhere)
    report = report_tables(records)[0].set_index("language")
    assert report.loc["es", "excluded_clips"] == sel["es"]["gender"]["speaker_checks"]["excluded_clips"]
    # a final selection that trains es on en's test voice (what a careless re-selection could make) stops here
    voice = sel["en"]["gender"]["test_speakers"][0]
    records[1]["training_speakers"] = [voice]
    with pytest.raises(SelectionError, match="test speaker.*of 'en' are in the training subsets of 'es'"):
        check_no_leaks(records)
