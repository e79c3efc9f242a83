"""A warm local worker so that hundreds of short fine-tuning jobs do not each pay the import of
torch and transformers (tens of seconds on a small CPU machine).

`python -m cltm.worker finetune ARGS` is a client that imports only the standard library. It
connects to a per-user, per-checkout worker over a UNIX socket, starting it if needed. The worker
imports the heavy modules once and forks a fresh child for every job (a fork keeps CUDA out of the
worker; a run's result does not depend on its process, its generators being its own: `cltm.train.rng`).
The child sends the job's output back to the client and dies if the client goes away (Ctrl-C, SLURM
kill). The worker exits after `CLTM_WORKER_IDLE` seconds without jobs (default 120). Set
`CLTM_WORKER=0` to run every job in its own process instead.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from cltm.grid.cli import main, preload, restore_only

EXIT_MARK = b"\0cltm-exit "
SRC = Path(__file__).resolve().parents[1]  # the package: an edit in any of its modules starts a new worker


def socket_path() -> Path:
    """One worker per user, Python interpreter and version of the code (a code edit starts a new one),
    and per SLURM job: the runs of one bundle share a worker, which never serves another allocation
    (its GPU, limits and accounting belong to its own job)."""
    stamp = [sys.executable, str(SRC)] + [f"{p.relative_to(SRC)}:{p.stat().st_mtime_ns}"
                                          for p in sorted(SRC.rglob("*.py"))]
    stamp.append(f"slurm:{os.environ.get('SLURM_JOB_ID', '')}")
    key = hashlib.sha1("|".join(stamp).encode()).hexdigest()[:12]
    base = Path(os.environ.get("CLTM_WORKER_DIR", tempfile.gettempdir()))
    return base / f"cltm-worker-{os.getuid()}-{key}.sock"


# ---------------------------------------------------------------- client (standard library only)


def _connect(path: Path) -> socket.socket | None:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        s.connect(str(path))
        return s
    except OSError:
        s.close()
        return None


def _start_worker(path: Path, timeout: float = 600.0) -> socket.socket:
    with open(f"{path}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # one starter at a time; the others find it running
        conn = _connect(path)
        if conn:
            return conn
        path.unlink(missing_ok=True)
        log = open(f"{path}.log", "ab")
        subprocess.Popen([sys.executable, "-m", "cltm.worker", "serve", str(path)], stdin=subprocess.DEVNULL,
                         stdout=log, stderr=log, start_new_session=True, cwd="/")
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            conn = _connect(path)
            if conn:
                return conn
            time.sleep(0.2)
    raise RuntimeError(f"the cltm worker did not start within {timeout:.0f} s; see {path}.log")


def submit(argv: list[str]) -> int:
    """Run `cltm.grid.cli` with argv in the warm worker; stream its output; return its exit code."""
    if restore_only(argv):
        return 0
    if os.environ.get("CLTM_WORKER", "1") == "0":
        return main(argv)
    path = socket_path()
    conn = _connect(path) or _start_worker(path)
    with conn:
        request = {"argv": argv, "cwd": os.getcwd(), "env": dict(os.environ)}
        conn.sendall(json.dumps(request).encode() + b"\n")
        tail, out = b"", sys.stdout.buffer
        while chunk := conn.recv(65536):
            data = tail + chunk
            keep = len(EXIT_MARK) + 8  # hold back what could be the start of the exit mark
            out.write(data[:-keep] if len(data) > keep else b"")
            tail = data[-keep:] if len(data) > keep else data
            out.flush()
    if EXIT_MARK in tail:
        before, _, code = tail.partition(EXIT_MARK)
        out.write(before)
        out.flush()
        return int(code.strip() or 1)
    out.write(tail)
    out.flush()
    print("cltm worker: the job ended without an exit status (killed?)", file=sys.stderr)
    return 1


# ---------------------------------------------------------------- worker


def _child(conn: socket.socket, request: dict) -> None:
    """In the forked child: become the job (its cwd, env, stdout/stderr = the client's socket)."""
    os.setsid()
    os.chdir(request["cwd"])
    os.environ.clear()
    os.environ.update(request["env"])
    fd = conn.fileno()
    sys.stdout.flush()
    sys.stderr.flush()
    os.dup2(fd, 1)
    os.dup2(fd, 2)

    def watchdog():  # the client never writes again: EOF means it is gone, so the job must go too
        try:
            conn.recv(1)
        finally:
            os._exit(143)

    threading.Thread(target=watchdog, daemon=True).start()
    code = 1
    try:
        code = main(request["argv"])
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    except BaseException:  # noqa: BLE001 - report anything, the client decides
        import traceback

        traceback.print_exc()
    sys.stdout.flush()
    sys.stderr.flush()
    os.write(fd, EXIT_MARK + str(code).encode() + b"\n")
    os._exit(0)


def serve(path: str, idle: float | None = None) -> None:
    idle = float(os.environ.get("CLTM_WORKER_IDLE", "120")) if idle is None else idle
    # the point of the worker: torch and transformers imported once, here, not in the client (which
    # imports only the standard library and this package's light modules); the tasks' metrics too
    # (scikit-learn, about a second), which every run imports when it scores and a forked child would again
    import cltm.grid.job  # noqa: F401
    import cltm.tasks.metrics  # noqa: F401

    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(path)
    server.listen(64)
    slurm = os.environ.get("SLURM_JOB_ID")
    print(f"{time.strftime('%Y-%m-%d %H:%M:%S')} worker {os.getpid()} serving {path}"
          + (f" for SLURM job {slurm}" if slurm else ""), flush=True)
    server.settimeout(5.0)
    children, last = set(), time.monotonic()
    try:
        while True:
            for pid in list(children):
                if os.waitpid(pid, os.WNOHANG)[0]:
                    children.discard(pid)
                    last = time.monotonic()
            try:
                conn, _ = server.accept()
            except socket.timeout:
                if not children and time.monotonic() - last > idle:
                    break
                continue
            conn.settimeout(None)
            request = json.loads(conn.makefile("rb").readline())
            try:  # shared state (the encoder) is loaded once here; any problem is the child's to report
                os.chdir(request["cwd"])
                preload(request["argv"])
            except BaseException:  # noqa: BLE001
                pass
            finally:
                os.chdir("/")
            pid = os.fork()
            if pid == 0:
                server.close()
                _child(conn, request)
            conn.close()
            children.add(pid)
    finally:
        server.close()
        Path(path).unlink(missing_ok=True)


def entry(argv: list[str]) -> int:
    """`python -m cltm.worker serve PATH` (the worker itself) or `python -m cltm.worker ARGS` (a client)."""
    if argv[:1] == ["serve"]:
        serve(argv[1])
        return 0
    return submit(argv)
