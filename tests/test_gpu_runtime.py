"""The time a cell's cluster job asks for (finetune rule's `runtime`): measured where there is a
measurement, today's figures per run otherwise, and more on each attempt."""

from __future__ import annotations

import json
import subprocess
import sys

from conftest import ROOT
from cltm.grid.runtime import OVERHEAD_MINUTES, cell_runtime_minutes, finetune_runtime, measured_seconds_per_n


def test_without_a_measurement_today_s_figures_per_run():
    assert cell_runtime_minutes(seeds=10, attempt=1, condition="dual", default_minutes=120) == 1200
    assert cell_runtime_minutes(seeds=10, attempt=2, condition="dual", default_minutes=30) == 600
    assert cell_runtime_minutes(seeds=1, attempt=1, condition="single", default_minutes=30) == 30


def test_a_measurement_times_seeds_and_margin_plus_start_up_grows_with_attempt():
    # preflight: a dual run's wall_s, 60 s -> 10 x 60 s x 1.5 = 15 min, + start-up
    assert cell_runtime_minutes(seeds=10, attempt=1, condition="dual", default_minutes=120,
                                preflight_seconds=60) == OVERHEAD_MINUTES + 15
    assert cell_runtime_minutes(seeds=10, attempt=3, condition="dual", default_minutes=120,
                                preflight_seconds=60) == 3 * (OVERHEAD_MINUTES + 15)
    # finished cells: seconds per unit of training set, a dual/donor run trains on twice a single's
    assert cell_runtime_minutes(seeds=10, attempt=1, condition="donor-tr", default_minutes=120,
                                measured_per_n=30, preflight_seconds=600) == OVERHEAD_MINUTES + 15
    assert cell_runtime_minutes(seeds=10, attempt=1, condition="single", default_minutes=120,
                                measured_per_n=30) == OVERHEAD_MINUTES + 8  # 7.5 rounded up
    # a 10-seed speaker cell measured at about a minute a run asks for well under today's 20 hours
    assert cell_runtime_minutes(seeds=10, attempt=1, condition="dual", default_minutes=120,
                                preflight_seconds=70) < 60


def _cell(root, task, target, condition, runs):
    path = root / f"results/{task}/cells/{target}/{condition}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"runs": [{"file": f"seed{i}.json", "record": r} for i, r in enumerate(runs, 1)]}))


def test_finished_cells_with_the_same_settings_give_the_time(tmp_path):
    _cell(tmp_path, "speaker", "en", "single", [{"config_digest": "now", "condition": "single", "wall_s": 40},
                                                 {"config_digest": "now", "condition": "single", "wall_s": 45}])
    _cell(tmp_path, "speaker", "tr", "dual", [{"config_digest": "now", "condition": "dual", "wall_s": 100}])
    _cell(tmp_path, "speaker", "tr", "single", [{"config_digest": "before", "condition": "single", "wall_s": 5000}])
    (tmp_path / "results/speaker/cells/tr/broken.json").write_text("{")  # unreadable: skipped
    assert measured_seconds_per_n("speaker", "now", tmp_path) == 50  # the dual run: 100 s for 2 N
    assert measured_seconds_per_n("speaker", "other", tmp_path) is None
    config = {"preflight": {"seconds_per_run": {"speaker": 900}}}
    # 10 seeds of a dual run: 2 x 50 s x 10 x 1.5 = 25 min
    assert finetune_runtime(config, "speaker", "dual", "now", 10, 1, 120, root=tmp_path) == OVERHEAD_MINUTES + 25
    # other settings: the preflight's figure (900 s x 10 x 1.5 = 225 min), then today's
    assert finetune_runtime(config, "speaker", "dual", "other", 10, 1, 120, root=tmp_path) == OVERHEAD_MINUTES + 225
    assert finetune_runtime({}, "speaker", "dual", "other", 10, 2, 120, root=tmp_path) == 2400


def test_the_digest_is_computed_only_where_there_are_finished_cells(tmp_path):
    def digest():
        raise AssertionError("not needed without finished cells")

    assert finetune_runtime({"preflight": {"seconds_per_run": {"gender": None}}}, "gender", "single", digest, 10, 1,
                            30, root=tmp_path) == 300


def test_the_module_is_light():
    code = "import sys, cltm.grid.runtime; print(sorted(m for m in ('torch', 'transformers') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={"PYTHONPATH": str(ROOT / "src"), "PATH": "/usr/bin:/bin"})
    assert out.stdout.strip() == "[]", out.stdout + out.stderr
