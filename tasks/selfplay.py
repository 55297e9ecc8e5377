"""One Prefect task per self-play stage. Thin: look up the run's session, call azr_core, log a one-line summary.

Arguments are the run folder and the iteration; results are small dicts. No retries on the stages: they are not
idempotent within an iteration (a failed iteration is dropped whole and redone by the next flow run, which resumes
from the last commit), and a model or sandbox failure is not transient.
"""

from __future__ import annotations

import json
from typing import Any

from prefect import get_run_logger, task

from azr_core.config import AZRConfig
from azr_core.selfplay import commit as commit_mod
from azr_core.selfplay import stages
from azr_core.selfplay.session import close_session, get_session, session_for


def _log(summary: dict[str, Any]) -> dict[str, Any]:
    get_run_logger().info("%s %s", summary.get("stage", ""), json.dumps(summary, default=str))
    return summary


@task(name="open-run", task_run_name="open-run")
def open_run(config: dict[str, Any], flow_run_id: str | None = None) -> dict[str, Any]:
    """Open (or resume) the run folder: store, buffers, sandbox, policy workers, MLflow run."""
    s = get_session(AZRConfig.model_validate(config))
    s.flow_run_id = flow_run_id
    return _log(
        {
            "stage": "open-run",
            "run_dir": str(s.run_dir),
            "last_iteration": s.last_iteration,
            "step": s.step,
            "buffer_sizes": {str(t): s.buffers.size(t) for t in ("deduction", "abduction", "induction")},
        }
    )


@task(name="seed", task_run_name="seed [it {iteration}]")
def seed(run_dir: str, iteration: int) -> dict[str, Any]:
    """Fill buffers below their seed quota with valid proposals of the current model (bounded rounds)."""
    s = session_for(run_dir)
    state = s.begin_iteration()
    if state.iteration != iteration:
        raise RuntimeError(f"expected iteration {iteration}, the store is at {state.iteration}")
    return _log(stages.seed(s, state))


@task(name="propose", task_run_name="propose [it {iteration}]")
def propose(run_dir: str, iteration: int) -> dict[str, Any]:
    """Proposer prompts with K references per task type; generate."""
    s = session_for(run_dir)
    return _log(stages.propose(s, s.state))


@task(name="execute-validate", task_run_name="execute-validate [it {iteration}]")
def execute_validate(run_dir: str, iteration: int) -> dict[str, Any]:
    """Parse, check and run each proposal in the sandbox; record every one with its reason."""
    s = session_for(run_dir)
    return _log(stages.execute_validate(s, s.state))


@task(name="solve", task_run_name="solve [it {iteration}]")
def solve(run_dir: str, iteration: int) -> dict[str, Any]:
    """Solver batches and learnability rollouts."""
    s = session_for(run_dir)
    return _log(stages.solve(s, s.state))


@task(name="reward", task_run_name="reward [it {iteration}]")
def reward(run_dir: str, iteration: int) -> dict[str, Any]:
    """Grade in the sandbox; solver and proposer rewards; TRR++ advantages."""
    s = session_for(run_dir)
    return _log(stages.reward(s, s.state))


@task(name="update", task_run_name="update [it {iteration}]")
def update(run_dir: str, iteration: int) -> dict[str, Any]:
    """One DeepSpeed policy-gradient step; checkpoint."""
    s = session_for(run_dir)
    return _log(stages.update(s, s.state))


@task(name="commit", task_run_name="commit [it {iteration}]")
def commit(run_dir: str, iteration: int) -> dict[str, Any]:
    """Write the iteration's rows, commit, log metrics to MLflow, register the model every K iterations."""
    s = session_for(run_dir)
    return _log(commit_mod.commit(s, s.state))


@task(name="close-run", task_run_name="close-run")
def close_run(run_dir: str) -> None:
    """Stop the policy workers and the sandbox; release the run folder's lock."""
    close_session(run_dir)
