"""The policy workers' start-up under faults, with the real `deepspeed` launcher on CPU ranks.

A stale torch extension build lock (the owner SIGKILLed) is cleared, a live one never; a worker group killed while
building its DeepSpeed helper leaves such a lock, and the next group still comes up; the command channel refuses peers
without the token; the token appears in no command line and no log.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import psutil
import pytest

from azr_core.policy.config import ModelConfig, RolloutConfig, TrainerConfig
from azr_core.policy.tiny import make_tiny_model_dir
from azr_core.policy.trainer.build_locks import clear_stale_build_locks, holders
from azr_core.policy.trainer.client import PolicyWorkers, WorkerError
from azr_core.policy.trainer.protocol import send_msg

HOLD_BATON = "import sys, time; from torch.utils.file_baton import FileBaton; b = FileBaton(sys.argv[1]); "
HOLD_BATON += "assert b.try_acquire(); print('held', flush=True); time.sleep(600)"


def _hold_lock(path: Path) -> subprocess.Popen:
    path.parent.mkdir(parents=True, exist_ok=True)
    proc = subprocess.Popen([sys.executable, "-c", HOLD_BATON, str(path)], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "held"
    return proc


def test_a_build_lock_is_cleared_only_when_its_owner_is_dead(tmp_path: Path):
    lock = tmp_path / "py311_cpu" / "deepspeed_shm_comm" / "lock"
    owner = _hold_lock(lock)
    try:
        assert holders(lock) == [owner.pid]
        assert clear_stale_build_locks(tmp_path, settle_s=0.2) == []  # a live owner keeps its lock
        assert lock.exists()
    finally:
        owner.send_signal(signal.SIGKILL)
        owner.wait()
    assert lock.exists() and holders(lock) == []  # what a SIGKILL leaves: the file, no owner
    assert clear_stale_build_locks(tmp_path, settle_s=0.2) == [lock]
    assert not lock.exists()


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory) -> Path:
    return make_tiny_model_dir(tmp_path_factory.mktemp("tiny") / "model")


def _group(tiny_dir: Path, log: Path, start_timeout_s: float = 400) -> PolicyWorkers:
    cfg = TrainerConfig(num_workers=1, zero_stage=0, lr=1e-3, micro_batch_size=2, worker_timeout_s=120)
    return PolicyWorkers(ModelConfig(name_or_path=str(tiny_dir)), RolloutConfig(batch_size=2), cfg, log_path=log,
                         start_timeout_s=start_timeout_s)  # fmt: skip


def _start_in_thread(group: PolicyWorkers) -> tuple[threading.Thread, list[BaseException]]:
    errors: list[BaseException] = []

    def run() -> None:
        try:
            group.start()
        except BaseException as exc:  # noqa: BLE001 - handed to the test thread
            errors.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, errors


def _wait_for(cond, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


@pytest.mark.slow
def test_the_channel_refuses_peers_without_the_token_and_the_token_stays_secret(tiny_dir: Path, tmp_path: Path):
    group = _group(tiny_dir, tmp_path / "logs" / "workers.log")
    thread, errors = _start_in_thread(group)
    try:
        _wait_for(lambda: group.proc is not None, 60, "the launcher")
        cmd = group.proc.args
        port = int(cmd[cmd.index("--connect") + 1].rsplit(":", 1)[1])
        assert "--token" not in cmd and group._token not in " ".join(cmd)
        token_file = Path(cmd[cmd.index("--token-file") + 1])
        assert token_file.stat().st_mode & 0o077 == 0  # readable by this user only

        # Peers that connect first: one without a token, one with a wrong one, one that says nothing at all.
        refused = []
        for hello in ({"hello": 0}, {"hello": 0, "token": "0" * 32}):
            with socket.create_connection(("127.0.0.1", port), timeout=30) as impostor:
                send_msg(impostor, hello)
                refused.append(impostor.recv(1) == b"")  # closed on us, no init sent
        silent = socket.create_connection(("127.0.0.1", port), timeout=30)
        assert refused == [True, True]

        thread.join(400)
        assert not errors, errors
        assert group.refused_peers >= 2
        assert group.ping()[0]["rank"] == 0  # the real worker got through
        assert not token_file.exists()  # removed once every rank connected

        procs = [psutil.Process(group.proc.pid), *psutil.Process(group.proc.pid).children(recursive=True)]
        for proc in procs:
            assert group._token not in " ".join(proc.cmdline()), proc.cmdline()
        assert group._token not in group.log_path.read_text(errors="replace")
        silent.close()
    finally:
        group.close()


@pytest.mark.slow
def test_a_group_killed_while_building_its_helper_does_not_stall_the_next(
    tiny_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    # A fresh extensions folder: the first group must compile DeepSpeed's shm helper (~30 s), and is killed then.
    ext = tmp_path / "torch_extensions"
    monkeypatch.setenv("TORCH_EXTENSIONS_DIR", str(ext))
    first = _group(tiny_dir, tmp_path / "first.log")
    thread, errors = _start_in_thread(first)
    _wait_for(lambda: any(ext.glob("**/lock")), 300, "the helper's build lock")
    os.killpg(first.proc.pid, signal.SIGKILL)  # launcher and rank, as a kill -9 of the flow run's tree would
    thread.join(120)
    assert errors and isinstance(errors[0], WorkerError)  # the start reports the death ("exited", "died")
    locks = list(ext.glob("**/lock"))
    assert locks and all(holders(p) == [] for p in locks)  # the stale lock that used to hang every later run

    second = _group(tiny_dir, tmp_path / "second.log", start_timeout_s=600)
    try:
        t0 = time.monotonic()
        second.start()
        print(f"new group up {time.monotonic() - t0:.0f} s after the kill; load {os.getloadavg()}")
        assert second.ping()[0]["rank"] == 0
        assert "removed a stale torch extension build lock" in second.log_path.read_text(errors="replace")
    finally:
        second.close()
