"""Small file helpers: every result appears atomically, so a killed job never leaves a valid-looking file."""

from __future__ import annotations

import json
import os
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator


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
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, sort_keys=False, default=_json_default) + "\n")


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
    """Run a workflow script's main(); a known data or config problem exits with its message, no traceback."""
    import sys

    from cltm.audio import AudioError
    from cltm.config import ConfigError
    from cltm.corpora import CorpusError
    from cltm.results import StaleRunsError
    from cltm.sampling import SelectionError

    try:
        main()
    except (AudioError, ConfigError, CorpusError, SelectionError, StaleRunsError) as err:
        log(f"ERROR: {err}")
        sys.exit(1)
