"""The stages of one self-play iteration. Each takes the Session, works on its IterationState, and returns a small
summary dict (what a Prefect task logs and passes on). Empty batches are normal for a small model: no stage divides
by zero or stalls on them."""

from __future__ import annotations

import sys
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from azr_core.advantages import trr_advantages
from azr_core.policy.rollout.base import SamplingParams
from azr_core.policy.trainer.engine import SequenceRecord
from azr_core.prompts import proposer_messages, render, solver_messages
from azr_core.proposals import grade_request, parse_answer, parse_proposal, validate_candidates
from azr_core.rewards import learnability_reward, solver_reward
from azr_core.selfplay.records import IterationState, ProposalRollout, SolveRollout, reason_category, share
from azr_core.selfplay.session import Session
from azr_core.task_types import TASK_TYPES, Task, TaskType


@contextmanager
def _timed(state: IterationState, stage: str) -> Iterator[None]:
    start = time.perf_counter()
    try:
        yield
    finally:
        state.stage_seconds[stage] = state.stage_seconds.get(stage, 0.0) + time.perf_counter() - start


def _prefill(s: Session) -> str:
    return "<think>" if s.cfg.selfplay.think_prefill else ""


def _params(s: Session, n: int = 1) -> SamplingParams:
    return SamplingParams.from_config(s.cfg.rollout, n=n)


def _generate(s: Session, prompts: list[str], params: SamplingParams, label: str) -> list:
    """Generate in chunks of the rollout batch size, with a progress bar on stderr (a line every few seconds when
    stderr is a log file, as under a Prefect worker)."""
    from tqdm import tqdm

    chunk = max(1, s.cfg.rollout.batch_size // max(1, params.n)) * getattr(s.policy, "world_size", 1)
    outputs: list = []
    with tqdm(
        total=len(prompts),
        desc=f"{label} [it {s.state.iteration if s.state else '?'}]",
        unit="prompt",
        file=sys.stderr,
        mininterval=5.0,
        disable=not prompts,
    ) as bar:
        for start in range(0, len(prompts), chunk):
            outputs += s.policy.generate(prompts[start : start + chunk], params)
            bar.update(min(chunk, len(prompts) - start))
    return outputs


def _propose_round(s: Session, types: list[TaskType], per_type: int, stage: str) -> list[ProposalRollout]:
    """Build proposer prompts (K references from the type's buffer; induction: one program), generate, parse."""
    cfg = s.cfg.selfplay
    plans: list[tuple[TaskType, list[Task]]] = []
    for task_type in types:
        for _ in range(per_type):
            if task_type is TaskType.INDUCTION:
                refs = [s.buffers.sample_program(s.rng)]
            else:
                refs = s.buffers.sample_references(task_type, cfg.references_k, s.rng)
            plans.append((task_type, refs))
    prompts = [
        render(s.tokenizer, proposer_messages(t, refs, n_inputs=cfg.induction_inputs), prefill=_prefill(s))
        for t, refs in plans
    ]
    outputs = _generate(s, prompts, _params(s), stage)
    rollouts = []
    for (task_type, refs), out in zip(plans, outputs, strict=True):
        r = ProposalRollout(task_type, stage, out.prompt, out.prompt_token_ids, out.completions[0], refs)
        r.candidate = parse_proposal(
            task_type,
            r.completion.text,
            n_inputs=cfg.induction_inputs,
            reference=refs[0] if refs else None,
            reference_ids=[t.task_id for t in refs],
            think_prefilled=cfg.think_prefill,
            lenient=cfg.lenient_parsing,
        )
        rollouts.append(r)
    return rollouts


def _validate(s: Session, state: IterationState, rollouts: list[ProposalRollout]) -> None:
    """Run candidates in the sandbox; keep each valid, non-duplicate task as new (added to buffers at commit)."""
    cfg = s.cfg.selfplay
    outcomes = validate_candidates(
        s.executor,
        [r.candidate for r in rollouts],
        iteration=state.iteration,
        rng=s.rng,
        shown_fraction=cfg.induction_shown_fraction,
        min_induction_inputs=cfg.induction_min_valid_inputs,
        proposal_ids=[r.proposal_id for r in rollouts],
    )
    fresh = {t.task_id for t in state.new_tasks}
    for r, outcome in zip(rollouts, outcomes, strict=True):
        r.outcome = outcome
        if outcome.valid and outcome.task is not None:
            r.task_id = outcome.task.task_id
            r.duplicate = r.task_id in s.buffers or r.task_id in fresh
            if not r.duplicate:
                state.new_tasks.append(outcome.task)
                fresh.add(r.task_id)


def seed(s: Session, state: IterationState) -> dict[str, Any]:
    """Fill buffers below their seed quota with the current model's valid proposals (no update), bounded in rounds."""
    bcfg = s.cfg.buffers
    rounds = 0
    with _timed(state, "seed"):
        while rounds < bcfg.seed_max_rounds:
            counts = Counter(t.task_type for t in state.new_tasks)
            short = [t for t in TASK_TYPES if s.buffers.size(t) + counts[t] < bcfg.seed_quota]
            if not short:
                break
            rollouts = _propose_round(s, short, bcfg.seed_round_size, "seed")
            _validate(s, state, rollouts)
            state.proposals.extend(rollouts)
            rounds += 1
    seeded = [p for p in state.proposals if p.stage == "seed"]
    return state.summary(
        "seed",
        rounds=rounds,
        proposals=len(seeded),
        valid=sum(p.valid for p in seeded),
        buffer_sizes={str(t): s.buffers.size(t) for t in TASK_TYPES},
    )


def propose(s: Session, state: IterationState) -> dict[str, Any]:
    """batch_per_group proposals of each task type."""
    with _timed(state, "propose"):
        rollouts = _propose_round(s, list(TASK_TYPES), s.cfg.selfplay.batch_per_group, "propose")
        state.proposals.extend(rollouts)
    parsed = sum(bool(r.candidate and r.candidate.parsed) for r in rollouts)
    fmt = sum(r.completion is not None and bool(r.candidate and r.candidate.format_ok) for r in rollouts)
    return state.summary(
        "propose",
        proposals=len(rollouts),
        parsed=parsed,
        format_ok=fmt,
        tokens=sum(len(r.completion.token_ids) for r in rollouts),
    )


def execute_validate(s: Session, state: IterationState) -> dict[str, Any]:
    """Check and run this iteration's proposals in the sandbox; every one is recorded, valid or not."""
    todo = [p for p in state.proposals if p.stage == "propose" and p.outcome is None]
    with _timed(state, "execute_validate"):
        _validate(s, state, todo)
    valid = sum(p.valid for p in todo)
    reasons = Counter(reason_category(p.outcome.reason) for p in todo if p.outcome and not p.valid)
    return state.summary(
        "execute_validate",
        proposals=len(todo),
        valid=valid,
        valid_rate=round(valid / len(todo), 3) if todo else 0.0,
        new_tasks=len(state.new_tasks),
        reasons=dict(reasons.most_common(5)),
    )


def solve(s: Session, state: IterationState) -> dict[str, Any]:
    """Solver batches (new tasks first, then the buffer) and n learnability rollouts per new proposed task."""
    cfg = s.cfg.selfplay
    with _timed(state, "solve"):
        batch: list[tuple[Task, str | None]] = []
        proposed_new = [
            t for t in state.new_tasks if any(p.task_id == t.task_id and p.stage == "propose" for p in state.proposals)
        ]
        for task_type in TASK_TYPES:
            batch += [(t, None) for t in s.buffers.solver_batch(task_type, cfg.batch_per_group, s.rng, proposed_new)]
        by_task = {p.task_id: p.proposal_id for p in state.proposals if p.stage == "propose" and p.valid}
        learn = [(t, by_task.get(t.task_id)) for t in proposed_new]
        state.solves += _solve_round(s, batch, "solve", 1)
        if learn:
            state.solves += _solve_round(s, learn, "learnability", cfg.learnability_rollouts)
    solves = [x for x in state.solves if x.purpose == "solve"]
    return state.summary(
        "solve",
        solves=len(solves),
        learnability=len(state.solves) - len(solves),
        tokens=sum(len(x.completion.token_ids) for x in state.solves),
    )


def _solve_round(s: Session, items: list[tuple[Task, str | None]], purpose: str, n: int) -> list[SolveRollout]:
    prompts = [render(s.tokenizer, solver_messages(t), prefill=_prefill(s)) for t, _ in items]
    outputs = _generate(s, prompts, _params(s, n), purpose)
    return [
        SolveRollout(task, purpose, out.prompt, out.prompt_token_ids, comp, proposal_id=pid)
        for (task, pid), out in zip(items, outputs, strict=True)
        for comp in out.completions
    ]


def reward(s: Session, state: IterationState) -> dict[str, Any]:
    """Grade every answer in the sandbox; solver and learnability rewards; TRR++ advantages over the six groups."""
    cfg, rcfg = s.cfg.selfplay, s.cfg.rewards
    with _timed(state, "reward"):
        for x in state.solves:
            x.answer = parse_answer(
                x.task.task_type, x.completion.text, think_prefilled=cfg.think_prefill, lenient=cfg.lenient_parsing
            )
        gradable = [x for x in state.solves if x.answer and x.answer.answer is not None]
        grades = s.executor.grade_many([grade_request(x.task, x.answer.answer) for x in gradable]) if gradable else []
        for x, g in zip(gradable, grades, strict=True):
            x.correct = g.correct
        for x in state.solves:
            x.correct = bool(x.correct)
        rewards = solver_reward(
            [x.completion.text for x in state.solves],
            format_ok=[bool(x.answer and x.answer.format_ok) for x in state.solves],
            correct=[x.correct for x in state.solves],
            correct_reward=rcfg.correct,
            wrong_reward=rcfg.wrong_answer,
            format_error_reward=rcfg.format_error,
        )
        for x, r in zip(state.solves, rewards, strict=True):
            x.reward = r
        accuracy: dict[str, list[float]] = {}
        for x in state.solves:
            if x.purpose == "learnability" and x.proposal_id:
                accuracy.setdefault(x.proposal_id, []).append(1.0 if x.correct and x.answer.format_ok else 0.0)
        trained = [p for p in state.proposals if p.stage == "propose"]
        for p in trained:
            rates = accuracy.get(p.proposal_id, [])
            p.n_solves, p.solve_rate = len(rates), (sum(rates) / len(rates) if rates else None)
        prop_rewards = learnability_reward(
            [p.completion.text for p in trained],
            format_ok=[bool(p.candidate and p.candidate.format_ok) for p in trained],
            valid=[p.valid for p in trained],
            solve_rate=[p.solve_rate for p in trained],
            unlearnable_reward=rcfg.unlearnable,
            invalid_reward=rcfg.invalid_proposal,
            format_error_reward=rcfg.format_error,
        )
        for p, r in zip(trained, prop_rewards, strict=True):
            p.reward = r
        batch = _update_batch(state)
        advantages = trr_advantages(
            [b.reward for b in batch],
            [_role(b) for b in batch],
            [_task_type(b) for b in batch],
            eps=cfg.advantage_std_eps,
        )
        for b, a in zip(batch, advantages, strict=True):
            b.advantage = a
    solves = [x for x in state.solves if x.purpose == "solve"]
    return state.summary(
        "reward",
        graded=len(grades),
        solve_accuracy=round(share(x.correct for x in solves), 4),
        mean_proposer_reward=_mean([p.reward for p in trained]),
        batch=len(batch),
    )


def _update_batch(state: IterationState) -> list[ProposalRollout | SolveRollout]:
    """What the update trains on: this iteration's proposals and the solver batch (not the learnability probes)."""
    return [p for p in state.proposals if p.stage == "propose"] + [x for x in state.solves if x.purpose == "solve"]


def update(s: Session, state: IterationState) -> dict[str, Any]:
    """One policy-gradient step on the six groups' sequences, then a checkpoint of model and optimiser."""
    with _timed(state, "update"):
        records = [
            SequenceRecord(
                b.prompt_token_ids,
                b.completion.token_ids,
                b.completion.logprobs,
                float(b.advantage or 0.0),
                f"{_role(b)}/{_task_type(b)}",
            )
            for b in _update_batch(state)
            if b.completion.token_ids
        ]
        state.train_metrics = s.policy.train_step(records) if records else {}
        s.step += 1
        state.step = s.step
        path = s.checkpoint_dir(state.iteration)
        s.policy.save_checkpoint(path)
        state.checkpoint_id = str(state.iteration)
    return state.summary(
        "update",
        sequences=len(records),
        step=state.step,
        loss=round(state.train_metrics.get("loss", 0.0), 6),
        checkpoint=str(path),
    )


def _role(b: ProposalRollout | SolveRollout) -> str:
    return "propose" if isinstance(b, ProposalRollout) else "solve"


def _task_type(b: ProposalRollout | SolveRollout) -> str:
    return str(b.task_type if isinstance(b, ProposalRollout) else b.task.task_type)


def _mean(values: list[float | None]) -> float:
    vals = [v for v in values if v is not None]
    return round(sum(vals) / len(vals), 4) if vals else 0.0
