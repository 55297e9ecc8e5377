"""Long-lived background processes: start one detached with a pid record, find it again, stop its whole tree.

A pid record holds the pid and the process's start time, so a recycled pid is never mistaken for the process we
started. Stopping covers the process, every descendant (Prefect starts flow runs in sessions of their own, so a
group signal misses them) and any orphan left in its process group; zombies count as gone, since an orphan whose
new parent does not reap it is dead for every purpose but the process table.
"""

from __future__ import annotations

import contextlib
import json
import os
import shlex
import signal
import subprocess
import time
from pathlib import Path

import psutil

from azr_core.common.atomic import atomic_write_text


def alive(proc: psutil.Process) -> bool:
    """Running and not a zombie."""
    try:
        return proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def spawn_detached(cmd: list[str], *, env: dict[str, str], log: Path, pid_file: Path, cwd: Path) -> psutil.Process:
    """Start `cmd` in a session of its own, output appended to `log`, and record it in `pid_file`.

    Its own session: the process and its children form one group we can signal, and a Ctrl-C in the shell that
    started it does not reach them. The process outlives its starter.
    """
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "ab") as fh:
        fh.write(f"\n=== {time.strftime('%Y-%m-%d %H:%M:%S')} start: {shlex.join(cmd)}\n".encode())
        fh.flush()
        popen = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=fh, stderr=subprocess.STDOUT, env=env,
                                 cwd=cwd, start_new_session=True)  # fmt: skip
    popen.returncode = 0  # never waited on through Popen (it outlives us): silences Popen's ResourceWarning
    proc = psutil.Process(popen.pid)
    record = {"pid": proc.pid, "create_time": proc.create_time(), "cmd": cmd}
    atomic_write_text(pid_file, json.dumps(record) + "\n", fsync=False)
    return proc


def recorded_process(pid_file: Path) -> psutil.Process | None:
    """The live process `pid_file` names, if its start time still matches; else None."""
    if not pid_file.is_file():
        return None
    try:
        rec = json.loads(pid_file.read_text(encoding="utf-8"))
        proc = psutil.Process(int(rec["pid"]))
        if abs(proc.create_time() - float(rec["create_time"])) > 1.0:
            return None
    except (psutil.Error, ValueError, KeyError, json.JSONDecodeError):
        return None
    return proc if alive(proc) else None


def log_tail(path: Path, lines: int = 30) -> str:
    """The last `lines` lines of a log file (empty when it does not exist)."""
    try:
        with open(path, "rb") as fh:
            fh.seek(0, os.SEEK_END)
            fh.seek(max(0, fh.tell() - 16384))
            return "\n".join(fh.read().decode("utf-8", "replace").splitlines()[-lines:])
    except OSError:
        return ""


def process_tree(proc: psutil.Process) -> list[psutil.Process]:
    """`proc`, its descendants and any other process still in its process group."""
    procs = {proc.pid: proc}
    with contextlib.suppress(psutil.Error):
        procs.update({c.pid: c for c in proc.children(recursive=True)})
    with contextlib.suppress(OSError, psutil.Error):
        pgid = os.getpgid(proc.pid)
        for p in psutil.process_iter():
            with contextlib.suppress(OSError, psutil.Error):
                if p.pid not in procs and os.getpgid(p.pid) == pgid:
                    procs[p.pid] = p
    return list(procs.values())


def _wait_gone(procs: list[psutil.Process], timeout: float) -> list[psutil.Process]:
    deadline = time.monotonic() + timeout
    while True:
        for p in procs:  # reap our own children so that they do not linger as zombies
            with contextlib.suppress(psutil.Error, ChildProcessError):
                if p.ppid() == os.getpid():
                    p.wait(0)
        left = [p for p in procs if alive(p)]
        if not left or time.monotonic() > deadline:
            return left
        time.sleep(0.1)


def stop_process_tree(
    proc: psutil.Process, *, first: signal.Signals = signal.SIGTERM, grace: float = 10.0
) -> list[int]:
    """Send `first` to `proc`'s group, wait up to `grace` s, then SIGTERM and SIGKILL whatever of its tree is left.

    The tree is taken before any signal: once `proc` exits its children are re-parented and no longer findable.
    Returns the pids still alive at the end (none expected).
    """
    procs = process_tree(proc)
    with contextlib.suppress(OSError, psutil.Error):
        if os.getpgid(proc.pid) == proc.pid:  # a session leader we started: signal its whole group
            os.killpg(proc.pid, first)
        else:
            proc.send_signal(first)
    _wait_gone([proc], grace)
    for sig in (signal.SIGTERM, signal.SIGKILL):
        left = [p for p in procs if alive(p)]
        if not left:
            return []
        for p in left:
            with contextlib.suppress(psutil.Error):
                p.send_signal(sig)
        procs = _wait_gone(left, 5.0)
    return [p.pid for p in procs if alive(p)]
