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
from azr_core.selfplay.commit import register_last
from azr_core.selfplay.session import Session


def _log(summary: dict[str, Any]) -> None:
    get_run_logger().info("%s %s", summary.get("stage", ""), json.dumps(summary, default=str))


class Handoff:
    """A stage's result on its way to the next task. A plain object, not a dataclass: Prefect links a task to the
    results it finds in its inputs, and it walks into dataclasses, where a stage result holds the one before it and
    the iteration's whole batch; a handoff links each task to the one before it only."""

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
#: The event a registered model version emits; the `evaluate` deployment's trigger (prefect.yaml) listens for it.
MODEL_REGISTERED = "azr.model.registered"


def announce_version(s: Session, summary: dict[str, Any]) -> dict[str, Any] | None:
    """Emit MODEL_REGISTERED for the version the commit registered (if any, and `evaluation.on_register`): the payload
    holds everything the evaluation needs. Returns the payload. Evaluation then runs as its own flow run: minutes of
    CPU generation must not hold back training, and its failure must not fail a committed iteration."""
    version, ev = summary.get("model_version"), s.cfg.evaluation
    if version is None or not ev.on_register:
        return None
    from prefect.events import emit_event

    name = s.cfg.tracking.registered_model
    payload = {
        "model": f"models:/{name}/{version}",
        "version": str(version),
        "iteration": summary["committed"],
        "run_dir": str(s.run_dir),
        "tracking_uri": s.tracker.tracking_uri,
        "suite": ev.suite,
        "limit": ev.limit,
        "max_new_tokens": ev.max_new_tokens,
        "template": ev.template,
        "promote": ev.promote,
    }
    emit_event(
        event=MODEL_REGISTERED,
        resource={"prefect.resource.id": f"azr.model.{name}.{version}", "prefect.resource.name": f"{name} v{version}"},
        payload=payload,
    )
    get_run_logger().info("announced %s for evaluation (%s)", payload["model"], MODEL_REGISTERED)
    return payload


def _commit_and_announce(s: Session, updated: Any) -> dict[str, Any]:
    summary = commit_stage(s, updated)
    return {**summary, "announced": announce_version(s, summary) is not None}


commit = _stage("commit", _commit_and_announce, "Rows to Parquet, COMMITTED, buffers, MLflow metrics and model "
                "versions; a registered version is announced for evaluation.")  # fmt: skip


@task(name="register", task_run_name="register [it {iteration}]", cache_policy=NO_CACHE)
def register(session: Session, iteration: int, after: Any = None) -> dict[str, Any]:
    """The end of the flow run: its last committed iteration as a model version (unless its commit registered it
    already), announced for evaluation like any other. `after` only orders the graph (the last commit)."""
    summary = register_last(session)
    if summary["new"]:
        summary["announced"] = announce_version(session, summary) is not None
    _log(summary)
    return summary


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
        if stage is stages.resample:  # a decision, not a stage: no task of its own, the plain value out
            return stage(s, value)
        iteration = value if isinstance(value, int) else value.iteration  # seed gets the iteration
        return TASKS[stage](quote(s), previous, iteration, after=after if stage is stages.seed else None)

    return call
