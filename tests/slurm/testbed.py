"""A real single-node SLURM cluster for the tests: munged + slurmctld + slurmd, with one fake GPU.

    python tests/slurm/testbed.py start [DIR]   # install Debian packages if missing, start, print DIR
    python tests/slurm/testbed.py stop DIR      # stop the daemons started in DIR, by their PIDs

The test suite uses `start_cluster` / `stop_cluster` from a session fixture. Everything (config,
state, spool, logs, PID files) lives in one scratch directory. Only one file outside it is
touched: `/etc/slurm/slurm.conf` becomes a symlink to the scratch config, because the
slurm-jobstep plugin drops SLURM_CONF before its inner `srun`. A real configuration there is never
replaced. Needs root and apt-get (Debian/Ubuntu); `unavailable_reason()` says why not otherwise.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

PACKAGES = ["slurm-wlm", "munge"]
COMMANDS = ["slurmctld", "slurmd", "sbatch", "squeue", "sinfo", "srun", "munged"]
ETC_CONF = Path("/etc/slurm/slurm.conf")
MARK = "cltm-slurm-testbed"  # in the scratch directory's name: tells our symlink from a real config
PORTS = (6817, 6818)  # slurmctld, slurmd
GPUS = 2  # fake GPUs: two bundles can run at once on the 2 CPUs of a CI machine


class TestbedUnavailable(RuntimeError):
    """The cluster cannot be started on this machine (not root, no apt, a real SLURM here...)."""


def _which(cmd: str) -> str | None:
    return shutil.which(cmd, path=os.environ.get("PATH", "") + ":/usr/sbin:/sbin")


def _port_busy(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


def unavailable_reason() -> str | None:
    """Why this machine cannot host the test cluster, or None if it can (packages may still be missing)."""
    if sys.platform != "linux":
        return "the SLURM test cluster needs Linux"
    if os.geteuid() != 0:
        return "the SLURM test cluster needs root (it installs slurm-wlm and munge with apt-get and runs the daemons)"
    if not all(_which(c) for c in COMMANDS) and not _which("apt-get"):
        return "slurm-wlm and munge are not installed and there is no apt-get to install them"
    if ETC_CONF.exists() or ETC_CONF.is_symlink():
        if not (ETC_CONF.is_symlink() and MARK in os.readlink(ETC_CONF)):
            return f"{ETC_CONF} is a real SLURM configuration; the test cluster will not replace it"
    busy = [p for p in PORTS if _port_busy(p)]
    if busy:
        return f"port(s) {busy} are in use: another slurmctld/slurmd runs here"
    return None


def install_packages(log=print) -> None:
    """apt-get install slurm-wlm munge, unless their commands are there already."""
    if all(_which(c) for c in COMMANDS):
        return
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    log(f"installing Debian packages {PACKAGES} (apt-get)")
    t0 = time.monotonic()
    subprocess.run(["apt-get", "update", "-qq"], check=True, env=env, capture_output=True)
    proc = subprocess.run(["apt-get", "install", "-y", "-qq", *PACKAGES], env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        raise TestbedUnavailable(f"apt-get install {' '.join(PACKAGES)} failed:\n{proc.stdout[-2000:]}{proc.stderr[-2000:]}")
    log(f"installed in {time.monotonic() - t0:.0f} s")


def _node_line(hostname: str) -> str:
    """`slurmd -C`'s node line with RealMemory cut to 80 % (else the node drains 'Low RealMemory')."""
    out = subprocess.run([_which("slurmd"), "-C"], check=True, capture_output=True, text=True).stdout
    fields = dict(item.split("=", 1) for item in out.splitlines()[0].split())
    fields["NodeName"] = hostname
    fields["RealMemory"] = str(int(int(fields["RealMemory"]) * 0.8))
    return " ".join(f"{k}={v}" for k, v in fields.items()) + f" NodeAddr=127.0.0.1 Gres=gpu:fake:{GPUS} State=UNKNOWN"


def write_config(scratch: Path) -> Path:
    hostname = socket.gethostname().split(".")[0]
    for sub in ("state", "spool", "log", "dev"):
        (scratch / sub).mkdir(parents=True, exist_ok=True)
    for i in range(GPUS):  # /dev/null clones; the trailing digit is the GPU index
        if not (scratch / "dev" / f"nvidia{i}").exists():
            os.mknod(scratch / "dev" / f"nvidia{i}", 0o666 | 0o020000, os.makedev(1, 3))
    conf = scratch / "slurm.conf"
    conf.write_text(f"""# written by tests/slurm/testbed.py: a single-node test cluster, no accounting, no cgroups
ClusterName=cltmtest
SlurmctldHost={hostname}(127.0.0.1)
SlurmctldPort={PORTS[0]}
SlurmdPort={PORTS[1]}
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
MpiDefault=none
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
GresTypes=gpu
SchedulerParameters=sched_interval=1
# finished jobs stay visible an hour: to squeue (the plugin's status checks) and scontrol (the tests)
MinJobAge=3600
DefMemPerCPU=1000
KillWait=10
ReturnToService=2
MailProg=/bin/true
StateSaveLocation={scratch}/state
SlurmdSpoolDir={scratch}/spool
SlurmctldPidFile={scratch}/slurmctld.pid
SlurmdPidFile={scratch}/slurmd.pid
SlurmctldLogFile={scratch}/log/slurmctld.log
SlurmdLogFile={scratch}/log/slurmd.log
{_node_line(hostname)}
PartitionName=debug Nodes={hostname} Default=YES MaxTime=INFINITE State=UP
""")
    (scratch / "gres.conf").write_text(
        f"AutoDetect=off\nNodeName={hostname} Name=gpu Type=fake File={scratch}/dev/nvidia[0-{GPUS - 1}]\n")
    return conf


def _munge_works() -> bool:
    munge, unmunge = _which("munge"), _which("unmunge")
    if not (munge and unmunge):
        return False
    cred = subprocess.run([munge, "-n"], capture_output=True)
    return cred.returncode == 0 and subprocess.run([unmunge], input=cred.stdout, capture_output=True).returncode == 0


def _start_munged(scratch: Path) -> None:
    """Start munged as user munge unless one answers already; record its PID for stop_cluster."""
    if _munge_works():
        return  # a munged of this machine: not ours to stop
    key = Path("/etc/munge/munge.key")
    if not key.exists():
        subprocess.run([_which("mungekey"), "--create", "--keyfile", str(key)], check=True, capture_output=True)
        shutil.chown(key, "munge", "munge")
        key.chmod(0o400)
    run_dir = Path("/run/munge")  # munged's default socket lives here
    run_dir.mkdir(parents=True, exist_ok=True)
    shutil.chown(run_dir, "munge", "munge")
    run_dir.chmod(0o755)
    home = scratch / "munge"
    home.mkdir(exist_ok=True)
    shutil.chown(home, "munge", "munge")
    home.chmod(0o700)
    subprocess.run(["runuser", "-u", "munge", "--", _which("munged"), f"--pid-file={home}/munged.pid",
                    f"--log-file={home}/munged.log", f"--seed-file={home}/munged.seed"], check=True)
    _wait(_munge_works, 20, "munged did not answer", scratch)
    shutil.copy(home / "munged.pid", scratch / "munged.pid")


def _wait(predicate, timeout: float, message: str, scratch: Path) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.3)
    logs = "".join(f"\n--- {p.name}\n{p.read_text()[-1500:]}" for p in sorted((scratch / "log").glob("*.log")))
    raise RuntimeError(f"{message} within {timeout:.0f} s{logs}")


def node_state(scratch: Path) -> str:
    proc = subprocess.run(["sinfo", "-h", "-N", "-o", "%T"], capture_output=True, text=True,
                          env={**os.environ, "SLURM_CONF": str(scratch / "slurm.conf")})
    return proc.stdout.strip() if proc.returncode == 0 else ""


def start_cluster(scratch: str | Path | None = None, log=print) -> Path:
    """Install (if needed) and start the cluster; return its scratch directory once the node is idle."""
    reason = unavailable_reason()
    if reason:
        raise TestbedUnavailable(reason)
    install_packages(log)
    scratch = Path(scratch or tempfile.mkdtemp(prefix=f"{MARK}-"))
    if MARK not in str(scratch):
        raise ValueError(f"the scratch directory's path must contain '{MARK}'")
    scratch.mkdir(parents=True, exist_ok=True)
    scratch.chmod(0o755)
    conf = write_config(scratch)
    ETC_CONF.parent.mkdir(parents=True, exist_ok=True)
    if ETC_CONF.is_symlink():
        ETC_CONF.unlink()  # ours, from an earlier run (checked by unavailable_reason)
    ETC_CONF.symlink_to(conf)
    try:
        _start_munged(scratch)
        env = {**os.environ, "SLURM_CONF": str(conf)}
        subprocess.run([_which("slurmctld"), "-c", "-i", "-f", str(conf)], check=True, env=env)
        subprocess.run([_which("slurmd"), "-f", str(conf)], check=True, env=env)
        _wait(lambda: node_state(scratch) == "idle", 60, "the test node did not become idle", scratch)
    except BaseException:
        stop_cluster(scratch)
        raise
    log(f"SLURM test cluster up in {scratch}")
    return scratch


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
        return True
    except ProcessLookupError:
        return False


def cancel_all_jobs(scratch: Path, timeout: float = 60) -> None:
    """scancel every job of the test cluster (all are ours) and wait until they are gone: with
    proctrack/linuxproc, job processes would outlive a stopped slurmd."""
    env = {**os.environ, "SLURM_CONF": str(scratch / "slurm.conf")}

    def active() -> list[str]:
        proc = subprocess.run(["squeue", "-h", "-t", "PD,R,CG,S,CF", "-o", "%i"], capture_output=True, text=True, env=env)
        return proc.stdout.split() if proc.returncode == 0 else []

    jobs = active()
    if jobs:
        subprocess.run(["scancel", *jobs], capture_output=True, env=env)
        deadline = time.monotonic() + timeout
        while active() and time.monotonic() < deadline:
            time.sleep(1)


def stop_cluster(scratch: str | Path) -> None:
    """Cancel the cluster's jobs, then stop the daemons this scratch directory's PID files name
    (slurmd, slurmctld, then munged)."""
    scratch = Path(scratch)
    if (scratch / "slurmctld.pid").exists():
        cancel_all_jobs(scratch)
    for name in ("slurmd.pid", "slurmctld.pid", "munged.pid"):
        pid_file = scratch / name
        if not pid_file.exists():
            continue
        pid = int(pid_file.read_text().split()[0])
        if _pid_alive(pid):
            os.kill(pid, signal.SIGTERM)
            deadline = time.monotonic() + 15
            while _pid_alive(pid) and time.monotonic() < deadline:
                time.sleep(0.2)
            if _pid_alive(pid):
                os.kill(pid, signal.SIGKILL)
        pid_file.unlink(missing_ok=True)
    if ETC_CONF.is_symlink() and os.readlink(ETC_CONF) == str(scratch / "slurm.conf"):
        ETC_CONF.unlink()


if __name__ == "__main__":
    if sys.argv[1:2] == ["start"]:
        print(start_cluster(sys.argv[2] if len(sys.argv) > 2 else None, log=lambda m: print(m, file=sys.stderr)))
    elif sys.argv[1:2] == ["stop"] and len(sys.argv) == 3:
        stop_cluster(sys.argv[2])
    else:
        sys.exit(__doc__)
