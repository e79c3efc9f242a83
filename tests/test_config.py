import copy

import pytest

from cltm.config import ConfigError, conditions, digest, run_settings, task_languages, validate_config
from cltm.paths import donor_of
from cltm.data.selection import min_speakers


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


def _paper(default_config):
    import yaml
    from snakemake.utils import update_config

    from conftest import ROOT

    cfg = copy.deepcopy(default_config)
    update_config(cfg, yaml.safe_load((ROOT / "config" / "paper.yaml").read_text()))  # as --configfile does
    return cfg


def test_paper_preset_validates_once_the_release_is_given(default_config, tmp_path):
    cfg = _paper(default_config)
    with pytest.raises(ConfigError, match="corpus.common_voice.root' must name the release folder"):
        validate_config(cfg)
    cfg["corpus"]["common_voice"]["root"] = str(tmp_path)
    validate_config(cfg)
    assert cfg["languages"] == ["ar", "en", "de", "ckb", "kmr", "fr", "ca", "es", "be", "ru", "uk", "eu",
                                "zh-CN", "zh-TW", "ky", "tr"]
    assert cfg["tasks"]["gender"]["n_per_class"] == 60 and cfg["tasks"]["speaker"]["n_utterances"] == 1000
    assert cfg["seeds"] == list(range(1, 11)) and cfg["encoder"]["source"] == "utter-project/mHuBERT-147"
    assert cfg["encoder"]["overrides"] is None  # the demo's dropout overrides do not leak into the paper run
    g, s = cfg["tasks"]["gender"]["training"], cfg["tasks"]["speaker"]["training"]
    assert (g["lr"], g["schedule"], g["batch_size"], g["epochs"], g["crop_seconds"]) == (1e-5, "constant", 1, 1, None)
    assert (s["lr"], s["schedule"], s["warmup_ratio"], s["weight_decay"]) == (3e-5, "linear", 0.01, 0.05)


def test_paths_are_checked_with_the_key_named(default_config, tmp_path):
    from cltm.config import check_paths

    cfg = _paper(default_config)
    cfg["corpus"]["common_voice"]["root"] = str(tmp_path / "nowhere")
    with pytest.raises(ConfigError, match="corpus.common_voice.root.*is not a folder"):
        check_paths(cfg)
    for lang in cfg["languages"][:-1]:
        (tmp_path / lang).mkdir()
    cfg["corpus"]["common_voice"]["root"] = str(tmp_path)
    with pytest.raises(ConfigError, match="no folder for tr in"):
        check_paths(cfg)
    (tmp_path / "tr").mkdir()
    check_paths(cfg)
    cfg["encoder"]["source"] = str(tmp_path / "models" / "mHuBERT-147")
    with pytest.raises(ConfigError, match="encoder.source.*does not exist"):
        check_paths(cfg)


def test_speaker_ids_key(config):
    from cltm.config import ConfigError, validate_config

    assert config["data"]["speaker_ids"] == "corpus"  # written out in the shipped config, as the default
    for value in ("corpus", "per_language"):
        validate_config({**config, "data": {**config["data"], "speaker_ids": value}})
    with pytest.raises(ConfigError, match="data.speaker_ids"):
        validate_config({**config, "data": {**config["data"], "speaker_ids": "per_locale"}})


def test_numbers_written_as_strings_are_read_as_numbers(config):
    """Snakemake hands the items of `--config 'seeds=[1, 2]'` over as strings; where the schema asks for a
    number they are read as one, anything else is still named."""
    config["seeds"] = ["1", "2"]
    config["tasks"]["gender"]["n_per_class"] = "8"
    config["matrix"]["flag_alpha"] = "0.1"
    validate_config(config)
    assert config["seeds"] == [1, 2] and config["tasks"]["gender"]["n_per_class"] == 8
    assert config["matrix"]["flag_alpha"] == 0.1
    config["seeds"] = ["one"]
    with pytest.raises(ConfigError, match="config key 'seeds.0': 'one' is not of type 'integer'"):
        validate_config(config)


def test_seeds_on_the_command_line_plan_the_grid(tmp_path):
    """`snakemake --config 'seeds=[1]'`, a common Snakemake habit, plans the demo with one seed (its tasks
    without seeds of their own: the planted task keeps its `tasks.planted.seeds`)."""
    import subprocess
    import sys

    from conftest import copy_checkout

    copy_checkout(tmp_path)
    out = subprocess.run([sys.executable, "-m", "snakemake", "-n", "-p", "--cores", "1", "--config", "seeds=[1]"],
                         cwd=tmp_path, capture_output=True, text=True, timeout=300)
    printed = out.stdout + out.stderr
    assert out.returncode == 0, printed[-4000:]
    shared = [line for line in printed.splitlines() if "finetune-cell" in line and "--task planted" not in line]
    planted = [line for line in printed.splitlines() if "finetune-cell" in line and "--task planted" in line]
    assert shared and all("--seeds 1 --cell" in line for line in shared)
    own = " ".join(str(seed) for seed in range(1, 31))
    assert planted and all(f"--seeds {own} --cell" in line for line in planted)


def test_a_deprecated_flag_z_is_read_as_its_level_with_a_message(config):
    from cltm.config import matrix_settings

    assert matrix_settings(config) == ({"flag_alpha": 0.05, "ci_level": 0.95, "allow_mixed_versions": False}, [])
    config["matrix"] = {"flag_z": 2.0}
    validate_config(config)
    settings, messages = matrix_settings(config)
    assert settings["flag_alpha"] == pytest.approx(0.0455, abs=1e-4)
    assert "'matrix.flag_z' is deprecated" in messages[0] and "matrix.flag_alpha" in messages[0]
