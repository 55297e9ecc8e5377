"""Stopping a `deepspeed` launcher and every rank it started: they share its process group (started with
`start_new_session`), and the ranks may outlive a launcher that died first."""

from __future__ import annotations

import os
import signal
import subprocess
import time


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def stop_process_group(proc: subprocess.Popen, grace_s: float) -> None:
    """SIGTERM, then SIGKILL, to a launcher's process group, each time waiting until no member is left (the
    launcher may be dead already, its ranks still running)."""
    pgid = proc.pid
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(pgid, sig)
        except ProcessLookupError:
            break
        deadline = time.monotonic() + grace_s
        while _group_alive(pgid) and time.monotonic() < deadline:
            try:
                proc.wait(timeout=0.1)  # reaps the launcher, which would count as a member otherwise
            except subprocess.TimeoutExpired:
                pass
        if not _group_alive(pgid):
            break
