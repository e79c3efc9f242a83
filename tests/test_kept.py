"""Adopting a results/ made before the cell design (cltm < 0.9, runs without an inputs key): `adopt_existing`
keeps its finished runs once, and `legacy_reusable` puts one back only when its settings digest is today's and
it is newer than every file it read (Snakemake's own rule). Real files, with their times set by os.utime."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

from cltm.grid.cell import split_cell
import cltm.grid.kept
from cltm.grid.kept import adopt_existing, kept_files, legacy_reusable
from cltm.method import METHOD_VERSION
from cltm.config import digest, run_settings
from cltm.io import write_json
from cltm.grid.spec import RunSpec

T_INPUTS = 1_700_000_000  # when the inputs were written (s since the epoch)
T_RUN = T_INPUTS + 3600  # the run finished an hour later


def _touch(path: Path, t: float) -> None:
    os.utime(path, (t, t))


def legacy_record(spec: RunSpec, config_digest: str) -> dict:
    """A run record as cltm < 0.9 wrote it: every field of a run, the settings digest, no inputs_key."""
    donor = spec.condition[len("donor-"):] if spec.condition.startswith("donor-") else None
    return {"task": spec.task, "target": spec.target, "condition": spec.condition, "donor": donor, "seed": spec.seed,
            "metric": "macro_f1", "value": 0.75, "metrics": {"macro_f1": 0.75, "accuracy": 0.75},
            "sizes": {"train_clips": 12, "target_clips": 6, "donor_clips": 6, "classes": 2, "test_clips": 8},
            "loss": {"steps": 12, "first": 0.7, "last": 0.4, "epoch_means": [0.55]},
            "timing": {"train_s": 1.5, "eval_s": 0.2}, "device": "cpu", "config_digest": config_digest,
            "mode": "finetune", "synthetic_demo": True, "encoder": "models/tiny-hubert-synth", "wall_s": 1.9}


@pytest.fixture
def old_results(tmp_path, default_config):
    """A results/ as an old version left it: the task's settings, the encoder, subsets and prepared audio of
    en and tr (written at T_INPUTS), and finished runs (at T_RUN) with today's settings digest."""
    settings = run_settings(default_config, "gender")
    today = digest(settings)
    write_json(tmp_path / "results/gender/settings.json", {"settings": settings, "digest": today, "device": "cpu",
                                                           "synthetic": True})
    (tmp_path / "results/encoder").mkdir(parents=True)
    (tmp_path / "results/encoder/model.safetensors").write_bytes(b"weights")
    for lang in ("en", "tr"):
        write_json(tmp_path / f"results/subsets/gender/{lang}.json",
                   {"test": [f"{lang}_t"], "test_speakers": ["s9"], "single": [f"{lang}_a"], "extra": [f"{lang}_b"]})
        (tmp_path / "results/audio").mkdir(parents=True, exist_ok=True)
        np.save(tmp_path / f"results/audio/{lang}.npy", np.zeros(16, dtype=np.float32))
        (tmp_path / f"results/audio/{lang}.tsv").write_text("utt_id\toffset\tn_samples\tspeaker\tgender\n"
                                                           f"{lang}_a\t0\t16\ts1\tmale\n")
    specs = {}
    for condition in ("single", "donor-tr"):
        for seed in (1, 2):
            spec = RunSpec.standard("gender", "en", condition, seed, root=tmp_path)
            write_json(spec.run, legacy_record(spec, today))
            Path(spec.scores).write_text("utt_id\ttrue\tprob_male\nen_t\tmale\t0.8\n")
            specs[condition, seed] = spec
    for path in (tmp_path / "results").rglob("*"):
        if path.is_file():
            _touch(path, T_RUN if "/runs/" in str(path) else T_INPUTS)
    return {"root": tmp_path, "digest": today, "specs": specs}


@pytest.fixture
def version_1(monkeypatch):
    """The code of method version 1, the version of every run made before versions existed: only that code
    puts legacy runs back (a later version computes other results, so it trains them again)."""
    monkeypatch.setattr(cltm.grid.kept, "METHOD_VERSION", 1)


def _inputs(spec: RunSpec) -> list[str]:
    """Every file a run reads: subsets, audio and its index, per language, and the encoder's weights."""
    return [*spec.subsets, *spec.audio, *(str(Path(a).with_suffix(".tsv")) for a in spec.audio), spec.encoder]


def _record(spec: RunSpec) -> dict:
    return json.loads(Path(spec.run).read_text())


# ---------------------------------------------------------------- legacy_reusable


def test_a_run_of_today_s_digest_newer_than_its_inputs_is_reusable(old_results, version_1):
    spec = old_results["specs"]["donor-tr", 1]
    assert len(_inputs(spec)) == 7 and all(os.stat(p).st_mtime == T_INPUTS for p in _inputs(spec))
    assert legacy_reusable(spec, _record(spec), T_RUN, old_results["digest"])
    assert legacy_reusable(spec, _record(spec), T_INPUTS, old_results["digest"])  # as new as its inputs: still


def test_legacy_runs_are_not_reusable_under_a_later_method_version(old_results):
    assert METHOD_VERSION != 1
    spec = old_results["specs"]["donor-tr", 1]
    assert not legacy_reusable(spec, _record(spec), T_RUN, old_results["digest"])
    assert adopt_existing(old_results["root"]) == 4  # kept, but trained again by the cell jobs
    Path(spec.run).unlink()
    kept, todo = split_cell([spec], log=lambda m: None)
    assert not kept and todo == [spec]


@pytest.mark.parametrize("which", range(7))
def test_a_run_older_than_any_one_of_its_inputs_is_not(old_results, which):
    """Each input counts: the target's and the donor's subsets, audio and audio index, and the encoder."""
    spec = old_results["specs"]["donor-tr", 1]
    _touch(Path(_inputs(spec)[which]), T_RUN + 1)  # rewritten after the run finished
    assert not legacy_reusable(spec, _record(spec), T_RUN, old_results["digest"])


def test_a_run_whose_input_is_gone_is_not(old_results):
    spec = old_results["specs"]["donor-tr", 1]
    Path(spec.audio[1]).unlink()  # the donor's prepared audio
    assert not legacy_reusable(spec, _record(spec), T_RUN, old_results["digest"])


def test_a_run_of_another_settings_digest_is_not(old_results):
    spec = old_results["specs"]["single", 1]
    other = digest({**json.loads(Path(spec.settings).read_text())["settings"], "data": {"sample_rate": 8000}})
    assert other != old_results["digest"]
    assert not legacy_reusable(spec, _record(spec), T_RUN, other)  # today's settings changed since the run
    record = {**_record(spec), "config_digest": other}
    assert not legacy_reusable(spec, record, T_RUN, old_results["digest"])  # the run was made under others


def test_a_run_with_an_inputs_key_is_not_legacy(old_results):
    """A run of the cell design is reused by its inputs key alone (`cltm.grid.kept.reusable`), never by times."""
    spec = old_results["specs"]["single", 1]
    record = {**_record(spec), "inputs_key": "0" * 64}
    assert not legacy_reusable(spec, record, T_RUN, old_results["digest"])


# ---------------------------------------------------------------- adopt_existing


def test_adopt_existing_keeps_every_finished_run_once(old_results):
    root, specs = old_results["root"], old_results["specs"]
    unfinished = RunSpec.standard("gender", "en", "dual", 1, root=root)
    write_json(unfinished.run, legacy_record(unfinished, old_results["digest"]))  # a record without its scores
    assert adopt_existing(root) == 4
    for spec in specs.values():
        record, scores = kept_files(spec, root)
        assert record.samefile(spec.run) and scores.samefile(spec.scores)  # hard links: the same files
    assert not kept_files(unfinished, root)[0].exists()
    assert (root / "results/.cltm/kept/.adopted").is_file()
    # once: runs found later are not adopted (they are kept by their cell jobs, with an inputs key)
    Path(unfinished.scores).write_text("utt_id\ttrue\tprob_male\n")
    assert adopt_existing(root) == 0 and not kept_files(unfinished, root)[0].exists()


def test_adopt_existing_leaves_a_kept_copy_as_it_is(old_results):
    root, spec = old_results["root"], old_results["specs"]["single", 1]
    record, scores = kept_files(spec, root)
    record.parent.mkdir(parents=True)
    write_json(record, {**legacy_record(spec, old_results["digest"]), "inputs_key": "1" * 64})
    scores.write_text("kept\n")
    assert adopt_existing(root) == 3
    assert _record(spec).get("inputs_key") is None and json.loads(record.read_text())["inputs_key"] == "1" * 64


def test_adopted_runs_are_put_back_unless_an_input_changed(old_results, version_1):
    """The upgrade as a cell job sees it: after adoption, each run of today's digest newer than its inputs
    is put back without training; a run whose donor audio was prepared again after it is trained."""
    root, specs = old_results["root"], old_results["specs"]
    assert adopt_existing(root) == 4
    before = {k: Path(s.run).read_bytes() for k, s in specs.items()}
    single = [specs["single", 1], specs["single", 2]]
    for spec in single:
        Path(spec.run).unlink()  # Snakemake deletes a cell's outputs before its job runs
    kept, todo = split_cell(single, log=lambda m: None)
    assert kept == single and not todo
    assert all(Path(s.run).read_bytes() == before["single", s.seed] for s in single)
    _touch(root / "results/audio/tr.tsv", T_RUN + 60)
    donor = [specs["donor-tr", 1], specs["donor-tr", 2]]
    kept, todo = split_cell(donor, log=lambda m: None)
    assert not kept and todo == donor
