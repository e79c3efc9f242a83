"""data.resample: per_seed — each run seed draws its own training subsets (same test set and trials), the
leakage rules hold for every draw, and adding a seed keeps the other seeds' runs."""

from __future__ import annotations

import copy
import json

import pytest

from conftest import make_manifest
from cltm.config import draw_seeds, expand_twins, selection_config, task_resample, validate_config
from cltm.data.draws import seed_draw, training_clips
from cltm.data.plan import select_language, selected_clips
from cltm.data.selection import training_items
from cltm.grid.kept import file_digest, subsets_digest


def _cfg(config, resample="per_seed", seeds=(1, 2, 3)):
    config["tasks"]["gender"].update(n_per_class=6, max_clips_per_speaker=3)
    config["tasks"]["speaker"].update(n_utterances=12, max_utterances_per_speaker=4, max_positives_per_speaker=5)
    config["data"]["test"].update(speakers_per_gender=2, min_clips_per_speaker=4, max_clips_per_speaker=5)
    config["data"]["resample"] = resample
    config["seeds"] = list(seeds)
    return config


def test_each_seed_draws_its_own_subsets_under_the_same_test_set(config):
    m = make_manifest("en", speakers_per_gender=10, clips_per_speaker=8)
    speaker = dict(zip(m["utt_id"], m["speaker"]))
    sel = select_language(_cfg(config), m, "en")
    plain = select_language(_cfg(copy.deepcopy(config), resample="none"), m, "en")
    for task, s in sel.items():
        assert set(s["draws"]) == {"1", "2", "3"}
        assert {k: v for k, v in s.items() if k != "draws"} == plain[task]  # the data seed's own, unchanged
        singles = [tuple(s["draws"][k]["single"]) for k in ("1", "2", "3")]
        assert len(set(singles)) == 3  # the draws differ
        for k in ("1", "2", "3"):
            run = seed_draw(s, int(k))
            assert run["test"] == s["test"] and run.get("trials") == s.get("trials")
            assert len(run["single"]) == len(s["single"]) and len(run["extra"]) == len(s["extra"])
            tested = set(s["test_speakers"])
            trained = {speaker[u] for u in run["single"] + run["extra"]}
            assert not tested & trained  # no test voice in any draw
            assert not {speaker[u] for u in run["single"]} & {speaker[u] for u in run["extra"]}
            items = training_items("en", "dual", {"en": run})
            assert len(items) == len(run["single"]) + len(run["extra"])
        assert training_clips(s) >= {u for k in ("1", "2", "3") for u in s["draws"][k]["single"]}
    assert selected_clips(sel) > selected_clips(plain)  # audio preparation decodes every draw's clips


def test_a_seed_without_a_draw_is_named(config):
    m = make_manifest("en", speakers_per_gender=10, clips_per_speaker=8)
    sel = select_language(_cfg(config), m, "en")["gender"]
    with pytest.raises(ValueError, match="no training draw for seed 9"):
        seed_draw(sel, 9)


def test_adding_a_seed_keeps_the_other_seeds_keys(config, tmp_path):
    """The subsets file of a per-seed selection changes when a seed is added; a run's key reads only its own
    draw (and the shared test set), so seeds 1-3 stay kept. A file without draws keys on its bytes."""
    m = make_manifest("en", speakers_per_gender=10, clips_per_speaker=8)
    before = select_language(_cfg(copy.deepcopy(config)), m, "en")["gender"]
    after = select_language(_cfg(copy.deepcopy(config), seeds=(1, 2, 3, 4)), m, "en")["gender"]
    a, b = tmp_path / "a.json", tmp_path / "b.json"
    a.write_text(json.dumps(before))
    b.write_text(json.dumps(after))
    assert file_digest(a) != file_digest(b)
    assert [subsets_digest(a, s) for s in (1, 2, 3)] == [subsets_digest(b, s) for s in (1, 2, 3)]
    assert subsets_digest(a, 1) != subsets_digest(a, 2)
    plain = tmp_path / "plain.json"
    plain.write_text(json.dumps(select_language(_cfg(copy.deepcopy(config), resample="none"), m, "en")["gender"]))
    assert subsets_digest(plain, 1) == subsets_digest(plain, 2) == file_digest(plain)


def test_the_setting_is_validated_and_brings_the_seeds_into_selection(config):
    config["data"]["resample"] = "per_seed"
    validate_config(config)
    tasks = selection_config(config, "en")["tasks"]
    assert tasks["gender"]["seeds"] == tasks["speaker"]["seeds"] == config["seeds"]
    config["data"]["resample"] = "none"
    assert not any("seeds" in t for t in selection_config(config, "en")["tasks"].values())
    config["data"]["resample"] = "per_run"
    with pytest.raises(ValueError, match="data.resample"):
        validate_config(config)


def test_one_task_may_resample_and_its_probe_twin_may_run_more_seeds(config):
    """`tasks.<task>.resample` sets one task's draws (the planted task's, docs/demo.md); a probe twin with
    more seeds than its task gets a draw for each (the union), and the other tasks keep the data seed's."""
    m = make_manifest("en", speakers_per_gender=10, clips_per_speaker=8)
    config = _cfg(config, resample="none", seeds=(1, 2))
    config["tasks"]["gender"]["resample"] = "per_seed"
    config["tasks"]["gender_probe"] = {"subsets_from": "gender", "mode": "probe", "seeds": [1, 2, 3, 4]}
    expand_twins(config)
    validate_config(config)
    assert draw_seeds(config, "gender") == [1, 2, 3, 4] and task_resample(config, "gender_probe") == "per_seed"
    tasks = selection_config(config, "en")["tasks"]
    assert tasks["gender"]["seeds"] == [1, 2, 3, 4] and "seeds" not in tasks["speaker"]
    selection = select_language(config, m, "en")
    assert sorted(selection["gender"]["draws"]) == ["1", "2", "3", "4"] and "draws" not in selection["speaker"]
    config["tasks"]["gender"]["resample"] = "sometimes"
    with pytest.raises(ValueError, match="resample"):
        validate_config(config)


def test_a_run_keys_on_its_own_clips_of_the_audio_index(tmp_path):
    """With per-seed draws, a run's key reads the index rows of its own clips (offsets left out): another
    seed's clips added to the prepared audio (which shifts every offset) leave it unchanged."""
    from cltm.grid.kept import index_digest

    header = "utt_id\toffset\tn_samples\tspeaker\tgender\n"
    a, b = tmp_path / "a.tsv", tmp_path / "b.tsv"
    a.write_text(header + "u1\t0\t100\ts1\tmale\nu3\t100\t50\ts2\tfemale\n")
    b.write_text(header + "u1\t0\t100\ts1\tmale\nu2\t100\t70\ts3\tmale\nu3\t170\t50\ts2\tfemale\n")
    assert index_digest(a, {"u1", "u3"}) == index_digest(b, {"u1", "u3"})
    assert index_digest(a, {"u1", "u3"}) != index_digest(b, {"u1", "u2", "u3"})
    c = tmp_path / "c.tsv"
    c.write_text(header + "u1\t0\t101\ts1\tmale\nu3\t101\t50\ts2\tfemale\n")  # a clip of other length: new key
    assert index_digest(a, {"u1", "u3"}) != index_digest(c, {"u1", "u3"})
