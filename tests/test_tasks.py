"""Tasks as objects: the two kinds, config-only classification tasks (age group, emotion), k-class metrics."""

from __future__ import annotations

import copy

import numpy as np
import pandas as pd
import pytest
import torch
import yaml

from conftest import ROOT, TINY_ENCODER, make_manifest, tone, write_wav
from cltm.config import ConfigError, drop_disabled_tasks, merge, validate_config
from cltm.data.corpora import CorpusError, read_manifest
from cltm.tasks.metrics import classification_metrics
from cltm.data.plan import select_all
from cltm.data.speakers import language_rules, speaker_labels
from cltm.tasks import AGE_GROUPS, ClassificationTask, SpeakerVerificationTask, label_columns, make_task
from cltm.train.finetune import finetune_run

FAST = {"epochs": 1, "batch_size": 2, "crop_seconds": 0.5, "lr": 1e-3, "schedule": "constant",
        "warmup_ratio": 0.0, "weight_decay": 0.0, "grad_clip": 1.0}


def age_config(default_config) -> dict:
    """config/config.yaml merged with the shipped config/demo_age.yaml, as Snakemake merges them."""
    cfg = copy.deepcopy(default_config)
    merge(cfg, yaml.safe_load((ROOT / "config" / "demo_age.yaml").read_text()))
    validate_config(cfg)
    return drop_disabled_tasks(cfg)


AGES_BY_SPEAKER = ["twenties", "forties", "seventies", "teens", "fifties", "eighties"]  # a third per age group


def age_manifest(lang: str, speakers_per_gender: int = 12, clips: int = 8) -> pd.DataFrame:
    m = make_manifest(lang, speakers_per_gender, clips)
    index = m["speaker"].str.rsplit("-", n=1).str[-1].astype(int)
    m["age"] = [AGES_BY_SPEAKER[i % len(AGES_BY_SPEAKER)] for i in index]
    return m


def test_kinds_default_from_the_name_and_the_gender_task_is_as_before(config):
    gender, speaker = make_task("gender", config["tasks"]["gender"]), make_task("speaker", config["tasks"]["speaker"])
    assert isinstance(gender, ClassificationTask) and isinstance(speaker, SpeakerVerificationTask)
    assert gender.classes == ("male", "female") and gender.label_column == "gender" and gender.columns == ()
    assert (gender.pooling, gender.metric, speaker.pooling, speaker.metric) == ("last", "macro_f1", "last4", "roc_auc")
    assert gender.display_name == "Gender identification" and label_columns(config) == {}
    assert gender.runtime_minutes == 30 and speaker.runtime_minutes == 120


def test_the_shipped_age_config_validates_and_bins_common_voice_ages(default_config):
    cfg = age_config(default_config)
    assert list(cfg["tasks"]) == ["age"]
    age = make_task("age", cfg["tasks"]["age"])
    assert age.classes == ("under_30", "30_to_59", "60_plus") and age.columns == ("age",)
    assert label_columns(cfg) == {"age": ["age"]}
    raw = pd.Series(["teens", "Twenties", "thirties", "fifties", "sixties", "nineties", "", "other"])
    assert age.class_of(raw).tolist() == ["under_30", "under_30", "30_to_59", "30_to_59", "60_plus", "60_plus", "", ""]
    # the map in the shipped config is the documented default
    assert {k: v for k, v in cfg["tasks"]["age"]["label_map"].items()} == AGE_GROUPS


@pytest.mark.parametrize("change, message", [
    ({"kind": None}, "tasks.age.kind' is required"),
    ({"kind": "regression"}, "tasks.age.kind"),
    ({"label_map": {"teens": "young"}}, "maps to young"),
    ({"label_column": "speaker"}, "tasks.age.label_column"),
    ({"classes": ["only"], "label_map": None}, "tasks.age.classes"),
    ({"n_utterances": 5}, "tasks.age"),
    ({"metric": "roc_auc"}, "tasks.age.metric': roc_auc ranks two classes"),  # age has three
])
def test_task_config_problems_name_the_key(default_config, change, message):
    cfg = copy.deepcopy(default_config)
    age = copy.deepcopy(yaml.safe_load((ROOT / "config" / "demo_age.yaml").read_text())["tasks"]["age"])
    age.update(change)
    age = {k: v for k, v in age.items() if v is not None or k == "label_map"}
    cfg["tasks"]["age"] = age
    with pytest.raises(ConfigError, match=message):
        validate_config(cfg)


def test_age_selection_balances_k_classes_and_leaves_mixed_age_speakers_out(default_config):
    cfg = age_config(default_config)
    cfg["tasks"]["age"].update(n_per_class=6, max_clips_per_speaker=3)
    cfg["languages"] = ["en", "es"]
    manifests = {lang: age_manifest(lang, 16) for lang in cfg["languages"]}
    # one speaker says twenties in some clips and sixties in others: two classes, so out of the age task
    en = manifests["en"]
    mixed = "en-male-1"
    en.loc[en["speaker"] == mixed, "age"] = ["twenties", "sixties"] * 4
    labels = {lang: speaker_labels(m) for lang, m in manifests.items()}
    assert labels["en"].set_index("speaker").loc[mixed, "labels_age"] == "sixties|twenties"
    assert language_rules(cfg, "en", labels).no_label["age"] == frozenset({mixed})
    sel = select_all(cfg, manifests)
    age = make_task("age", cfg["tasks"]["age"])
    for lang, m in manifests.items():
        s = sel[lang]["age"]
        rows = m.set_index("utt_id")
        classes = age.class_of(rows.loc[s["single"], "age"])
        assert classes.value_counts().to_dict() == {c: 6 for c in age.classes}
        assert age.class_of(rows.loc[s["extra"], "age"]).value_counts().to_dict() == {c: 6 for c in age.classes}
        single_spk, extra_spk = set(rows.loc[s["single"], "speaker"]), set(rows.loc[s["extra"], "speaker"])
        test_spk = set(rows.loc[s["test"], "speaker"])
        assert not single_spk & extra_spk and not (single_spk | extra_spk) & test_spk
        assert set(age.class_of(rows.loc[s["test"], "age"])) == set(age.classes)
    s = sel["en"]["age"]
    assert s["mixed_label_speakers"] == [mixed]
    used = set(manifests["en"].set_index("utt_id").loc[s["single"] + s["extra"] + s["test"], "speaker"])
    assert mixed not in used


def test_age_and_gender_side_by_side_share_the_test_speakers_and_gender_is_unchanged(default_config):
    cfg = age_config(default_config)
    cfg["tasks"]["age"].update(n_per_class=6, max_clips_per_speaker=3)
    cfg["languages"] = ["en", "es"]
    both = copy.deepcopy(cfg)
    both["tasks"] = {"gender": copy.deepcopy(default_config["tasks"]["gender"]), **cfg["tasks"]}
    manifests = {lang: age_manifest(lang, 16) for lang in cfg["languages"]}
    gender_only = copy.deepcopy(both)
    gender_only["tasks"] = {"gender": both["tasks"]["gender"]}
    a, b = select_all(both, manifests), select_all(gender_only, {k: v.drop(columns="age") for k, v in manifests.items()})
    for lang in cfg["languages"]:
        assert a[lang]["gender"] == b[lang]["gender"]  # adding a task leaves gender's selection as it was
        assert a[lang]["age"]["test_speakers"] == a[lang]["gender"]["test_speakers"]


def test_a_missing_label_column_names_the_task_the_column_and_the_file(tmp_path):
    path = tmp_path / "manifest.csv"
    make_manifest("en", 2, 2).drop(columns=["utt_id", "duration", "split"]).to_csv(path, index=False)
    with pytest.raises(CorpusError, match=r"task 'emotion' needs the label column 'emotion'.*manifest.csv"):
        read_manifest(path, "en", columns={"emotion": ["emotion"]})


EMOTIONS = ("neutral", "happy", "angry")


def test_an_emotion_task_from_a_manifest_column_is_a_config_change_only(default_config, tmp_path):
    """A user's manifest with a per-utterance `emotion` column: the config below (as in the README) is all
    it takes; selection keeps single and extra apart by speaker, and a run trains a 3-way head."""
    sr, rows = 16000, []
    for lang in ("en", "es"):
        for gender, f0 in (("male", 120.0), ("female", 220.0)):
            for s in range(6):
                for c in range(9):
                    emotion = EMOTIONS[c % 3]
                    wave = tone(f0 * (1 + 0.3 * EMOTIONS.index(emotion)) + 3 * s, 1.2, sr)
                    path = write_wav(tmp_path / "clips" / f"{lang}_{gender}{s}_{c}.wav", wave, sr)
                    rows.append({"path": str(path), "speaker": f"{lang}-{gender}{s}", "gender": gender,
                                 "language": lang, "emotion": emotion.upper() if c == 0 else emotion})
    pd.DataFrame(rows).to_csv(tmp_path / "manifest.csv", index=False)
    user = yaml.safe_load(f"""
languages: [en, es]
corpus: {{type: manifest, manifest: {{path: {tmp_path / 'manifest.csv'}}}}}
data: {{test: {{speakers_per_gender: 2, min_clips_per_speaker: 4, max_clips_per_speaker: 6}}}}
tasks:
  gender: null
  speaker: null
  emotion:
    kind: classification
    label_column: emotion
    per_speaker: false
    classes: [neutral, happy, angry]
    n_per_class: 4
    max_clips_per_speaker: 2
    training: {{epochs: 1, batch_size: 2, crop_seconds: 0.5, lr: 1.0e-3, schedule: constant,
                warmup_ratio: 0.0, weight_decay: 0.0, grad_clip: 1.0}}
""")
    cfg = copy.deepcopy(default_config)
    merge(cfg, user)
    validate_config(cfg)
    drop_disabled_tasks(cfg)
    columns = label_columns(cfg)
    assert columns == {"emotion": ["emotion"]}
    manifests = {lang: read_manifest(tmp_path / "manifest.csv", lang, columns=columns) for lang in cfg["languages"]}
    sel = select_all(cfg, manifests)
    task = make_task("emotion", cfg["tasks"]["emotion"])
    from cltm.data.audio import AudioStore
    from cltm.data.prepare import prepare_language
    from cltm.model.encoder import build_encoder

    stores = {}
    for lang, m in manifests.items():
        s = sel[lang]["emotion"]
        rows_ = m.set_index("utt_id")
        assert not set(rows_.loc[s["single"], "speaker"]) & set(rows_.loc[s["extra"], "speaker"])
        assert task.class_of(rows_.loc[s["single"], "emotion"]).value_counts().to_dict() == {e: 4 for e in EMOTIONS}
        assert "mixed_label_speakers" not in s  # per-utterance labels: a speaker has several
        prepare_language(m, s["test"] + s["single"] + s["extra"], tmp_path / f"{lang}.npy", tmp_path / f"{lang}.tsv",
                         log=lambda _: None)
        stores[lang] = AudioStore(tmp_path / f"{lang}.npy", tmp_path / f"{lang}.tsv")
        assert "emotion" in stores[lang].index.columns  # the audio index carries the label column
    encoder = build_encoder("random", config=TINY_ENCODER, overrides={"layerdrop": 0.0}, init_seed=0)
    record, scores = finetune_run("emotion", cfg["tasks"]["emotion"], target="en", condition="donor-es", seed=1,
                             encoder=encoder, stores=stores, selections={k: v["emotion"] for k, v in sel.items()},
                             device=torch.device("cpu"), log=lambda _: None)
    assert record["metric"] == "macro_f1" and 0 <= record["value"] <= 1 and record["sizes"]["classes"] == 3
    assert record["sizes"]["train_clips"] == 2 * 3 * 4
    assert list(scores.columns) == ["utt_id", "label", "predicted", "p_neutral", "p_happy", "p_angry"]
    assert set(scores["label"]) == set(EMOTIONS)


def test_macro_f1_over_k_classes_counts_every_class():
    y_true, y_pred = np.array([0, 0, 1, 1, 2, 2]), np.array([0, 1, 1, 1, 0, 2])
    f1 = [2 * 1 / (2 * 1 + 1 + 1), 2 * 2 / (2 * 2 + 1 + 0), 2 * 1 / (2 * 1 + 0 + 1)]
    got = classification_metrics(y_true, y_pred, n_classes=3)
    assert got["macro_f1"] == pytest.approx(np.mean(f1)) and got["accuracy"] == pytest.approx(4 / 6)
    # a class never seen nor predicted counts as F1 0
    assert classification_metrics([0, 1], [0, 1], n_classes=4)["macro_f1"] == pytest.approx(0.5)
    assert classification_metrics([0, 1, 1], [0, 1, 0]) == classification_metrics([0, 1, 1], [0, 1, 0], n_classes=2)
    with pytest.raises(ValueError, match="0..2"):
        classification_metrics([0, 3], [0, 1], n_classes=3)
