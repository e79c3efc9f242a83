"""Runs packed K per device give each run its result alone; the memory estimate and the packing check."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cltm.grid.pack import PackingError, check_packing, count_parameters, estimate_run_memory, estimate_spec_memory, execute_packed, longest_clip_seconds
from cltm.grid.spec import RunSpec
from test_runs import _result, _specs, experiment  # noqa: F401 - the experiment fixture of tests/test_runs.py

PACKED_RUNS = [("gender", "en", "single", 1), ("speaker", "en", "donor-tr", 3), ("gender", "tr", "dual", 2)]
HUBERT_BASE = {"hidden_size": 768, "num_hidden_layers": 12, "num_attention_heads": 12, "intermediate_size": 3072}


def test_runs_packed_two_at_a_time_equal_the_same_runs_one_after_another(experiment):  # noqa: F811
    """execute_packed(k=2): two child processes, three runs; run JSONs (all but timing) and scores are bit for
    bit those of execute_runs in this process; records come back in the order of the specs."""
    from cltm.grid.execute import execute_runs

    one_by_one = _specs(experiment, "sequential", PACKED_RUNS)
    packed = _specs(experiment, "packed", PACKED_RUNS)
    execute_runs(one_by_one, log=lambda m: None)
    lines = []
    records = execute_packed(packed, 2, log=lines.append)
    assert [(r["task"], r["target"], r["condition"], r["seed"]) for r in records] == PACKED_RUNS
    for a, b in zip(one_by_one, packed):
        rec_a, scores_a = _result(a)
        rec_b, scores_b = _result(b)
        assert rec_a == rec_b, a.name
        assert scores_a == scores_b, a.name
        assert not Path(b.checkpoint).exists()
    assert any(line.startswith("[gender tr dual seed 2]") for line in lines)  # the runs' own log lines


def test_a_failed_packed_run_leaves_the_others_done(experiment):  # noqa: F811
    from cltm.grid.execute import RunFailures

    good, bad, other = _specs(experiment, "packed-keep", [("gender", "en", "single", 1), ("gender", "tr", "single", 1),
                                                          ("gender", "en", "dual", 1)])
    bad = RunSpec.from_dict({**bad.to_dict(), "subsets": [str(experiment / "missing.json")]})
    with pytest.raises(RunFailures, match="1 run\\(s\\) failed: gender tr single seed 1"):
        execute_packed([bad, good, other], 2, log=lambda m: None, keep_going=True)
    assert Path(good.run).exists() and Path(other.run).exists() and not Path(bad.run).exists()
    with pytest.raises(FileNotFoundError):  # without keep_going: the run's own error
        execute_packed([bad, good], 2, log=lambda m: None)
    with pytest.raises(ValueError, match="several runs of the list write"):
        execute_packed([good, good], 2, log=lambda m: None)


def test_the_memory_estimate_grows_with_clip_length_batch_and_precision():
    base = estimate_run_memory(HUBERT_BASE, 5.0, 1, "fp32", 2)
    assert estimate_run_memory(HUBERT_BASE, 10.0, 1, "fp32", 2) > base
    assert estimate_run_memory(HUBERT_BASE, 5.0, 2, "fp32", 2) > base
    assert estimate_run_memory(HUBERT_BASE, 5.0, 1, "bf16", 2) < base  # half-size activations
    assert estimate_run_memory(HUBERT_BASE, 5.0, 1, "fp32", 2000) > base
    lengths = [estimate_run_memory(HUBERT_BASE, s, 1, "bf16", 2) for s in (1, 2, 4, 8, 12, 30)]
    batches = [estimate_run_memory(HUBERT_BASE, 4, b, "bf16", 2) for b in (1, 2, 4, 8)]
    assert lengths == sorted(set(lengths)) and batches == sorted(set(batches))
    # HuBERT base: about 95M parameters (mHuBERT-147's 94.7M); one 12 s clip in fp32: a few GiB
    assert 94e6 < count_parameters(HUBERT_BASE, 2) < 96e6
    assert 2 * 1024 ** 3 < estimate_run_memory(HUBERT_BASE, 12.0, 1, "fp32", 2) < 8 * 1024 ** 3
    with pytest.raises(ValueError, match="unknown precision"):
        estimate_run_memory(HUBERT_BASE, 5.0, 1, "fp16", 2)


def test_the_parameter_count_is_the_model_s(experiment):  # noqa: F811
    """The formula against the encoder the experiment materialised (HuBERT layout, tiny sizes), plus a head."""
    from cltm.model.encoder import load_encoder

    model = load_encoder(experiment / "results" / "encoder")
    config = json.loads((experiment / "results" / "encoder" / "config.json").read_text())
    hidden = config["hidden_size"]
    assert count_parameters(config, 5) == sum(p.numel() for p in model.parameters()) + hidden * 5 + 5


def test_check_packing_names_runs_per_gpu_and_the_numbers():
    gib = 1024 ** 3
    assert check_packing(4, 10 * gib, 141 * gib) == 14
    with pytest.raises(PackingError, match=r"runs_per_gpu 8: 8 runs x 20\.0 GiB .* 160\.0 GiB, more than the "
                                           r"device's 80\.0 GiB; at most 4 fit: set runs_per_gpu to 4 or lower"):
        check_packing(8, 20 * gib, 80 * gib)
    with pytest.raises(PackingError, match="not even one run fits: set runs_per_gpu to 1"):
        check_packing(2, 100 * gib, 80 * gib)
    with pytest.raises(PackingError, match="runs_per_gpu"):
        execute_packed([], 0)


def test_a_run_s_estimate_reads_its_longest_clip_and_settings(experiment):  # noqa: F811
    import pandas as pd

    spec = _specs(experiment, "estimate", [("speaker", "en", "donor-tr", 3)])[0]
    longest = max(pd.read_csv(experiment / f"results/audio/{lang}.tsv", sep="\t")["n_samples"].max()
                  for lang in ("en", "tr")) / 16000
    assert longest_clip_seconds(spec) == longest
    settings = json.loads(Path(spec.settings).read_text())["settings"]["task"]["training"]
    encoder = json.loads((experiment / "results/encoder/config.json").read_text())
    crop = min(longest, settings["crop_seconds"])
    est = estimate_spec_memory(spec)
    assert est >= estimate_run_memory(encoder, crop, settings["batch_size"], "fp32", 2)
    with pytest.raises(PackingError, match="runs_per_gpu 2"):
        execute_packed([spec, spec], 2, device_bytes=est)


def test_spawned_packed_processes_give_the_same_results(experiment):  # noqa: F811
    """Children that use several CPU threads are spawned (a forked one could hang in GNU OpenMP), as are
    the children of a parent that initialised CUDA; spawned children give the results of execute_runs too."""
    from cltm.grid.pack import start_context
    from cltm.grid.execute import execute_runs

    runs = [("gender", "en", "single", 4), ("gender", "tr", "single", 4)]
    two_threads = [RunSpec.from_dict({**s.to_dict(), "threads": 2}) for s in _specs(experiment, "x", runs)]
    assert start_context(two_threads).get_start_method() == "spawn"
    assert start_context(_specs(experiment, "x", runs)).get_start_method() == "fork"
    one_by_one, packed = _specs(experiment, "sequential-spawn", runs), _specs(experiment, "packed-spawn", runs)
    execute_runs(one_by_one, log=lambda m: None)
    execute_packed(packed, 2, log=lambda m: None, start_method="spawn")
    for a, b in zip(one_by_one, packed):
        assert _result(a) == _result(b), a.name
