"""Runs as data: a list of runs in one process gives each run bit for bit its result alone; the run's own
generators; the one definition of the conditions and of the run path scheme."""

from __future__ import annotations

import contextlib
import copy
import json
import os
import random
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from conftest import copy_checkout
import torch

from conftest import QUICK, RANDOM_ENCODER, ROOT, TINY_ENCODER
from cltm.grid.spec import RunSpec
from cltm.paths import RUN_JSON, conditions_of, donor_condition, donor_of, is_condition, run_path

# RANDOM_ENCODER draws from every global generator (dropout, LayerDrop, time masking); `experiment`, the runs'
# inputs (RANDOM_ENCODER, QUICK training), is a session fixture of tests/conftest.py


# ---------------------------------------------------------------- conditions and paths


def test_conditions_and_paths_have_one_definition():
    assert conditions_of("en", ["en", "tr", "zh-CN"]) == ["single", "dual", "donor-tr", "donor-zh-CN"]
    assert donor_of(donor_condition("zh-CN")) == "zh-CN" and donor_of("dual") is None and donor_of("single") is None
    assert is_condition("donor-sv-SE") and not is_condition("triple") and not is_condition("donor-")
    assert run_path("speaker", "en", "donor-tr", 2) == "results/speaker/runs/en/donor-tr/seed2.json"
    spec = RunSpec.standard("speaker", "en", "donor-tr", 2, root="work")
    assert spec.languages == ("en", "tr")
    assert spec.run == "work/" + run_path("speaker", "en", "donor-tr", 2)
    assert spec.scores == "work/" + run_path("speaker", "en", "donor-tr", 2, ".scores.tsv")
    assert spec.subsets == ("work/results/subsets/speaker/en.json", "work/results/subsets/speaker/tr.json")
    assert spec.audio == ("work/results/audio/en.npy", "work/results/audio/tr.npy")
    assert spec.checkpoint == "work/results/speaker/checkpoints/en/donor-tr/seed2.pt"
    assert RunSpec.from_dict(json.loads(json.dumps(spec.to_dict()))) == spec
    with pytest.raises(ValueError, match="unknown condition"):
        RunSpec.standard("gender", "en", "triple", 1)
    with pytest.raises(ValueError, match="reads the languages en, tr"):
        RunSpec(**{**spec.to_dict(), "subsets": spec.subsets[:1], "audio": spec.audio[:1]})
    with pytest.raises(ValueError, match="unknown key"):
        RunSpec.from_dict({**spec.to_dict(), "sede": 3})


def test_run_specs_are_light():
    """What Snakemake imports while planning (and the job's command line) needs no torch."""
    code = "import sys, cltm.paths, cltm.config, cltm.grid.cli; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


def test_the_workflow_writes_runs_where_the_package_says():
    """The finetune rule (one job per cell) takes its outputs from cltm.paths; its shell command (the rule's
    code for the rerun triggers) names no checkpoint or per-run log path: cltm.grid.kept derives them from the
    same scheme, so they agree with RunSpec.standard."""
    from cltm.grid.cell import cell_specs

    rule = (ROOT / "workflow" / "rules" / "finetune.smk").read_text()
    outputs = re.search(r"rule finetune:.*?output:(.*?)log:(.*?)conda:", rule, re.S)
    assert re.findall(r"^\s*(\w+)=(\w+)", outputs.group(1), re.M) == [("cell", "CELL_JSON")]
    one = re.search(r"rule run:.*?output:(.*?)log:", rule, re.S)
    assert re.findall(r"^\s*(\w+)=(\w+)", one.group(1), re.M) == [("run", "RUN_JSON")]
    assert "CELL_LOG" in outputs.group(2) and "--checkpoint" not in rule
    common = (ROOT / "workflow" / "rules" / "common.smk").read_text()
    targets = (ROOT / "src" / "cltm" / "config" / "targets.py").read_text()  # the cells a matrix is assembled from
    assert "condition=CONDITION_PATTERN" in common and "CELL_JSON.format(task=task, target=target, condition=condition)" in targets
    assert RUN_JSON.format(task="t", target="x", condition="dual", seed=1) == run_path("t", "x", "dual", 1)
    standard = [RunSpec.standard("gender", "en", "donor-tr", seed) for seed in (1, 2)]
    cell = cell_specs(task="gender", target="en", condition="donor-tr", runs=[s.run for s in standard],
                      settings=standard[0].settings, encoder=standard[0].encoder, subsets=list(standard[0].subsets),
                      audio=list(standard[0].audio))
    assert cell == standard and [c.checkpoint for c in cell] == [s.checkpoint for s in standard]


# ---------------------------------------------------------------- the run's own generators


def _draws():
    return (torch.rand(3).tolist(), np.random.rand(3).tolist(), random.random(),
            torch.nn.functional.dropout(torch.ones(8), 0.5).tolist())


def test_run_generators_start_where_seeding_did_and_interleave_without_mixing():
    from cltm.train.rng import RunGenerators

    def alone(seed, blocks):
        torch.manual_seed(seed), np.random.seed(seed), random.seed(seed)  # what runs did before
        return [_draws() for _ in range(blocks)]

    a_alone, b_alone = alone(1, 3), alone(2, 3)
    torch.manual_seed(99), np.random.seed(99), random.seed(99)
    outside = _draws()
    torch.manual_seed(99), np.random.seed(99), random.seed(99)
    a, b = RunGenerators(1), RunGenerators(2)
    got_a, got_b = [], []
    for _ in range(3):  # steps of two runs interleaved, as when runs are packed on one device
        with a.active():
            got_a.append(_draws())
        with b.active():
            with b.active():  # re-entrant
                got_b.append(_draws())
    assert got_a == a_alone and got_b == b_alone
    assert _draws() == outside  # the process's generators went on as if no run had drawn


def test_a_run_draws_from_the_global_generators_so_they_must_be_its_own():
    """Not vacuous: the head's initialisation, dropout and LayerDrop draw from torch's globals, so a run's
    loss changes with them unless the run has its own (RunGenerators). Time masks (method version 2) come
    from the run's own generator (cltm.model.masking), so numpy's global generator no longer matters."""
    from cltm.model.encoder import build_encoder
    from cltm.train.rng import RunGenerators
    from cltm.model.heads import Classifier
    from cltm.train.loop import fine_tune
    from conftest import tone

    encoder = build_encoder("random", config=TINY_ENCODER, overrides=RANDOM_ENCODER["overrides"], init_seed=0)
    waves = [tone(f, 1.0, 16000) for f in (110, 130, 210, 230)]
    labels = np.array([0, 0, 1, 1])

    def loss(torch_seed, own, np_seed=1):
        torch.manual_seed(torch_seed), np.random.seed(np_seed)
        with RunGenerators(5).active() if own else contextlib.nullcontext():
            model = Classifier(copy.deepcopy(encoder), 2)
            return fine_tune(model, waves, labels, QUICK, seed=5, device=torch.device("cpu"), log=lambda m: None)

    assert loss(1, own=False) != loss(2, own=False)  # head, dropout and LayerDrop follow torch's globals
    assert loss(1, own=True) == loss(2, own=True)
    assert loss(1, own=False, np_seed=1) == loss(1, own=False, np_seed=2)  # the masks are the run's own draws


# ---------------------------------------------------------------- a list of runs in one process


RUNS = [("gender", "en", "single", 1), ("gender", "en", "donor-tr", 2), ("speaker", "tr", "dual", 1),
        ("speaker", "en", "donor-tr", 3)]


def _specs(root: Path, out: str, runs=RUNS) -> list[RunSpec]:
    specs = []
    for task, target, condition, seed in runs:
        spec = RunSpec.standard(task, target, condition, seed, root=root)
        specs.append(RunSpec.from_dict({**spec.to_dict(), "run": f"{root}/{out}/{task}-{target}-{condition}-{seed}.json",
                                        "scores": f"{root}/{out}/{task}-{target}-{condition}-{seed}.tsv",
                                        "checkpoint": f"{root}/{out}/{task}-{target}-{condition}-{seed}.pt"}))
    return specs


def _result(spec: RunSpec) -> tuple[dict, bytes]:
    record = json.loads(Path(spec.run).read_text())
    for volatile in ("timing", "wall_s"):
        record.pop(volatile)
    return record, Path(spec.scores).read_bytes()


def test_a_list_of_runs_in_one_process_equals_each_run_alone(experiment):
    """Each run alone: the Snakemake job's command (`python -m cltm.worker finetune`) in a fresh process
    (two such processes at a time, as two Snakemake jobs on two cores). The same runs as one list, in
    another order, after another run and with the process's generators used: `finetune-many`, in this
    process. Run JSONs (all but timing) and scores agree bit for bit."""
    from concurrent.futures import ThreadPoolExecutor

    from cltm.grid.cli import main

    alone = _specs(experiment, "alone")
    env = {**os.environ, "CLTM_WORKER": "0", "PYTHONPATH": os.pathsep.join([str(ROOT / "src"),
                                                                           os.environ.get("PYTHONPATH", "")])}

    def run_alone(spec: RunSpec) -> subprocess.CompletedProcess:
        args = ["finetune", "--settings", spec.settings, "--task", spec.task, "--target", spec.target,
                "--condition", spec.condition, "--seed", str(spec.seed), "--encoder", spec.encoder,
                "--subsets", *spec.subsets, "--audio", *spec.audio, "--run", spec.run, "--scores", spec.scores,
                "--checkpoint", spec.checkpoint]
        return subprocess.run([sys.executable, "-m", "cltm.worker", *args], env=env, capture_output=True, text=True)

    with ThreadPoolExecutor(max_workers=2) as pool:
        for proc in pool.map(run_alone, alone):
            assert proc.returncode == 0, proc.stdout + proc.stderr

    listed = _specs(experiment, "listed")
    order = [2, 0, 3, 1]
    other = _specs(experiment, "other", [("gender", "tr", "dual", 5)])
    runs_file = experiment / "runs.json"
    runs_file.write_text(json.dumps([s.to_dict() for s in other + [listed[i] for i in order]]))
    torch.manual_seed(1234), np.random.seed(4321), torch.rand(7), np.random.rand(7)
    outside = torch.get_rng_state(), np.random.get_state()[1].copy()
    assert main(["finetune-many", "--runs", str(runs_file)]) == 0

    for a, b in zip(alone, listed):
        rec_a, scores_a = _result(a)
        rec_b, scores_b = _result(b)
        assert rec_a == rec_b, a.name
        assert scores_a == scores_b, a.name
        assert not Path(b.checkpoint).exists()  # removed once the result exists
    assert torch.equal(torch.get_rng_state(), outside[0]) and np.array_equal(np.random.get_state()[1], outside[1])
    metrics = [_result(a)[0]["loss"]["first"] for a in alone]
    assert len(set(metrics)) == len(metrics)  # four different runs, not one repeated


def test_a_failed_run_of_a_list_leaves_the_others_done(experiment):
    from cltm.grid.execute import RunFailures, execute_runs

    good, bad = _specs(experiment, "keep", [("gender", "en", "single", 1), ("gender", "tr", "single", 1)])
    bad = RunSpec.from_dict({**bad.to_dict(), "subsets": [str(experiment / "missing.json")]})
    with pytest.raises(RunFailures, match="1 run\\(s\\) failed: gender tr single seed 1"):
        execute_runs([bad, good], log=lambda m: None, keep_going=True)
    assert Path(good.run).exists() and not Path(bad.run).exists()
    with pytest.raises(ValueError, match="several runs of the list write"):
        execute_runs([good, good], log=lambda m: None)


def test_a_dry_run_plans_the_runs_at_the_paths_of_the_scheme(tmp_path):
    """Snakemake plans one bilingual run with the inputs and outputs RunSpec.standard names (a dry run)."""

    import yaml

    copy_checkout(tmp_path)
    (tmp_path / "exp.yaml").write_text(yaml.safe_dump({"languages": ["en", "tr"], "seeds": [1],
                                                        "corpus": {"type": "demo"}}))
    spec = RunSpec.standard("gender", "en", "donor-tr", 1)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.run([sys.executable, "-m", "snakemake", spec.run, "-n", "-p", "--cores", "1",
                           "--configfile", "exp.yaml"], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=600)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-4000:]
    command = next(line for line in out.splitlines() if "cltm.worker finetune-cell" in line)
    for part in (f"--condition {spec.condition}", f"--settings {spec.settings}", f"--encoder {spec.encoder}",
                 f"--subsets {' '.join(spec.subsets)}", f"--audio {' '.join(spec.audio)}", "--seeds 1",
                 "--update-cell results/gender/cells/en/donor-tr.json"):
        assert part in command, (part, command)


# ---------------------------------------------------------------- cells: kept runs are not trained again


def test_a_cell_trains_only_the_runs_it_does_not_keep(experiment):
    """A cell job (cltm.grid.job.execute_cell): its finished runs are kept (hard links) with the key of their
    inputs; run again (Snakemake deletes a job's outputs first), it puts them back without training; a run
    named with -f (cltm.grid.kept.forget) is trained again with the same result; a run that failed is the
    only one trained by the next attempt; a changed input retrains."""
    from cltm.grid.cell import cell_specs
    from cltm.grid.kept import forget, kept_files
    from cltm.grid.execute import RunFailures
    from cltm.grid.job import execute_cell

    std = [RunSpec.standard("gender", "en", "donor-tr", seed, root=experiment) for seed in (1, 2)]
    specs = cell_specs(task="gender", target="en", condition="donor-tr", runs=[s.run for s in std],
                       settings=std[0].settings, encoder=std[0].encoder, subsets=list(std[0].subsets),
                       audio=list(std[0].audio))
    cell = experiment / "results/gender/cells/en/donor-tr.json"
    blocker = Path(specs[1].scores)  # a directory where seed 2's scores go: that run fails, seed 1 does not
    blocker.mkdir(parents=True)
    with pytest.raises(RunFailures, match="gender en donor-tr seed 2"):
        execute_cell(specs, cell=str(cell), log=lambda m: None)
    assert kept_files(specs[0], experiment)[0].exists() and not kept_files(specs[1], experiment)[0].exists()
    assert not cell.exists()  # written only when every run of the cell is done
    blocker.rmdir()
    Path(specs[0].run).unlink(), Path(specs[0].scores).unlink()  # as Snakemake does before the job
    messages = []
    assert execute_cell(specs, cell=str(cell), log=messages.append) == [specs[1]]  # seed 1 is put back
    assert any("seed 1: kept" in m for m in messages)
    first = {s.seed: _result(s) for s in specs}
    assert all("inputs_key" in r for r, _ in first.values())
    assert [r["record"]["seed"] for r in json.loads(cell.read_text())["runs"]] == [1, 2]
    assert os.stat(specs[0].run).st_ino == os.stat(kept_files(specs[0], experiment)[0]).st_ino  # no copy

    for s in specs:
        Path(s.run).unlink()
    os.utime(specs[0].subsets[0])  # touched, not changed: still the same inputs
    assert execute_cell(specs, cell=str(cell), log=lambda m: None) == []
    assert {s.seed: _result(s) for s in specs} == first

    assert forget([specs[1].run], root=experiment) == ["gender en donor-tr seed 2"]
    assert execute_cell(specs, cell=str(cell), log=lambda m: None) == [specs[1]]
    assert _result(specs[1]) == first[2]  # trained again: the same seed gives the same result

    # packed (runs_per_gpu 2): both runs at once, each with its result alone and its own log
    forget([s.run for s in specs], root=experiment)
    assert execute_cell(specs, cell=str(cell), pack=2, log=lambda m: None) == specs
    assert {s.seed: _result(s) for s in specs} == first
    assert "macro_f1" in (experiment / "results/logs/finetune/gender/en/donor-tr/seed2.log").read_text()

    settings = json.loads(Path(specs[0].settings).read_text())
    changed = copy.deepcopy(settings)
    changed["digest"] = "0" * 16  # the task's settings changed: every run of the cell is redone
    Path(specs[0].settings).write_text(json.dumps(changed))
    try:
        assert execute_cell(specs, cell=str(cell), log=lambda m: None) == specs
    finally:
        Path(specs[0].settings).write_text(json.dumps(settings))


def test_bf16_and_fp32_matrices_agree_within_their_standard_errors(experiment):
    """A reduced gender grid (2 targets x 3 conditions x 3 seeds) under fp32 and under bf16: every cell of
    the CLTM and every baseline agree within twice their combined standard error."""
    from cltm.config import digest
    from cltm.io import write_json
    from cltm.analysis.matrix import transfer_matrices
    from cltm.analysis.table import load_runs
    from cltm.grid.execute import execute_runs

    spec_file = json.loads((experiment / "results/gender/settings.json").read_text())
    tables, losses = {}, {}
    for precision in ("fp32", "bf16"):
        settings = copy.deepcopy(spec_file["settings"])
        # 5 epochs: the tiny model leaves chance in enough cells for finite CLTM values (with 3, the draws of
        # method version 2 left both transfer cells with a zero denominator: a vacuous comparison)
        settings["task"]["training"] = {**settings["task"]["training"], "precision": precision, "epochs": 5}
        path = experiment / f"results/gender_{precision}/settings.json"
        write_json(path, {**spec_file, "settings": settings, "digest": digest(settings)})
        grid = [("gender", t, c, seed) for t, o in (("en", "tr"), ("tr", "en"))
                for c in ("single", "dual", f"donor-{o}") for seed in (1, 2, 3)]
        specs = [RunSpec.from_dict({**s.to_dict(), "settings": str(path)}) for s in _specs(experiment, precision, grid)]
        execute_runs(specs, log=lambda m: None)
        tables[precision] = load_runs([s.run for s in specs])
        losses[precision] = [json.loads(Path(s.run).read_text())["loss"] for s in specs]
    assert set(tables["bf16"]["precision"]) == {"bf16"} and set(tables["fp32"]["precision"]) == {"fp32"}
    # bf16 really trained differently (the tiny model's metrics may coincide: most runs guess one class)
    assert all(a != b for a, b in zip(losses["bf16"], losses["fp32"]))
    a, b = (transfer_matrices(tables[p], "macro_f1", ["en", "tr"]) for p in ("fp32", "bf16"))
    for name in ("perf_single", "perf_dual"):
        se = np.hypot(a.baselines[f"{name}_se"], b.baselines[f"{name}_se"])
        assert ((a.baselines[name] - b.baselines[name]).abs() <= 2 * se + 1e-9).all(), (a.baselines, b.baselines)
    diff = (a.cltm - b.cltm).abs().to_numpy()
    se = np.hypot(a.cltm_se, b.cltm_se).to_numpy()
    finite = np.isfinite(diff) & np.isfinite(se)  # a zero denominator makes a flagged cell infinite
    assert finite.sum() >= 3 and (diff[finite] <= 2 * se[finite] + 1e-9).all(), (a.cltm, b.cltm, se)


def test_a_run_that_would_train_on_a_test_voice_of_its_target_stops_before_training(experiment, tmp_path):
    """The check every run makes on the files it reads (cltm.data.speakers.check_run_speakers): here the donor's
    training voices are made test voices of the target, as a language selected before another was added
    could have them."""
    from cltm.data.audio import AudioStore
    from cltm.data.speakers import LeakError, check_run_speakers

    spec = RunSpec.standard("gender", "en", "donor-tr", 1, root=experiment)
    selections = {lang: json.loads(Path(p).read_text()) for lang, p in zip(spec.languages, spec.subsets)}
    stores = {lang: AudioStore(a, Path(a).with_suffix(".tsv")) for lang, a in zip(spec.languages, spec.audio)}
    check_run_speakers(spec, selections, stores)  # the selection as made: disjoint
    voice = stores["tr"].meta(selections["tr"]["single"][0])["speaker"]
    selections["en"]["test_speakers"].append(voice)
    with pytest.raises(LeakError, match=r"would train on test speaker .* of 'en' \(clip .* of 'tr'\).*"
                                        r"results/selection/tr.json -f"):
        check_run_speakers(spec, selections, stores)
    check_run_speakers(spec, selections, stores, speaker_ids="per_language")  # ids of two languages: two people
