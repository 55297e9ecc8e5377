"""A self-play session: the long-lived parts of a run (store, buffers, executor, policy workers, tracker), opened on a
run folder and shared by the stages of every iteration. Its lifetime is a `with` block:

    with Session(cfg) as s:
        for _ in range(3):
            run_iteration(s)


Opening resumes: the store drops rows of an uncommitted iteration, the buffers are read back from the committed
tasks, the policy workers load the checkpoint named by the last commit, and the MLflow run of the folder is reused.
The store's lock refuses a second writer on the same folder.
"""

from __future__ import annotations

import logging
import random
import shutil
from pathlib import Path
from typing import Any

from azr_core.algo.buffers import TaskBuffers, task_to_row
from azr_core.algo.types import enabled
from azr_core.config import AZRConfig
from azr_core.executor import Executor
from azr_core.policy.interface import Policy
from azr_core.store import connect, open_run
from azr_core.tracking.runs import TAG_FLOW_RUN, Tracker, end_status

log = logging.getLogger("azr.selfplay")


class Session:
    """Everything an iteration's stages share. Use as a context manager (or call `close()`): it releases the policy
    workers, the sandbox, the MLflow run and the run folder's lock."""

    def __init__(
        self, cfg: AZRConfig, *, policy: Policy | None = None, tokenizer: Any = None, flow_run_id: str | None = None
    ) -> None:
        self.cfg = cfg
        self.run_dir = Path(cfg.run.run_dir).resolve()
        self.flow_run_id = flow_run_id  # the Prefect flow run: tags the model versions it registers
        self.types = enabled(cfg.selfplay.task_types)  # the run's task types, in order (azr_core.algo.types)
        zero = [task_to_row(t) for spec in self.types for t in spec.zero_tasks()]
        self.store = open_run(self.run_dir, cfg, zero)  # takes the lock, removes uncommitted rows, commits the seeds
        try:
            with connect(self.run_dir) as con:
                self.buffers = TaskBuffers.from_connection(con)
            self.rng = random.Random(f"{cfg.run.seed}:{self.store.last_iteration}")
            self.tokenizer = tokenizer if tokenizer is not None else _load_tokenizer(cfg)
            self.policy = policy if policy is not None else _start_workers(cfg, self.run_dir)
            self.executor = _sandbox(cfg, self.policy)
            self.step = self._resume_policy()
            self._remove_partial_checkpoints()
            # The run's tag names the flow run that last opened it: `azr status --run` links to it.
            flow_tag = {TAG_FLOW_RUN: flow_run_id} if flow_run_id else None
            self.tracker = Tracker(self.run_dir, cfg.tracking, run_name=cfg.run.name, tags=flow_tag)
            self.tracker.log_config(cfg)
            self.unpublished: list[int] = []  # committed iterations MLflow has not received yet (an outage)
            from azr_core.selfplay.commit import repair_commits  # here: commit imports this module

            repair_commits(self)
        except BaseException:
            self.close()
            raise

    def __enter__(self) -> Session:
        return self

    def __exit__(self, exc_type: object, exc: BaseException | None, tb: object) -> None:
        # The MLflow run ends FINISHED only on success: FAILED for an error, KILLED for a signal or a cancellation.
        self.close(end_status(exc), reason=f"{type(exc).__name__}: {exc}" if exc is not None else None)

    @property
    def last_iteration(self) -> int:
        return self.store.last_iteration

    def checkpoint_dir(self, iteration: int) -> Path:
        root = self.cfg.trainer.checkpoint_dir or (self.run_dir / "checkpoints")
        return Path(root) / f"{iteration:06d}"

    def prune_checkpoints(self, keep: int) -> None:
        """Keep the newest `keep` checkpoints: each holds the optimiser state too (GBs for a 135M model)."""
        root = self.checkpoint_dir(0).parent
        found = sorted(p for p in root.glob("[0-9]*") if p.is_dir())
        for old in found[:-keep] if keep > 0 else []:
            shutil.rmtree(old, ignore_errors=True)

    def _remove_partial_checkpoints(self) -> None:
        """A checkpoint write killed half-way leaves `.<name>.partial` (never a committed checkpoint): drop it."""
        root = self.checkpoint_dir(0).parent
        for leftover in root.glob(".*.partial") if root.is_dir() else []:
            log.warning("removing %s, left by a checkpoint write that never finished", leftover)
            shutil.rmtree(leftover, ignore_errors=True)

    def close(self, status: str = "FINISHED", *, reason: str | None = None) -> None:
        """Release everything; the MLflow run ends with `status` (see `azr_core.tracking.runs.end_status`)."""
        for name in ("policy", "executor"):
            part = getattr(self, name, None)
            if part is not None:
                try:
                    part.close()
                except Exception:  # noqa: BLE001 - closing must go on to release the rest
                    log.exception("closing %s failed", name)
        tracker = getattr(self, "tracker", None)
        if tracker is not None:
            try:
                tracker.close(status, reason=reason)
            except Exception:  # noqa: BLE001 - MLflow down: the next session sets the run's status again
                log.exception("could not end the MLflow run as %s (tracking unreachable?)", status)
        store = getattr(self, "store", None)
        if store is not None:
            store.close()

    def _resume_policy(self) -> int:
        commit = self.store.committed
        if commit is None or not commit.checkpoint_id:
            return 0
        path = self.checkpoint_dir(int(commit.checkpoint_id))
        if not path.exists():
            raise FileNotFoundError(
                f"the last commit of {self.run_dir} names checkpoint {commit.checkpoint_id}, but {path} is missing: "
                "restore it, or start a new run folder"
            )
        log.info("resuming policy from %s", path)
        return int(self.policy.load_checkpoint(path))


def _load_tokenizer(cfg: AZRConfig) -> Any:
    from azr_core.policy.model import load_tokenizer, resolve_model_path

    return load_tokenizer(cfg.model, path=resolve_model_path(cfg.model))


def _start_workers(cfg: AZRConfig, run_dir: Path) -> Policy:
    from azr_core.policy.trainer.client import PolicyWorkers

    workers = PolicyWorkers(cfg.model, cfg.rollout, cfg.trainer, log_path=run_dir / "logs" / "workers.log",
                            executor=cfg.executor)  # fmt: skip
    return workers.start()


def _sandbox(cfg: AZRConfig, policy: Policy) -> Any:
    """The executor: a pool beside the driver, or (executor.placement=hosts) the pools of the worker group's hosts."""
    if cfg.executor.placement == "driver":
        return Executor(cfg.executor).start()
    from azr_core.policy.trainer.client import PolicyWorkers
    from azr_core.policy.trainer.sandboxes import HostSandboxes

    if not isinstance(policy, PolicyWorkers):
        raise ValueError("executor.placement=hosts runs the sandbox on the policy's worker hosts, and this session's "
                         "policy is not a worker group: set executor.placement=driver")  # fmt: skip
    return HostSandboxes(policy)
