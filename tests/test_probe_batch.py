"""Probe runs trained together (cltm.train.probe_batch) equal each run trained alone (cltm.train.probe.run_probe)
bit for bit, for both task kinds, full-batch and minibatch heads; and a probe cell's job trains its runs
together (cltm.grid.job.execute_cell) while a run named alone still trains alone."""

from __future__ import annotations

import copy
import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from cltm.demo.features import synthetic_language
from cltm.paths import conditions_of
from cltm.train.probe import run_probe
from cltm.train.probe_batch import ProbeRun, run_probes

QUIET = dict(log=lambda s: None)
LANGUAGES = ("en", "tr", "eu")
FULL = {"gender": {"mode": "probe"}, "speaker": {"mode": "probe", "trim_db": 20}}
# minibatches whose last one is shorter (gender: 20 or 40 clips by 8; speaker: 24 or 48 by 10), a few epochs
MINI = {"gender": {"mode": "probe", "probe": {"batch_size": 8, "epochs": 3, "min_steps": 0}},
        "speaker": {"mode": "probe", "trim_db": 20, "probe": {"batch_size": 10, "epochs": 2, "min_steps": 0}}}


@pytest.fixture(autouse=True)
def one_thread():
    """Bit-for-bit equality holds for one thread count (as tests/test_probe.py says)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory):
    """Three languages; eu's speakers have 2 training clips each, the others 4, so that a speaker head's
    classes differ between donors (donor-eu: more speakers than donor-tr)."""
    out = tmp_path_factory.mktemp("probe_batch")
    features, selections = {}, {"gender": {}, "speaker": {}}
    for i, lang in enumerate(LANGUAGES):
        features[lang], sel = synthetic_language(lang, out, n_per_class=10, n_utterances=24, test_speakers_per_gender=3,
                                                 utterances_per_speaker=2 if lang == "eu" else 4, seed=i)
        for task in sel:
            selections[task][lang] = sel[task]
    return out, features, selections


def _grid(task: str, cfg: dict, features, selections, seeds=(1, 2, 3)) -> list[ProbeRun]:
    return [ProbeRun(task, cfg, target, condition, seed, features, selections[task])
            for target in ("en", "tr") for condition in conditions_of(target, list(LANGUAGES)) for seed in seeds]


def _alone(run: ProbeRun):
    return run_probe(run.task, run.cfg, target=run.target, condition=run.condition, seed=run.seed,
                     features=run.features, selections=run.selections, sample_rate=run.sample_rate, **QUIET)


def _numbers(value, path=""):
    """Every number of a record (timing left out) by its path."""
    if isinstance(value, dict):
        for k, v in value.items():
            if path or k != "timing":
                yield from _numbers(v, f"{path}.{k}")
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from _numbers(v, f"{path}[{i}]")
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        yield path, value


def _largest_difference(together, alone) -> float:
    """The largest absolute difference between two runs' numbers: every record field and every score."""
    (rec_t, scores_t), (rec_a, scores_a) = together, alone
    a, t = dict(_numbers(rec_a)), dict(_numbers(rec_t))
    assert a.keys() == t.keys()
    worst = max(abs(a[k] - t[k]) for k in a)
    assert list(scores_t.columns) == list(scores_a.columns) and len(scores_t) == len(scores_a)
    for column in scores_a.columns:
        if scores_a[column].dtype.kind == "f":
            worst = max(worst, float(np.max(np.abs(scores_a[column].to_numpy() - scores_t[column].to_numpy()))))
    return worst


def _assert_same(together, alone) -> None:
    rec_t, scores_t = together
    rec_a, scores_a = alone
    assert {k: v for k, v in rec_t.items() if k != "timing"} == {k: v for k, v in rec_a.items() if k != "timing"}
    assert set(rec_t["timing"]) == set(rec_a["timing"])
    pd.testing.assert_frame_equal(scores_t, scores_a, check_exact=True)


@pytest.mark.parametrize("batching", ["full batch", "minibatches"])
@pytest.mark.parametrize("task", ["gender", "speaker"])  # classification, speaker_verification
def test_runs_trained_together_equal_each_run_alone_bit_for_bit(synthetic, task, batching):
    _, features, selections = synthetic
    cfg = (FULL if batching == "full batch" else MINI)[task]
    runs = _grid(task, cfg, features, selections)
    lines = []
    together = run_probes(runs, log=lines.append, logs=[lambda s: None] * len(runs))
    batches = [line for line in lines if "trained together" in line]
    assert len(batches) == 2 and sum(int(line.split()[1]) for line in batches) == len(runs)  # 2 sizes: single, other
    largest = 0.0
    for run, result in zip(runs, together):
        assert not isinstance(result, BaseException), (run.name, result)
        alone = _alone(run)
        largest = max(largest, _largest_difference(result, alone))
        _assert_same(result, alone)
    assert largest == 0.0  # the largest difference measured over every number of every run
    records = [r for r, _ in together]
    assert len({json.dumps(r["loss"]) for r in records}) == len(records)  # every run its own
    if task == "speaker":  # donors with other numbers of speakers trained in one batch
        assert len({r["sizes"]["classes"] for r in records if r["condition"] != "single"}) > 1
    if batching == "minibatches":
        assert all(r["loss"]["steps"] in (3 * 3, 3 * 5, 2 * 3, 2 * 5) for r in records)


def test_batches_fit_their_memory_and_any_batching_gives_the_same_runs(synthetic):
    from cltm.train.probe_batch import BATCH_BYTES

    _, features, selections = synthetic
    runs = _grid("speaker", MINI["speaker"], features, selections, seeds=(4, 5))
    default = run_probes(runs, **QUIET)
    lines = []
    small = run_probes(list(reversed(runs)), log=lines.append, logs=[lambda s: None] * len(runs), batch_bytes=1)
    assert len([line for line in lines if "1 run(s)" in line]) == len(runs)  # each its own batch
    for a, b in zip(default, reversed(small)):
        _assert_same(a, b)
    assert BATCH_BYTES >= 256 * 1024 ** 2  # a paper-size speaker cell's copies: 160 MB a run


def test_a_run_that_fails_fails_alone(synthetic):
    _, features, selections = synthetic
    broken = copy.deepcopy(selections["gender"])
    broken["tr"]["single"] = broken["tr"]["single"] + ["no-such-clip"]
    wild = {"mode": "probe", "probe": {"lr": 1e30}}
    runs = [ProbeRun("gender", FULL["gender"], "en", "single", 1, features, selections["gender"]),
            ProbeRun("gender", FULL["gender"], "tr", "single", 1, features, broken),
            ProbeRun("gender", wild, "en", "dual", 1, features, selections["gender"]),
            ProbeRun("gender", FULL["gender"], "en", "single", 2, features, selections["gender"])]
    results = run_probes(runs, **QUIET)
    assert isinstance(results[1], KeyError) and "no-such-clip" in str(results[1])
    with pytest.raises(FloatingPointError) as alone:
        _alone(runs[2])
    assert isinstance(results[2], FloatingPointError) and str(results[2]) == str(alone.value)
    for i in (0, 3):
        _assert_same(results[i], _alone(runs[i]))


# ---------------------------------------------------------------------------------------------- the cell's job


@pytest.fixture(scope="module")
def experiment(synthetic, default_config, tmp_path_factory):
    """A probe experiment's inputs as the workflow lays them out: settings, subsets, feature stores, the
    encoder file (read only for the runs' key)."""
    from cltm.config import digest, run_settings
    from cltm.io import write_json

    out, _, selections = synthetic
    root = tmp_path_factory.mktemp("probe_cells")
    cfg = copy.deepcopy(default_config)
    cfg["languages"] = list(LANGUAGES)
    for task in ("gender", "speaker"):
        cfg["tasks"][task].update(FULL[task] if task == "gender" else MINI[task])
        settings = run_settings(cfg, task)
        write_json(root / f"results/{task}/settings.json",
                   {"settings": settings, "digest": digest(settings), "device": "cpu", "synthetic": True})
        for lang in LANGUAGES:
            write_json(root / f"results/subsets/{task}/{lang}.json", selections[task][lang])
    (root / "results/encoder").mkdir(parents=True)
    (root / "results/encoder/model.safetensors").write_bytes(b"probe runs read features, not the encoder")
    return root, out


def _cell(experiment, task, target, condition, seeds):
    from cltm.grid.cell import cell_specs
    from cltm.grid.spec import RunSpec

    root, out = experiment
    std = [RunSpec.standard(task, target, condition, seed, root=root) for seed in seeds]
    return cell_specs(task=task, target=target, condition=condition, runs=[s.run for s in std],
                      settings=std[0].settings, encoder=std[0].encoder, subsets=list(std[0].subsets),
                      audio=[str(out / f"{lang}.npy") for lang in std[0].languages])


def _written(spec) -> tuple[dict, bytes]:
    record = json.loads(Path(spec.run).read_text())
    for volatile in ("timing", "wall_s"):
        record.pop(volatile)
    return record, Path(spec.scores).read_bytes()


@pytest.mark.parametrize("task", ["gender", "speaker"])
def test_a_probe_cell_trains_its_runs_together_and_a_run_named_alone_trains_alone(experiment, task):
    from cltm.grid.execute import execute_run
    from cltm.grid.job import execute_cell
    from cltm.grid.kept import forget, kept_files

    root, _ = experiment
    specs = _cell(experiment, task, "en", "donor-eu", (1, 2, 3))
    cell = root / f"results/{task}/cells/en/donor-eu.json"
    messages = []
    assert execute_cell(specs, cell=str(cell), log=messages.append) == specs
    assert any("training 3 probe run(s) together" in m for m in messages)
    assert [r["record"]["seed"] for r in json.loads(cell.read_text())["runs"]] == [1, 2, 3]
    together = {s.seed: _written(s) for s in specs}
    for spec in specs:
        assert kept_files(spec, root)[0].exists()  # kept one by one, with its own inputs key
        assert together[spec.seed][0]["mode"] == "probe" and "inputs_key" in together[spec.seed][0]
        log = (root / f"results/logs/finetune/{task}/en/donor-eu/seed{spec.seed}.log").read_text()
        assert f"seed {spec.seed} (probe)" in log and f"seed {spec.seed % 3 + 1} (probe)" not in log

    # each run trained alone in this process (execute_run, as a list of one), written elsewhere: the same
    for spec in specs:
        alone = type(spec).from_dict({**spec.to_dict(), "run": str(root / f"alone/{task}-{spec.seed}.json"),
                                      "scores": str(root / f"alone/{task}-{spec.seed}.tsv"), "checkpoint": None})
        execute_run(alone, log=lambda s: None)
        assert _written(alone) == together[spec.seed]

    # a run named with -f: its cell job gets that run alone, which trains through run_probe, to the same result
    forget([specs[1].run], root=root)
    messages = []
    assert execute_cell([specs[1]], log=messages.append) == [specs[1]]
    assert not any("together" in m for m in messages)
    assert _written(specs[1]) == together[2]
    assert math.isclose(sum(together[2][0]["layer_weights"]), 1.0, rel_tol=1e-6)
