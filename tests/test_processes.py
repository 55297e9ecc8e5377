"""Detached processes: pid records survive pid reuse checks, and stopping reaches every process of the tree, including
children that left the group (as Prefect's flow runs do) and a parent that ignores its first signal."""

from __future__ import annotations

import json
import os
import signal
import sys
import textwrap
import time

import psutil

from azr_core.stack.processes import alive, log_tail, recorded_process, spawn_detached, stop_process_tree

# A parent that ignores SIGTERM once (like `prefect worker start`) and starts a child in a session of its own.
PARENT = textwrap.dedent("""
    import signal, subprocess, sys, time
    def once(*_):
        print("ignored SIGTERM", flush=True)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGTERM, once)
    subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"], start_new_session=True)
    print("ready", flush=True)
    time.sleep(600)
""")


def test_spawn_record_and_stop_the_whole_tree(tmp_path):
    log, pid_file = tmp_path / "p.log", tmp_path / "p.json"
    proc = spawn_detached([sys.executable, "-c", PARENT], env={}, log=log, pid_file=pid_file, cwd=tmp_path)
    deadline = time.monotonic() + 30
    while "ready" not in log_tail(log).splitlines() and time.monotonic() < deadline:  # the header echoes the code
        time.sleep(0.05)
    assert recorded_process(pid_file).pid == proc.pid
    children = proc.children(recursive=True)
    assert len(children) == 1 and alive(children[0])
    assert os.getpgid(children[0].pid) != os.getpgid(proc.pid)  # out of the group: a group signal misses it

    left = stop_process_tree(proc, first=signal.SIGTERM, grace=1.0)
    assert left == [] and not alive(proc) and not alive(children[0])
    assert "ignored SIGTERM" in log_tail(log).splitlines()
    assert recorded_process(pid_file) is None


def test_a_recycled_pid_is_not_ours(tmp_path):
    pid_file = tmp_path / "p.json"
    me = psutil.Process()
    pid_file.write_text(json.dumps({"pid": me.pid, "create_time": me.create_time() - 1000}))
    assert recorded_process(pid_file) is None
    pid_file.write_text(json.dumps({"pid": me.pid, "create_time": me.create_time()}))
    assert recorded_process(pid_file).pid == me.pid
    pid_file.write_text("garbage")
    assert recorded_process(pid_file) is None
