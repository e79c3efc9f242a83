"""The conda environment for `--sdm conda` must carry every runtime dependency of the package."""

import re
from pathlib import Path

import pytest
import yaml

try:
    import tomllib  # Python 3.11+
except ImportError:  # Python 3.10, which requires-python allows: tomli, the same parser as a package (pytest
    # itself requires it below 3.11, so the skip is only for an environment without it)
    tomllib = pytest.importorskip("tomli", reason="Python 3.10 has no tomllib, and tomli (its backport) is not "
                                                  "installed: pip install tomli to read pyproject.toml here")

ROOT = Path(__file__).resolve().parents[1]


def _name(requirement: str) -> str:
    return re.split(r"[<>=!\[ ;]", requirement.strip(), maxsplit=1)[0].lower()


def test_conda_env_matches_pyproject():
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    needed = {_name(d) for d in deps} - {"snakemake"}  # Snakemake runs the jobs; jobs do not import it
    env = yaml.safe_load((ROOT / "workflow" / "envs" / "cltm.yaml").read_text())
    listed = set()
    for item in env["dependencies"]:
        for dep in item["pip"] if isinstance(item, dict) else [item]:
            listed.add(_name(dep))
    assert needed <= listed, f"workflow/envs/cltm.yaml lacks {sorted(needed - listed)}"
    assert "torchaudio" not in listed | needed  # deliberately not a dependency


def test_sentence_banks_ship_with_the_package():
    patterns = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]["cltm"]
    banks = list((ROOT / "src" / "cltm" / "demo" / "sentences").glob("*.txt"))
    assert banks and any(p.endswith("sentences/*.txt") for p in patterns)
