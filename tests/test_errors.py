"""Damaged state and configuration mistakes are named (file, key, labels), never half-taken (issue 8)."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest

from cltm.io import write_json


def strict_loads(text: str):
    """json.loads that refuses NaN / Infinity, as strict readers (JavaScript, jq, Go) do."""
    def refuse(name):
        raise ValueError(f"non-standard JSON constant {name}")
    return json.loads(text, parse_constant=refuse)


# ------------------------------------------------------------------ strict JSON


def test_write_json_turns_non_finite_floats_into_null(tmp_path):
    path = tmp_path / "x.json"
    write_json(path, {"a": math.nan, "b": [math.inf, np.float64("nan"), -math.inf], "c": np.array([1.0, np.nan]),
                      "d": {"e": np.float32(2.5), "f": np.int64(3), "g": np.bool_(True)}, "h": 1.5})
    data = strict_loads(path.read_text())
    assert data == {"a": None, "b": [None, None, None], "c": [1.0, None], "d": {"e": 2.5, "f": 3, "g": True},
                    "h": 1.5}


def test_summary_of_a_flagged_matrix_is_strict_json(tmp_path):
    from cltm.analysis.matrix import matrix_summary, transfer_matrices

    rows = []  # en: single == dual (zero denominator, an infinite cell); tr: fine
    for target, other in (("en", "tr"), ("tr", "en")):
        for cond, v in (("single", 0.7), ("dual", 0.7 if target == "en" else 0.8), (f"donor-{other}", 0.75)):
            for seed, off in enumerate((-0.01, 0.01)):
                rows.append({"task": "gender", "target": target, "condition": cond,
                             "donor": other if cond.startswith("donor") else "", "seed": seed,
                             "macro_f1": v + off * (target != "en")})
    result = transfer_matrices(pd.DataFrame(rows), "macro_f1", ["en", "tr"], flag_alpha=0.05)
    summary = matrix_summary(result)
    assert any(isinstance(v, float) and not math.isfinite(v) for v in summary.values())  # the case at hand
    write_json(tmp_path / "summary.json", summary)
    data = strict_loads((tmp_path / "summary.json").read_text())
    assert data["n_flagged_rows"] >= 1 and None in data.values()


# ------------------------------------------------------------------ damaged run JSONs

RUN = {"task": "gender", "target": "en", "condition": "single", "donor": None, "seed": 1, "metric": "macro_f1",
       "value": 0.8, "metrics": {"macro_f1": 0.8, "accuracy": 0.8}, "sizes": {"train_clips": 6},
       "loss": {"first": 0.7, "last": 0.5}, "timing": {"train_s": 1.0, "eval_s": 0.5}, "wall_s": 2.0,
       "device": "cpu", "config_digest": "abc"}


@pytest.mark.parametrize("content, words", [
    ("", "is empty"),
    (json.dumps(RUN)[:40], "not valid JSON"),
    (json.dumps({k: v for k, v in RUN.items() if k != "task"}), "missing task"),
    ("[1, 2]", "not a complete run record"),
])
def test_damaged_run_json_is_named_with_the_fix(tmp_path, content, words):
    from cltm.analysis.table import load_runs
    from cltm.records import DamagedRunError

    good = tmp_path / "seed1.json"
    good.write_text(json.dumps(RUN))
    bad = tmp_path / "seed2.json"
    bad.write_text(content)
    with pytest.raises(DamagedRunError) as err:
        load_runs([good, bad])
    message = str(err.value)
    assert str(bad) in message and words in message and f"rm {bad}" in message
    assert len(load_runs([good])) == 1


# ------------------------------------------------------------------ preflight summary


def test_preflight_summary_names_the_capacity_table(config):
    from cltm.data.preflight import summary_text

    capacity = pd.DataFrame([{"language": "en", "task": "gender", "ready": True, "spare_clips": 10, "problem": ""}])
    runs = pd.DataFrame([{"task": "gender", "languages": 4, "conditions_per_target": 5, "seeds": 3, "runs": 60,
                          "seconds_per_run": 10.0, "gpu_hours": 0.2}])
    text = summary_text(config, capacity, runs)
    assert "capacity.tsv" in text and "preflight.tsv" not in text


# ------------------------------------------------------------------ gender labels outside the vocabulary


def _manifest_with_labels(tmp_path, male: str, female: str):
    rows = [{"path": f"/nowhere/{g}{s}_{c}.wav", "speaker": f"{g}{s}", "gender": label, "language": "pl",
             "duration": 2.0}
            for g, label in (("m", male), ("f", female)) for s in range(12) for c in range(10)]
    pd.DataFrame(rows).to_csv(tmp_path / "manifest.csv", index=False)
    return tmp_path / "manifest.csv"


def test_unrecognised_gender_labels_are_named_with_the_mapping_key(tmp_path, config):
    from cltm.config import validate_config
    from cltm.data.corpora import load_corpus_language
    from cltm.data.plan import select_language
    from cltm.data.selection import SelectionError

    path = _manifest_with_labels(tmp_path, "Man", "Woman")
    config["corpus"] = {"type": "manifest", "manifest": {"path": str(path)}}
    manifest = load_corpus_language(config["corpus"], "pl")
    with pytest.raises(SelectionError) as err:
        select_language(config, manifest, "pl")
    message = str(err.value)
    assert "'Man' (120 clips)" in message and "'Woman' (120 clips)" in message and "not recognised" in message
    assert "corpus.manifest.gender_map" in message

    config["corpus"]["manifest"]["gender_map"] = {"man": "male", "woman": "female"}  # case-insensitive keys
    config["languages"] = ["pl", "de"]
    validate_config(config)  # the key is in the schema
    manifest = load_corpus_language(config["corpus"], "pl")
    assert manifest["gender"].value_counts().to_dict() == {"male": 120, "female": 120}
    select_language(config, manifest, "pl")


def test_deliberate_non_binary_labels_are_not_called_unrecognised(tmp_path, config):
    from cltm.data.corpora import load_corpus_language
    from cltm.data.plan import select_language
    from cltm.data.selection import SelectionError

    path = _manifest_with_labels(tmp_path, "other", "do_not_wish_to_say")
    config["corpus"] = {"type": "manifest", "manifest": {"path": str(path)}}
    with pytest.raises(SelectionError) as err:
        select_language(config, load_corpus_language(config["corpus"], "pl"), "pl")
    assert "not recognised" not in str(err.value)


# ------------------------------------------------------------------ encoder.source


def test_missing_relative_encoder_folder_is_not_taken_for_a_hub_id(tmp_path, monkeypatch):
    from cltm.config import encoder_source_kind

    monkeypatch.chdir(tmp_path)
    (tmp_path / "models").mkdir()
    assert encoder_source_kind("models/does-not-exist")[0] == "missing"  # `models` is a local folder
    assert encoder_source_kind("utter-project/mHuBERT-147") == ("hub", "utter-project/mHuBERT-147")
    assert encoder_source_kind("facebook/hubert-base-ls960")[0] == "hub"
    for path in ("./mine", "a/b/c", "org/name with space", "org/..", "~/x/y", "/abs/model"):
        assert encoder_source_kind(path)[0] == "missing", path


def test_encoder_errors_name_the_key_and_a_usable_command(tmp_path, monkeypatch, config):
    from cltm.config import ConfigError, check_paths

    monkeypatch.chdir(tmp_path)
    (tmp_path / "models" / "empty").mkdir(parents=True)
    config["encoder"]["source"] = "models/does-not-exist"
    with pytest.raises(ConfigError, match=r"encoder.source': the directory models/does-not-exist does not exist"):
        check_paths(config)
    config["encoder"]["source"] = "models/empty"
    with pytest.raises(ConfigError) as err:
        check_paths(config)
    assert f"--local-dir {tmp_path / 'models' / 'empty'}`" in str(err.value) and "{where}" not in str(err.value)
