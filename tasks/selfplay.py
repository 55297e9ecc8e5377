"""One Prefect task per self-play stage. Thin: call the stage in azr_core, log its one-line summary, pass its typed
result on to the next stage's task (so the UI draws each iteration as its chain).

The session travels quoted (`prefect.utilities.annotations.quote`): Prefect neither walks it nor draws it as an
upstream edge. No retries on the stages: they are not idempotent within an iteration (a failed iteration is dropped
whole and redone by the next flow run, which resumes from the last commit), and a model or sandbox failure is not
transient. No caching: stage inputs are live objects.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE
from prefect.utilities.annotations import quote

from azr_core.config import AZRConfig
from azr_core.selfplay import stages
from azr_core.selfplay.commit import commit as commit_stage
from azr_core.selfplay.session import Session


def _log(summary: dict[str, Any]) -> None:
    get_run_logger().info("%s %s", summary.get("stage", ""), json.dumps(summary, default=str))


class Handoff:
    """A stage's result on its way to the next task. A plain object, not a dataclass: Prefect links a task to the
    results it finds in its inputs, and it walks into dataclasses, where every stage result holds all the earlier
    ones; a handoff links each task to the one before it only."""

    __slots__ = ("value",)

    def __init__(self, value: Any) -> None:
        self.value = value


def _stage(name: str, fn: Callable[..., Any], doc: str):
    @task(name=name, task_run_name=f"{name} [it {{iteration}}]", cache_policy=NO_CACHE)
    def run(session: Session, previous: Any, iteration: int, after: Any = None) -> Handoff:
        # `after` only orders the graph: the first stage of an iteration follows the last commit (or open-run).
        result = fn(session, previous.value if isinstance(previous, Handoff) else previous)
        _log(result if isinstance(result, dict) else result.summary())
        return Handoff(result)

    run.__doc__ = doc
    return run


@task(name="open-run", task_run_name="open-run", cache_policy=NO_CACHE)
def open_run(config: dict[str, Any], flow_run_id: str | None = None) -> Session:
    """Open (or resume) the run folder: store, buffers, sandbox, policy workers, MLflow run."""
    s = Session(AZRConfig.model_validate(config), flow_run_id=flow_run_id)
    _log({"stage": "open-run", "run_dir": str(s.run_dir), "last_iteration": s.last_iteration, "step": s.step})
    return s


seed = _stage("seed", stages.seed, "Seeding (first iteration only): valid proposals of the current model, no update.")
propose = _stage("propose", stages.propose, "Proposer prompts with K references per task type; generate; parse.")
execute_validate = _stage("execute-validate", stages.execute_validate, "Check and run each proposal in the sandbox.")
solve = _stage("solve", stages.solve, "Solver batches and learnability probes.")
reward = _stage("reward", stages.reward, "Grade in the sandbox; solver and proposer rewards; TRR++ advantages.")
update = _stage("update", stages.update, "Old log-probs recomputed; one optimiser step per mini-batch; checkpoint.")
commit = _stage("commit", commit_stage, "Rows to Parquet, COMMITTED, buffers, MLflow metrics and model versions.")

TASKS = {
    stages.seed: seed,
    stages.propose: propose,
    stages.execute_validate: execute_validate,
    stages.solve: solve,
    stages.reward: reward,
    stages.update: update,
    commit_stage: commit,
}


def as_tasks(after: Any) -> Callable[..., Any]:
    """A `call` for `run_iteration` that runs each stage as its Prefect task; the iteration's first task is drawn
    after `after` (the previous commit's summary, or the session open-run returned)."""

    def call(stage: Callable[..., Any], s: Session, previous: Any) -> Any:
        value = previous.value if isinstance(previous, Handoff) else previous
        iteration = value if isinstance(value, int) else value.iteration  # seed gets the iteration
        return TASKS[stage](quote(s), previous, iteration, after=after if stage is stages.seed else None)

    return call
