"""The golden runs: tiny deterministic runs (fine-tuning and probe, each task kind) whose metrics and first
and last losses are stored here next to the method version they belong to (cltm.method.METHOD_VERSION).

A change of code that moves any of them fails this test until the version is bumped (kept runs of the old
version are then never put back in place of new ones) and the figures below are renewed by running
`pytest tests/test_golden.py -k print_golden -s` and pasting what it prints. A refactor that changes no number passes as it is."""

from __future__ import annotations

import copy
import json

import numpy as np
import pytest
import torch

from cltm.method import METHOD_VERSION
from cltm.train.finetune import finetune_run
from cltm.train.probe import run_probe

QUIET = {"log": lambda message: None}
# the runs' inputs and training (GOLDEN_TRAINING): the session fixture golden_inputs of tests/conftest.py

# the figures of METHOD_VERSION below; renew them (and bump the version) when a change moves them
GOLDEN_VERSION = 2  # 2: time masks drawn by cltm.model.masking from the run's generator (fine-tuning moved)
# (two-class runs log roc_auc since e076bcb: a metric added, no figure moved, so the version stays)
GOLDEN = {
    "finetune gender": {"accuracy": 0.5, "loss_first": 0.7033681273460388, "loss_last": 0.702814519405365,
                        "macro_f1": 0.3333333333333333, "roc_auc": 0.609375},
    "finetune speaker": {"eer": 0.5833333333333334, "loss_first": 1.2509703636169434, "loss_last": 1.4951040744781494,
                         "min_dcf_p0.01": 0.75, "min_dcf_p0.05": 0.7500000000000001, "roc_auc": 0.5121527777777777},
    "probe gender": {"accuracy": 0.875, "loss_first": 0.6807001233100891, "loss_last": 0.2105344533920288,
                     "macro_f1": 0.8747826086956522, "roc_auc": 0.9861111111111112},
    "probe speaker": {"eer": 0.19444444444444445, "loss_first": 2.5640625953674316, "loss_last": 0.0021663584435979524,
                      "min_dcf_p0.01": 0.8333333333333333, "min_dcf_p0.05": 0.8333333333333334,
                      "roc_auc": 0.871141975308642},
}


def golden_runs(inputs) -> dict:
    """The four runs, each reduced to its metrics and first and last loss (one thread: bit for bit)."""
    cfg, stores, selections, encoder, features, probe_sel = inputs
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        out = {}
        for task in ("gender", "speaker"):
            record, _ = finetune_run(task, cfg["tasks"][task], target="en", condition="donor-tr", seed=1,
                                     encoder=copy.deepcopy(encoder), stores=stores, selections=selections[task],
                                     device=torch.device("cpu"), **QUIET)
            out[f"finetune {task}"] = {**record["metrics"], "loss_first": record["loss"]["first"],
                                       "loss_last": record["loss"]["last"]}
            record, _ = run_probe(task, {**cfg["tasks"][task], "mode": "probe"}, target="en", condition="donor-tr",
                                  seed=1, features=features, selections=probe_sel[task], **QUIET)
            out[f"probe {task}"] = {**record["metrics"], "loss_first": record["loss"]["first"],
                                    "loss_last": record["loss"]["last"]}
        return out
    finally:
        torch.set_num_threads(threads)


def differences(got: dict, want: dict, rel: float = 1e-4) -> list[str]:
    """What moved: every figure that differs from its golden value by more than `rel` (relative)."""
    out = []
    for run in sorted(set(want) | set(got)):
        for k in sorted(set(want.get(run, {})) | set(got.get(run, {}))):
            a, b = got.get(run, {}).get(k), want.get(run, {}).get(k)
            if a is None or b is None or not np.isclose(a, b, rtol=rel, atol=1e-9):
                out.append(f"{run} {k}: {a} (golden {b})")
    return out


def test_the_golden_runs_give_the_figures_of_this_method_version(golden_inputs):
    assert METHOD_VERSION == GOLDEN_VERSION, (
        f"cltm.method.METHOD_VERSION is {METHOD_VERSION} but the golden figures are of version {GOLDEN_VERSION}: "
        "renew them (pytest tests/test_golden.py -k print_golden -s) and set GOLDEN_VERSION")
    moved = differences(golden_runs(golden_inputs), GOLDEN)
    assert not moved, ("a change of code moved what a run computes; bump cltm.method.METHOD_VERSION and renew "
                       "the figures (pytest tests/test_golden.py -k print_golden -s):\n  " + "\n  ".join(moved))


def test_halving_the_learning_rate_is_caught(golden_inputs, monkeypatch):
    """The edit a user might make to try an idea: every run's schedule at half. The golden runs notice."""
    import cltm.train.loop as loop

    original = loop.lr_lambda
    monkeypatch.setattr(loop, "lr_lambda", lambda *a: (lambda step, f=original(*a): 0.5 * f(step)))
    moved = differences(golden_runs(golden_inputs), GOLDEN)
    assert any(m.startswith("finetune gender") for m in moved) and any(m.startswith("finetune speaker")
                                                                       for m in moved)


def test_print_golden(golden_inputs, request):
    """Not a check: with `-k print_golden -s` it prints the current figures in GOLDEN's form."""
    if "print_golden" not in (request.config.getoption("keyword") or ""):
        pytest.skip("prints the golden figures only when asked (-k print_golden)")
    print("GOLDEN = " + json.dumps(golden_runs(golden_inputs), indent=4, sort_keys=True))
