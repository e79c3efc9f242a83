"""The method version: which computation a run's result comes from.

`METHOD_VERSION` changes whenever a change of code changes what a run computes (training, evaluation,
pooling, metrics, selection, audio preparation, features, probe heads). It enters every run's record and
(from version 2 on) its inputs key, so that kept runs of another version are never put back in place of
a run of this one. `tests/test_golden.py` guards it: tiny deterministic runs whose metrics and first losses
are stored next to the version they belong to; a change that moves them fails that test until the version
is bumped and the figures renewed. A refactor that changes no number keeps the version.

`source_fingerprint()` is a digest of the package's own source. A local edit that does not bump the version
(a user trying an idea) changes it: each run records the fingerprint of the code that made it, and the
workflow names the runs it put back that other code made, with the command that retrains them.
Standard library only.
"""

from __future__ import annotations

import hashlib
from functools import lru_cache
from pathlib import Path

METHOD_VERSION = 2

PACKAGE = Path(__file__).resolve().parent


@lru_cache(maxsize=1)
def source_fingerprint() -> str:
    """sha256 (16 hex) over the package's .py files: their paths relative to the package and their bytes."""
    h = hashlib.sha256()
    for path in sorted(PACKAGE.rglob("*.py")):
        h.update(str(path.relative_to(PACKAGE)).encode() + b"\0" + path.read_bytes() + b"\0")
    return h.hexdigest()[:16]


def method_of(record: dict) -> int:
    """The method version of a run record (runs made before versions existed: 1)."""
    return int(record.get("method_version") or 1)
