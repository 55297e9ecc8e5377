"""The policy workers' launcher and commands under faults, with the real `deepspeed` launcher on a CPU rank and a
tiny random model: a command that hangs (the rank stopped with SIGSTOP) times out naming the rank, and the group is
stopped; the launcher SIGKILLed alone (it runs in its own session, its rank lives on) fails the next command clearly,
leaves no process behind, and a new session resumes the run from its last commit with every row once, the
checkpoint loaded and the same MLflow run continued."""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

import psutil
import pytest
from stackutil import assert_each_row_once

from azr_core.config import load_config
from azr_core.policy.config import ModelConfig, RolloutConfig, TrainerConfig
from azr_core.policy.rollout.base import SamplingParams
from azr_core.policy.tiny import make_tiny_model_dir
from azr_core.policy.trainer.client import PolicyWorkers, WorkerError
from azr_core.selfplay.iteration import run_iteration
from azr_core.selfplay.session import Session
from azr_core.store import connect, read_commit

pytestmark = [pytest.mark.slow]


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory) -> Path:
    return make_tiny_model_dir(tmp_path_factory.mktemp("tiny") / "model")


def _ranks(group: PolicyWorkers) -> list[psutil.Process]:
    """The rank processes (not the launcher's `deepspeed.launcher.launch` child, whose arguments name the module)."""
    procs = psutil.Process(group.proc.pid).children(recursive=True)
    return [p for p in procs if any(a.startswith("--local_rank") for a in p.cmdline())
            and "deepspeed.launcher.launch" not in p.cmdline()]  # fmt: skip


def _gone(procs: list[psutil.Process]) -> bool:
    return all(not p.is_running() or p.status() == psutil.STATUS_ZOMBIE for p in procs)


def test_a_hung_command_times_out_naming_the_rank_and_the_group_is_stopped(tiny_dir: Path, tmp_path: Path):
    cfg = TrainerConfig(num_workers=1, zero_stage=0, lr=1e-3, micro_batch_size=2, worker_timeout_s=5)
    group = PolicyWorkers(ModelConfig(name_or_path=str(tiny_dir)), RolloutConfig(batch_size=2), cfg,
                          log_path=tmp_path / "workers.log", start_timeout_s=400).start()  # fmt: skip
    try:
        (rank,) = _ranks(group)
        rank.send_signal(signal.SIGSTOP)  # alive, connected, silent: the worst case for a wait
        began = time.monotonic()
        with pytest.raises(WorkerError, match=r"'generate' timed out after 5s \(ranks \[0\]\)"):
            group.generate(["hello"], SamplingParams(max_new_tokens=4))
        assert time.monotonic() - began < 60
        assert group.proc is None and _gone([rank])  # stopped (SIGKILL reaches a stopped process)
    finally:
        group.close(force=True)


def _cfg(tiny_dir: Path, tmp_path: Path):
    return load_config(None, [
        f"run.run_dir={tmp_path / 'run'}",
        f"model.name_or_path={tiny_dir}",
        f"tracking.tracking_uri=sqlite:///{tmp_path / 'mlflow.db'}",
        "tracking.register_every=1",
        "store.fsync=false",
        "selfplay.prompt_template=raw",
        "selfplay.batch_per_group=1",
        "selfplay.references_k=1",
        "selfplay.induction_inputs=2",
        "selfplay.learnability_rollouts=1",
        "rollout.max_new_tokens=8",
        "rollout.batch_size=4",
        "buffers.seed_max_rounds=0",
    ], profile="cpu-tiny")  # fmt: skip


def test_the_launcher_killed_alone_then_the_run_resumes(tiny_dir: Path, tmp_path: Path):
    cfg = _cfg(tiny_dir, tmp_path)
    with Session(cfg) as s:
        run_iteration(s)
        launcher = psutil.Process(s.policy.proc.pid)
        ranks = _ranks(s.policy)
        assert os.getsid(launcher.pid) != os.getsid(0)  # its own session: a kill of the flow run misses it
        os.kill(launcher.pid, signal.SIGKILL)  # (not psutil's wait: it would reap the child under Popen's feet)
        deadline = time.monotonic() + 30
        while launcher.status() != psutil.STATUS_ZOMBIE and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not _gone(ranks)  # the rank lives on, unsupervised
        with pytest.raises(WorkerError, match="the deepspeed launcher exited with code -9 while its ranks ran on"):
            run_iteration(s)
        deadline = time.monotonic() + 30
        while not _gone(ranks) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert _gone(ranks), "a rank outlived its stopped group"
    assert read_commit(tmp_path / "run").iteration == 1
    run_id = json.loads((tmp_path / "run" / "mlflow_run.json").read_text())["runs"]

    with Session(cfg) as s:  # a new session: new workers, the checkpoint of iteration 1 loaded
        assert s.last_iteration == 1 and s.step == 1
        out = run_iteration(s)
    assert out["committed"] == 2 and out["step"] == 2
    assert json.loads((tmp_path / "run" / "mlflow_run.json").read_text())["runs"] == run_id  # the same MLflow run
    con = connect(tmp_path / "run")
    assert_each_row_once(con)
    assert [r[0] for r in con.execute("SELECT iteration FROM iterations ORDER BY 1").fetchall()] == [0, 1, 2]
