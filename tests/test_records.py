"""Run records gathered into one matrix's table: runs made under two settings stop assembly (StaleRunsError)."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest

from cltm.grid.cell import write_cell
from cltm.config import digest
from cltm.io import write_json
from cltm.analysis.table import StaleRunsError, load_cells, load_runs
from cltm.grid.execute import execute_runs
from cltm.grid.spec import RunSpec
from test_runs import _specs  # `experiment`: a session fixture of tests/conftest.py


@pytest.fixture(scope="module")
def two_settings(experiment):
    """Gender runs of one matrix trained for real under two settings: the experiment's (en single, 2 seeds)
    and the same task with half its learning rate (en dual, seed 1), as when a config changed between two
    runs of the workflow and only some cells were made again. Each cell gets its cell file."""
    spec_file = json.loads((experiment / "results/gender/settings.json").read_text())
    halved = copy.deepcopy(spec_file["settings"])
    halved["task"]["training"]["lr"] /= 2
    other = experiment / "stale/settings-halved-lr.json"
    write_json(other, {**spec_file, "settings": halved, "digest": digest(halved)})
    old = _specs(experiment, "stale/runs", [("gender", "en", "single", 1), ("gender", "en", "single", 2)])
    new = [RunSpec.from_dict({**s.to_dict(), "settings": str(other)})
           for s in _specs(experiment, "stale/runs", [("gender", "en", "dual", 1)])]
    execute_runs(old + new, log=lambda m: None)
    cells = {"single": experiment / "stale/cells/en/single.json", "dual": experiment / "stale/cells/en/dual.json"}
    write_cell(cells["single"], old)
    write_cell(cells["dual"], new)
    return {"old": old, "new": new, "cells": cells, "digests": (spec_file["digest"], digest(halved))}


def test_runs_of_two_settings_stop_assembly_naming_both_and_the_command(two_settings):
    old_digest, new_digest = two_settings["digests"]
    assert old_digest != new_digest
    records = {s.run: json.loads(Path(s.run).read_text()) for s in two_settings["old"] + two_settings["new"]}
    assert [r["config_digest"] for r in records.values()] == [old_digest, old_digest, new_digest]  # as written
    for load, files in ((load_cells, list(two_settings["cells"].values())), (load_runs, list(records))):
        with pytest.raises(StaleRunsError) as err:
            load(files)
        message = str(err.value)
        assert f"{old_digest}: 2 runs" in message and f"{new_digest}: 1 runs" in message, message
        assert two_settings["old"][0].run in message and two_settings["new"][0].run in message  # an example of each
        assert "snakemake --cores N --forcerun finetune" in message, message


def test_runs_of_one_settings_load(two_settings):
    runs = load_cells([two_settings["cells"]["single"]])
    assert len(runs) == 2 and set(runs["config_digest"]) == {two_settings["digests"][0]}
    assert list(runs["seed"]) == [1, 2] and runs["value"].between(0, 1).all()
