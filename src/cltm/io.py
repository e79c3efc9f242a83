"""Small file helpers: every result appears atomically, so a killed job never leaves a valid-looking file."""

from __future__ import annotations

import json
import math
import os
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from cltm.errors import CltmError

_UMASK = os.umask(0)
os.umask(_UMASK)


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside `path`; move it into place only if the block succeeds."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    os.chmod(tmp_path, 0o666 & ~_UMASK)  # mkstemp makes private files; results are for the whole group
    try:
        yield tmp_path
        os.replace(tmp_path, path)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def write_json(path: str | Path, obj) -> None:
    """Strict JSON, as every reader expects: NaN and infinities become null (never bare `NaN`)."""
    text = json.dumps(json_safe(obj), indent=2, sort_keys=False, allow_nan=False)
    with atomic_path(path) as tmp:
        tmp.write_text(text + "\n")


def json_safe(obj):
    """`obj` with numpy scalars and arrays as Python values and every non-finite float as None."""
    if isinstance(obj, dict):
        return {k: json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_safe(v) for v in obj]
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, (str, int, bool)) or obj is None:
        return obj
    return json_safe(_json_default(obj))


def read_json(path: str | Path):
    return json.loads(Path(path).read_text())


def write_table(path: str | Path, df, **kwargs) -> None:
    """Write a DataFrame as CSV (or TSV for a .tsv path), atomically."""
    sep = "\t" if str(path).endswith(".tsv") else ","
    with atomic_path(path) as tmp:
        df.to_csv(tmp, sep=sep, **kwargs)


def _json_default(obj):
    # numpy scalars and arrays appear in metric dicts
    if hasattr(obj, "item") and getattr(obj, "ndim", 1) == 0:
        return obj.item()
    if hasattr(obj, "tolist"):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def script_logger(path: str | Path | None):
    """A log function for workflow scripts: timestamped lines to the job's log file and to stderr."""
    import sys
    import time

    fh = open(path, "a", buffering=1) if path else None

    def log(message: str) -> None:
        line = f"[{time.strftime('%H:%M:%S')}] {message}"
        print(line, file=sys.stderr, flush=True)
        if fh:
            fh.write(line + "\n")

    return log


def run_script(main, log) -> None:
    """Run a workflow script's main(); a known data, config or results problem (any `cltm.errors.CltmError`,
    which every domain error subclasses) exits with its message, no traceback."""
    import sys

    try:
        main()
    except CltmError as err:
        log(f"ERROR: {err}")
        sys.exit(1)
