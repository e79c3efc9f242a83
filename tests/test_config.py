import copy

import pytest

from cltm.config import (
    ConfigError,
    conditions,
    digest,
    donor_of,
    min_speakers,
    run_settings,
    task_languages,
    validate_config,
)


def test_default_config_is_valid(config):
    validate_config(config)


def test_unknown_key_is_named_with_allowed_keys(config):
    config["tasks"]["gender"]["training"]["lr_rate"] = 1e-3
    with pytest.raises(ConfigError) as err:
        validate_config(config)
    msg = str(err.value)
    assert "tasks.gender.training" in msg and "lr_rate" in msg and "allowed keys here" in msg and "epochs" in msg


def test_wrong_value_is_named(config):
    config["tasks"]["speaker"]["n_utterances"] = "many"
    config["seeds"] = []
    with pytest.raises(ConfigError) as err:
        validate_config(config)
    msg = str(err.value)
    assert "tasks.speaker.n_utterances" in msg and "'many'" in msg
    assert "config key 'seeds'" in msg


def test_semantic_checks(config):
    config["languages"] = ["en", "xx"]
    with pytest.raises(ConfigError, match="demo corpus has no language 'xx'"):
        validate_config(config)
    cfg = copy.deepcopy(config)
    cfg["languages"] = ["en", "es"]
    cfg["corpus"]["type"] = "common_voice"
    with pytest.raises(ConfigError, match="corpus.common_voice.root"):
        validate_config(cfg)
    cfg = copy.deepcopy(config)
    cfg["tasks"]["gender"]["languages"] = ["en", "de"]
    with pytest.raises(ConfigError, match="tasks.gender.languages.*'de' is not in 'languages'"):
        validate_config(cfg)


def test_conditions_and_grid(config):
    assert conditions(config, "gender", "en") == ["single", "dual", "donor-es", "donor-tr", "donor-fi"]
    assert donor_of("donor-zh-CN") == "zh-CN" and donor_of("dual") is None
    config["tasks"]["speaker"]["languages"] = ["en", "tr"]
    assert task_languages(config, "speaker") == ["en", "tr"]
    assert conditions(config, "speaker", "tr") == ["single", "dual", "donor-en"]


def test_min_speakers_follows_the_paper():
    assert min_speakers(1000, 0.0125) == 13
    assert min_speakers(80, 0.0125) == 2  # never fewer than two classes
    assert min_speakers(160, 0.0125) == 2


def test_digest_tracks_what_changes_results(config):
    base = digest(run_settings(config, "gender"))
    assert base == digest(run_settings(copy.deepcopy(config), "gender"))
    other = copy.deepcopy(config)
    other["tasks"]["speaker"]["training"]["lr"] = 1.0
    assert digest(run_settings(other, "gender")) == base  # another task's settings do not matter
    other["tasks"]["gender"]["training"]["lr"] = 1.0
    assert digest(run_settings(other, "gender")) != base
    added = copy.deepcopy(config)
    added["seeds"] = [1, 2, 3, 4]
    assert digest(run_settings(added, "gender")) == base  # a new seed does not invalidate old runs
