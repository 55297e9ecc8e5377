"""The run folder's writer lock: a second writer is told who holds it; the lock of a SIGKILLed writer never blocks."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from azr_core.store import open_run
from azr_core.store.layout import StoreError

HOLD = "import sys, time; from azr_core.store import open_run; s = open_run(sys.argv[1]); print('open', flush=True); "
HOLD += "time.sleep(600)"


def test_a_second_writer_is_told_who_holds_the_lock_and_a_killed_writer_never_blocks(tmp_path: Path):
    run_dir = tmp_path / "run"
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(run_dir)], stdout=subprocess.PIPE, text=True, env=env)
    try:
        assert holder.stdout.readline().strip() == "open"
        with pytest.raises(StoreError) as info:
            open_run(run_dir)
        text = str(info.value)
        assert f"pid {holder.pid}" in text and "WRITER.lock" in text and "frees itself" in text
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    assert (run_dir / "WRITER.lock").exists()  # the file stays behind a kill -9 ...
    with open_run(run_dir) as store:  # ... and does not block: the kernel dropped the lock with its holder
        assert store.last_iteration == 0
