"""The small helpers: `cltm.io` imports nothing from the domain, and run_script reports every domain error
(one base class, `cltm.errors.CltmError`) in one line."""

import subprocess
import sys

import pytest

from cltm.errors import CltmError
from cltm.io import run_script


def test_io_imports_no_domain_module():
    code = "import sys, cltm.io; print(sorted(m for m in sys.modules if m.startswith('cltm.')))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "['cltm.errors', 'cltm.io']"


def test_every_domain_error_is_a_cltm_error():
    from cltm.data.audio import AudioError
    from cltm.config import ConfigError
    from cltm.data.corpora import CorpusError
    from cltm.model.encoder import EncoderError
    from cltm.analysis.table import StaleRunsError
    from cltm.records import DamagedRunError
    from cltm.data.selection import SelectionError

    for cls in (AudioError, ConfigError, CorpusError, EncoderError, DamagedRunError, StaleRunsError, SelectionError):
        assert issubclass(cls, CltmError) and issubclass(cls, ValueError), cls


def test_run_script_reports_a_domain_error_in_one_line_and_lets_bugs_through():
    from cltm.records import DamagedRunError

    lines = []

    def damaged():
        raise DamagedRunError("run file x.json is empty")

    with pytest.raises(SystemExit) as exit_:
        run_script(damaged, lines.append)
    assert exit_.value.code == 1 and lines == ["ERROR: run file x.json is empty"]

    def bug():
        raise KeyError("a bug, not a user's problem: the traceback is wanted")

    with pytest.raises(KeyError):
        run_script(bug, lines.append)
    assert len(lines) == 1
