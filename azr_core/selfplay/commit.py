"""The commit stage: the iteration's rows go to Parquet, COMMITTED is rewritten last, then buffers, metrics and the
model registry catch up. Until the COMMITTED rename nothing of the iteration is visible; after it, a crash in the
steps that follow is repaired on resume (metrics are re-logged with the same step, registration is idempotent), and
an MLflow outage defers them to the next commit that reaches the server (`publish_or_defer`)."""

from __future__ import annotations

import statistics
import time
from collections import Counter, defaultdict
from datetime import UTC, datetime
from typing import Any

from azr_core.algo.buffers import task_to_row
from azr_core.algo.proposer_measures import (
    Novelty,
    ProposalFacts,
    ProposalMeasures,
    measure_proposals,
    proposer_metrics,
)
from azr_core.algo.types import get as task_type_spec
from azr_core.selfplay.records import IterationRecord, ProposalRollout, SolveRollout, Updated, reason_category, share
from azr_core.selfplay.session import Session, log


def commit(s: Session, updated: Updated) -> dict[str, Any]:
    """Write the iteration, commit it, add its tasks to the buffers, log metrics, register the checkpoint."""
    t0 = time.perf_counter()
    rec = IterationRecord.of(updated)
    try:
        measures, proposer = measure_iteration(s, rec)
    except Exception as exc:  # noqa: BLE001 - measures describe the iteration: a failure in them must not lose it
        log.warning("proposer measures of iteration %d failed, written as nulls: %r", rec.iteration, exc)
        measures, proposer = {}, {}
    for task in rec.new_tasks:  # seed tasks joined the buffers when they were validated
        s.buffers.add(task)
    metrics = iteration_metrics(s, rec, proposer)
    finished = datetime.now(UTC)
    started = finished.timestamp() - sum(rec.stage_seconds.values())
    with s.store.begin(rec.iteration) as w:
        w.write("proposals", [_proposal_row(p, measures.get(p.proposal_id)) for p in rec.all_proposals])
        w.write("tasks", [task_to_row(t) for t in rec.all_tasks])
        w.write(
            "rollouts",
            [_proposal_rollout_row(p) for p in rec.all_proposals] + [_solve_row(x) for x in rec.solves + rec.probes],
        )
        w.write(
            "iterations",
            [
                {
                    "stage": "train",
                    "step": rec.step,
                    "checkpoint_id": rec.checkpoint_id,
                    "started_at": datetime.fromtimestamp(started, UTC),
                    "finished_at": finished,
                    "wall_s": sum(rec.stage_seconds.values()),
                    "metrics": metrics,
                }
            ],
        )
        w.commit(rec.checkpoint_id)
    s.prune_checkpoints(s.cfg.run.keep_checkpoints)
    seconds = dict(rec.stage_seconds, commit=time.perf_counter() - t0)
    t_compact = time.perf_counter()
    try:
        # After the commit point: a crash here loses nothing (see compaction.py), and a failure (a full disk) must not
        # fail an iteration that is already committed; the next commit tries again.
        if s.store.maybe_compact() is not None:
            seconds["compact"] = time.perf_counter() - t_compact
    except Exception as exc:  # noqa: BLE001
        log.warning("compaction after iteration %d failed, retried after the next commit: %r", rec.iteration, exc)
    t1 = time.perf_counter()
    version = publish_or_defer(s, rec.iteration, {**metrics, "seconds/commit": seconds["commit"]})
    seconds["tracking"] = time.perf_counter() - t1
    return {
        "iteration": rec.iteration,
        "stage": "commit",
        "seconds": round(seconds["commit"], 3),
        "committed": rec.iteration,
        "new_tasks": len(rec.all_tasks),
        "step": rec.step,
        "model_version": version,
        "tracking_s": round(seconds["tracking"], 3),
        "stage_seconds": {k: round(v, 3) for k, v in seconds.items()},
        "buffer_sizes": {str(t.name): s.buffers.size(t.name) for t in s.types},
    }


_MARKER = "train/step"  # every committed iteration logs it: its presence at a step means the metrics were logged


def publish(s: Session, iteration: int, metrics: dict[str, float]) -> str | None:
    """What follows the commit point, idempotent so that a resume can repair a crash in it: the iteration's metrics
    to MLflow (unless already logged at that step), and its model version when one is due (the registry's own
    check makes a second registration return the first). Returns the version, if any."""
    tracker = s.tracker
    if tracker.run_id is not None:
        logged = {m.step for m in tracker.client.get_metric_history(tracker.run_id, _MARKER)}
        if iteration not in logged:
            tracker.log_metrics(metrics, step=iteration)
    final = s.cfg.run.iterations <= iteration
    if not tracker.should_register(iteration, final=final):
        return None
    mv = tracker.register_checkpoint(s.checkpoint_dir(iteration), iteration, flow_run_id=s.flow_run_id)
    return getattr(mv, "version", None)


def register_last(s: Session) -> dict[str, Any]:
    """The end of a flow run: its last committed iteration as a model version, unless the commit registered it
    already (`register_every`, the run's final iteration), so every flow run leaves a version to evaluate.
    `tracking.register_every=0` still registers nothing. `new` says whether a version was made here (to announce).

    A tracking failure is reported, not raised: the iterations are committed, and training must not fail with it."""
    it, tracker = s.last_iteration, s.tracker
    out: dict[str, Any] = {"stage": "register", "iteration": it, "committed": it, "model_version": None, "new": False}
    if it < 1 or not tracker.should_register(it, final=True):
        return out
    if it in s.unpublished:  # MLflow was down at its commit: the next session publishes it first
        return {**out, "error": f"iteration {it} is not yet published to MLflow (tracking unreachable)"}
    try:
        mv = tracker.registered_version(it)
        new = mv is None
        if new:
            mv = tracker.register_checkpoint(s.checkpoint_dir(it), it, flow_run_id=s.flow_run_id)
    except Exception as exc:  # noqa: BLE001 - any tracking error: an unreachable server, a refused request
        log.warning("registering iteration %d at the end of the flow run failed: %r", it, exc)
        return {**out, "error": f"{type(exc).__name__}: {str(exc)[:300]}"}
    return {**out, "model_version": getattr(mv, "version", None), "new": new}


def publish_or_defer(s: Session, iteration: int, metrics: dict[str, float]) -> str | None:
    """Publish the iterations an MLflow outage left behind, then this one. The iteration is committed already: a
    tracking failure must not fail it. So training goes on, the iteration waits in `s.unpublished`, and the next commit
    that reaches MLflow (or the next session's `repair_commits`) publishes it, each exactly once."""
    try:
        if s.unpublished:
            committed = _committed_metrics(s)
            for it in list(s.unpublished):
                publish(s, it, committed[it])
                s.unpublished.remove(it)
                log.info("MLflow is back: iteration %d published", it)
        return publish(s, iteration, metrics)
    except Exception as exc:  # noqa: BLE001 - any tracking error: an unreachable server, a refused request
        s.unpublished.append(iteration)
        log.warning(
            "MLflow unreachable after iteration %d was committed (%s: %s); training goes on, and iterations %s are "
            "published when tracking answers again", iteration, type(exc).__name__, str(exc)[:300], s.unpublished,
        )  # fmt: skip
        return None


def _committed_metrics(s: Session) -> dict[int, dict[str, float]]:
    """The metrics of every committed training iteration, as the iterations table holds them."""
    from azr_core.store import connect

    with connect(s.run_dir) as con:
        rows = con.execute("SELECT iteration, metrics FROM iterations WHERE stage = 'train'").fetchall()
    return {iteration: dict(metrics) for iteration, metrics in rows}


def repair_commits(s: Session) -> None:
    """On resume: publish every committed iteration MLflow lacks (a crash between COMMITTED and the end of the MLflow
    logging, or an outage the last session did not outlive), and the last one again (its model version may be
    missing). A no-op when all is there."""
    tracker = s.tracker
    if s.last_iteration < 1 or tracker.run_id is None:
        return
    logged = {m.step for m in tracker.client.get_metric_history(tracker.run_id, _MARKER)}
    for iteration, metrics in sorted(_committed_metrics(s).items()):
        if iteration not in logged or iteration == s.last_iteration:
            publish(s, iteration, metrics)


def measure_iteration(s: Session, rec: IterationRecord) -> tuple[dict[str, ProposalMeasures], dict[str, float]]:
    """The proposer measures of every proposal of the iteration (by proposal id) and their per-type metrics
    (`azr_core.algo.proposer_measures`): seeding's proposals first, then the training batch's, each compared with the
    buffers as they were before the iteration and with the proposals before it."""
    t0 = time.perf_counter()
    novelty = Novelty(*s.buffers.novelty_index(), iteration=rec.iteration)
    cache: dict[str, dict] = {}
    seed = [_facts(p) for p in rec.seed_proposals]
    measured = measure_proposals(seed, novelty, cache)
    novelty.add_tasks(rec.seed_tasks)  # seeding buffers each program twice (deduction and abduction)
    train = [_facts(p) for p in rec.proposals]
    measured += measure_proposals(train, novelty, cache)
    metrics = proposer_metrics(seed + train, measured, {t.name: t.proposes_program for t in s.types})
    metrics["seconds/proposer_measures"] = time.perf_counter() - t0
    return {p.proposal_id: x for p, x in zip(rec.all_proposals, measured, strict=True)}, metrics


def _facts(p: ProposalRollout) -> ProposalFacts:
    task = p.outcome.task if p.valid and p.outcome else None
    refs = tuple(t.program for t in p.references)
    writes = task_type_spec(p.task_type).proposes_program
    return ProposalFacts(p.task_type, task, refs, p.solve_rate, counted=p.stage == "propose", writes_program=writes)


def iteration_metrics(s: Session, rec: IterationRecord, proposer: dict[str, float] | None = None) -> dict[str, float]:
    """Flat named metrics of one iteration (Parquet `iterations.metrics` and MLflow share the names). Buffer sizes
    are taken after the iteration's own additions. `proposer`: the proposer measures' metrics (`measure_iteration`)."""
    m: dict[str, float] = dict(proposer or {})
    for t in (spec.name for spec in s.types):
        mine = [p for p in rec.proposals if p.task_type == t]
        m[f"proposals/{t}"] = len(mine)
        m[f"valid_rate/{t}"] = share(p.valid for p in mine)
        m[f"format_rate/propose/{t}"] = share(p.format_ok for p in mine)
        m[f"distinct_new_rate/{t}"] = share(p.valid and not p.duplicate for p in mine)
        for reason, n in Counter(reason_category(p.outcome.reason) for p in mine if p.outcome and not p.valid).items():
            m[f"invalid/{t}/{reason}"] = n
        m[f"new_tasks/{t}"] = sum(1 for x in rec.new_tasks if x.task_type == t)
        m[f"buffer_size/{t}"] = s.buffers.size(t)
        solves = [x for x in rec.solves if x.task.task_type == t]
        m[f"solve_accuracy/{t}"] = share(x.correct for x in solves)  # the reward's verdict
        m[f"format_rate/solve/{t}"] = share(x.format_ok for x in solves)
        probes = [x for x in rec.probes if x.task.task_type == t]
        if probes:
            m[f"learnability_accuracy/{t}"] = share(x.correct for x in probes)
    m["attempts"] = rec.attempts
    m["seed/proposals"] = len(rec.seed_proposals)
    m["seed/valid"] = sum(p.valid for p in rec.seed_proposals)
    m["seed/tasks"] = len(rec.seed_tasks)
    for role, n in rec.filtered_prompts.items():
        m[f"filtered_prompts/{role}"] = n
    groups: dict[str, list[ProposalRollout | SolveRollout]] = defaultdict(list)
    for b in rec.batch:
        groups[b.group].append(b)
    m.update(_reward_part_metrics(groups))
    advantages = []
    for name, members in groups.items():
        rewards = [b.reward for b in members if b.reward is not None]
        if rewards:
            m[f"reward_mean/{name}"] = statistics.fmean(rewards)
        advantages += [b.advantage for b in members if b.advantage is not None]
    m["groups/live"] = len({b.group for b in rec.batch if b.advantage})
    if advantages:
        m["advantage/mean"] = statistics.fmean(advantages)
        m["advantage/std"] = statistics.pstdev(advantages)
        m["advantage/abs_max"] = max(abs(a) for a in advantages)
        m["advantage/nonzero"] = sum(1 for a in advantages if a)
    m["tokens/generated"] = sum(len(p.completion.token_ids) for p in rec.all_proposals) + sum(
        len(x.completion.token_ids) for x in rec.solves + rec.probes
    )
    for stage, seconds in rec.stage_seconds.items():
        m[f"seconds/{stage}"] = seconds
    ex = s.executor.stats
    m["executor/executions"] = ex["executions"]
    m["executor/timeouts"] = ex["timeouts"]
    exec_s = rec.stage_seconds.get("execute_validate", 0.0) + rec.stage_seconds.get("reward", 0.0)
    m["executor/worker_restarts"] = s.executor.worker_restarts
    if exec_s > 0:
        m["executor/executions_per_s"] = ex["executions"] / max(exec_s, 1e-9)
    for key, value in rec.train_metrics.items():
        m[f"train/{key}"] = float(value)
    m["train/step"] = rec.step
    return {k: float(v) for k, v in m.items()}


def _reward_part_metrics(groups: dict[str, list[ProposalRollout | SolveRollout]]) -> dict[str, float]:
    """Per part of the reward (azr_core.algo.reward_parts), role and task type: the mean reward it gave and the share of
    the group's rollouts it decided."""
    m: dict[str, float] = {}
    for name, members in groups.items():
        by_part: dict[str, list[float]] = defaultdict(list)
        for b in members:
            if b.reward_part is not None and b.reward is not None:
                by_part[b.reward_part].append(b.reward)
        for part, rewards in by_part.items():
            m[f"reward/{part}/{name}"] = statistics.fmean(rewards)
            m[f"reward_share/{part}/{name}"] = len(rewards) / len(members)
    return m


def _proposal_row(p: ProposalRollout, x: ProposalMeasures | None = None) -> dict[str, Any]:
    c, o = p.candidate, p.outcome
    task = o.task if o else None
    return {
        "proposal_id": p.proposal_id,
        "task_type": str(p.task_type),
        "stage": p.stage,
        "format_ok": bool(c and c.format_ok),
        "valid": p.valid,
        "reason": None if p.valid else ((o.reason if o else None) or (c.reason if c else None) or "unknown"),
        "program": c.program if c else None,
        "input": c.input if c else None,
        "output": (o.output if o else None),
        "inputs": list(c.inputs) if c else [],
        "message": c.message if c else None,
        "task_id": p.task_id if task else None,
        "duplicate": p.duplicate,
        "reference_ids": [t.task_id for t in p.references],
        "solve_rate": p.solve_rate,
        "n_solves": p.n_solves,
        "reward": p.reward,
        **_measure_columns(x),
    }


def _measure_columns(x: ProposalMeasures | None) -> dict[str, Any]:
    """The proposer measures' columns of a proposal row (none, so nulls, when the measures failed)."""
    if x is None:
        return {}
    return {"novel": x.novel, "complexity": x.complexity, "halstead_effort": x.halstead_effort,
            "edit_distance": x.edit_distance, "edit_distance_norm": x.edit_distance_norm}  # fmt: skip


def _proposal_rollout_row(p: ProposalRollout) -> dict[str, Any]:
    return {
        "rollout_id": p.proposal_id,
        "role": "propose",
        "task_type": str(p.task_type),
        "purpose": p.stage,
        "task_id": p.task_id,
        "proposal_id": p.proposal_id,
        "prompt": p.prompt,
        "completion": p.completion.text,
        "answer": None,
        "format_ok": p.format_ok,
        "correct": None,
        "reward": p.reward,
        "advantage": p.advantage,
        "in_batch": p.stage == "propose",
        "prompt_tokens": len(p.prompt_token_ids),
        "completion_tokens": len(p.completion.token_ids),
    }


def _solve_row(x: SolveRollout) -> dict[str, Any]:
    return {
        "rollout_id": x.rollout_id,
        "role": "solve",
        "task_type": str(x.task.task_type),
        "purpose": x.purpose,
        "task_id": x.task.task_id,
        "proposal_id": x.task.proposal_id,
        "prompt": x.prompt,
        "completion": x.completion.text,
        "answer": x.answer.answer if x.answer else None,
        "format_ok": x.format_ok,
        "correct": x.correct,
        "reward": x.reward,
        "advantage": x.advantage,
        "in_batch": x.purpose == "solve",
        "prompt_tokens": len(x.prompt_token_ids),
        "completion_tokens": len(x.completion.token_ids),
    }
