"""The stages of one self-play iteration. Each is a function of the session and the previous stage's result, and
returns its own typed result (azr_core.selfplay.records); `iteration.run_iteration` strings them together.

Empty batches are normal for a small model: no stage divides by zero or stalls on them.
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Container, Sequence
from typing import TYPE_CHECKING

from azr_core.algo.advantages import trr_advantages
from azr_core.algo.program_keys import program_key
from azr_core.algo.prompts import proposer_messages, render, response_prefill, solver_messages
from azr_core.algo.proposals import grade_request, parse_answer, parse_proposal, validate_candidates
from azr_core.algo.reward_parts import PROPOSER_PARTS, SOLVER_PARTS, compose
from azr_core.algo.rewards import learnability
from azr_core.algo.tasks import TASK_TYPES, Task, TaskType
from azr_core.algo.types import TaskTypeSpec
from azr_core.algo.types import get as task_type_spec
from azr_core.policy.trainer.schedule import run_update
from azr_core.selfplay.records import (
    IterationBatch,
    ProposalRollout,
    Proposed,
    Rewarded,
    Rollout,
    Seeded,
    Solved,
    SolveRollout,
    Updated,
    Validated,
    task_type_of,
)
from azr_core.selfplay.sampling import sample, training_records

if TYPE_CHECKING:
    from azr_core.selfplay.session import Session


def group_order(types: Sequence[str] = TASK_TYPES) -> list[str]:
    """The order of the TRR++ groups in the update batch (proposer groups, then solver groups, by type in the run's
    order), which is also how the batch is cut into mini-batches."""
    return [f"{role}/{t}" for role in ("propose", "solve") for t in types]


# ---- the stages ---------------------------------------------------------------------------------------------------


def seed(s: Session, iteration: int) -> Seeded:
    """Seeding, once, before the first training iteration: the current model proposes with no update, and each valid
    task joins the seed set (the buffers) at once, so later rounds draw references from it. The types whose seed role
    is "programs" (deduction, abduction) share the set; then the "inputs" types (induction) take their programs from
    it. Bounded by quota and rounds."""
    start = time.perf_counter()
    if iteration != 1 or s.cfg.buffers.seed_max_rounds == 0:
        return Seeded(iteration, [], [], 0, 0.0)  # a bounded phase: never paid again
    b, proposals, tasks, rounds = s.cfg.buffers, [], [], 0
    sharing = [t for t in s.types if t.seed_role == "programs"]
    for phase in ("programs", "inputs"):
        mine = [t for t in s.types if t.seed_role == phase]
        for _ in range(b.seed_max_rounds if mine else 0):
            if s.buffers.size(mine[0].name) >= b.seed_quota:
                break
            # alternate the phase's types (deduction- and abduction-style prompts, as the reference's rounds)
            types = [mine[k % len(mine)].name for k in range(b.seed_round_size)]
            made, _ = _propose_round(s, types, "seed")
            _validate(s, made, iteration)
            for p in made:
                if p.valid and not p.duplicate and p.outcome and p.outcome.task:
                    for t in _seed_tasks(p.outcome.task, sharing):
                        if s.buffers.add(t):  # joins the seed set now: the next round may draw it
                            tasks.append(t)
            proposals += made
            rounds += 1
    sizes = {str(t.name): s.buffers.size(t.name) for t in s.types}
    return Seeded(iteration, proposals, tasks, rounds, time.perf_counter() - start, sizes)


def propose(s: Session, previous: Seeded | Rewarded) -> Proposed:
    """batch_per_group proposer prompts per task type (K references from the type's buffer; induction: one program
    from the deduction/abduction buffers), rollout.n completions each, parsed. After a `Rewarded` (an attempt whose
    batch had no live group), this is the iteration's next attempt: its rollouts will join that batch."""
    start = time.perf_counter()
    batch = previous.solved.validated.proposed.batch if isinstance(previous, Rewarded) else IterationBatch(previous)
    types = [t.name for t in s.types for _ in range(s.cfg.selfplay.batch_per_group)]
    proposals, filtered = _propose_round(s, types, "propose")
    seconds = time.perf_counter() - start
    batch.attempt += 1
    batch.proposals += proposals
    batch.filtered_prompts["propose"] += filtered
    batch.seconds["propose"] += seconds
    return Proposed(batch, proposals, filtered, seconds)


def execute_validate(s: Session, proposed: Proposed) -> Validated:
    """Check and run every proposal in the sandbox; every one keeps its outcome (valid, or the reason why not)."""
    start = time.perf_counter()
    batch = proposed.batch
    known = {t.task_id for t in batch.new_tasks}  # new in an earlier attempt of the iteration
    new_tasks = _validate(s, proposed.proposals, proposed.iteration, known)
    seconds = time.perf_counter() - start
    batch.new_tasks += new_tasks
    batch.seconds["execute_validate"] += seconds
    return Validated(proposed, new_tasks, seconds)


def resample(s: Session, rewarded: Rewarded) -> bool:
    """Whether to sample the iteration's batch again: no group is live (every advantage zero, so the update would
    take no gradient) and `selfplay.degenerate_retries` allows another attempt. Paper: 0, never."""
    return not rewarded.live_groups and rewarded.attempt <= s.cfg.selfplay.degenerate_retries


def solve(s: Session, validated: Validated) -> Solved:
    """Solver batches per type (the new tasks first, then the buffer) and the learnability probes: n rollouts per
    distinct task among the valid proposals (duplicates share their task's estimate, never steal it)."""
    start = time.perf_counter()
    cfg = s.cfg.selfplay
    batch = [t for spec in s.types for t in s.buffers.solver_batch(spec.name, cfg.batch_per_group, s.rng,
                                                                    validated.new_tasks)]  # fmt: skip
    probe_tasks = list({p.task_id: p.outcome.task for p in validated.proposals if p.valid and p.outcome}.values())
    rounds = [(batch, "solve", s.cfg.rollout.n), (probe_tasks, "learnability", cfg.learnability_rollouts)]
    (solves, probes), filtered = _solve_rounds(s, rounds)
    seconds = time.perf_counter() - start
    b = validated.proposed.batch
    b.solves += solves
    b.probes += probes
    b.filtered_prompts["solve"] += filtered
    b.seconds["solve"] += seconds
    return Solved(validated, solves, probes, filtered, seconds)


def reward(s: Session, solved: Solved) -> Rewarded:
    """Grade every answer in the sandbox; score (solver and proposer rewards, azr_core.algo.reward_parts); TRR++
    advantages over the iteration's batch."""
    start = time.perf_counter()
    _grade(s, solved.solves + solved.probes)
    _score(s, solved)
    batch = _advantages(s, solved)
    seconds = time.perf_counter() - start
    solved.validated.proposed.batch.seconds["reward"] += seconds
    return Rewarded(solved, batch, seconds)


def _score(s: Session, solved: Solved) -> None:
    """Each solve's and each proposal's reward, from its role's parts; the proposals' solve rates first (the
    learnability rollouts of this attempt and of earlier ones, for tasks that were new then)."""
    r = s.cfg.rewards
    for x in solved.solves + solved.probes:
        x.reward, x.reward_part = compose(SOLVER_PARTS, x, r)
    verdicts: dict[str, list[float]] = defaultdict(list)
    for x in solved.validated.proposed.batch.probes:  # every attempt's, this one's last
        if not x.grade_crashed:  # a grading the sandbox lost says nothing about the task (the reference drops it)
            verdicts[x.task.task_id].append(1.0 if x.correct else 0.0)
    known_programs = s.buffers.novelty_index()[0] if r.known_program is not None else {}
    for p in solved.validated.proposals:
        rates = verdicts.get(p.task_id or "", []) if p.valid else []
        p.n_solves, p.solve_rate = len(rates), learnability(rates)
        task = p.outcome.task if p.valid and p.outcome else None
        p.program_known = bool(known_programs and task and task_type_spec(p.task_type).proposes_program
                               and program_key(task.program) in known_programs)  # fmt: skip
        p.reward, p.reward_part = compose(PROPOSER_PARTS, p, r)


def _advantages(s: Session, solved: Solved) -> list[Rollout]:
    """TRR++ advantages over one batch: this attempt's proposals and solves with the earlier attempts' rollouts
    (whose groups were all degenerate alone), in `group_order` of the run's types."""
    whole = solved.validated.proposed.batch
    order = group_order([t.name for t in s.types])
    batch: list[Rollout] = sorted([*whole.rollouts, *solved.validated.proposals, *solved.solves],
                                  key=lambda b: order.index(b.group))  # fmt: skip
    whole.rollouts = batch
    advantages = trr_advantages(
        [float(b.reward or 0.0) for b in batch],
        [b.group.split("/")[0] for b in batch],
        [task_type_of(b) for b in batch],
        eps=s.cfg.selfplay.advantage_std_eps,
    )
    for b, a in zip(batch, advantages, strict=True):
        b.advantage = a
    return batch


def update(s: Session, rewarded: Rewarded) -> Updated:
    """The update (old log-probs recomputed, one optimiser step per mini-batch), then a checkpoint."""
    start = time.perf_counter()
    # A skeleton answer's pieces (one per block the model wrote) are its policy gradient, with its advantage; the
    # blocks opened for the model are context, never trained on (one sequence per answer where the tokens allow).
    per_answer = [training_records(b.pieces, float(b.advantage or 0.0), b.group) for b in rewarded.batch]
    records = [r for recs in per_answer for r in recs]
    metrics = run_update(s.policy, records, s.cfg.trainer) if records else {}
    metrics["answers_split"] = float(sum(len(recs) > 1 for recs in per_answer))  # pieces the tokens kept apart
    s.step = int(metrics.get("step", s.step))  # the trainer's optimiser step, not a count of our own
    iteration = rewarded.iteration
    t_ckpt = time.perf_counter()
    s.policy.save_checkpoint(s.checkpoint_dir(iteration))
    metrics["seconds_checkpoint"] = time.perf_counter() - t_ckpt
    return Updated(rewarded, metrics, s.step, str(iteration), time.perf_counter() - start)


# ---- shared steps -------------------------------------------------------------------------------------------------


def _prompt(s: Session, messages: list[dict[str, str]], role: str, task_type: TaskType) -> str:
    cfg = s.cfg.selfplay
    prefill = response_prefill(cfg.response_prefill, role, task_type)
    return render(s.tokenizer, messages, prefill=prefill, template=cfg.prompt_template)


def _propose_round(s: Session, types: list[TaskType | str], stage: str) -> tuple[list[ProposalRollout], int]:
    """Proposer prompts (what each type's `references` draws: K references from the type's buffer; induction: one
    program), rollout.n completions each, parsed. Returns the proposals and the number of prompts dropped as too
    long."""
    cfg = s.cfg.selfplay
    distinct = cfg.reference_sampling == "distinct_programs"
    plans: list[tuple[TaskType | str, list[Task]]] = []
    for task_type in types:
        refs = task_type_spec(task_type).references(s.buffers, s.rng, k=cfg.references_k, distinct_programs=distinct)
        plans.append((task_type, refs))
    prompts = [
        _prompt(
            s,
            proposer_messages(
                t,
                refs,
                n_inputs=cfg.induction_inputs,
                compact=cfg.compact_prompts,
                worked_example=cfg.worked_example,
                timeout_s=s.cfg.executor.timeout_s,
            ),
            "propose",
            t,
        )  # fmt: skip
        for t, refs in plans
    ]
    sampled, filtered = sample(s, prompts, "propose", [t for t, _ in plans], s.cfg.rollout.n, stage)
    proposals = []
    for i, prompt, samples in sampled:
        task_type, refs = plans[i]
        for smp in samples:
            p = ProposalRollout(task_type, stage, prompt, smp.prompt_token_ids, smp.completion, refs, smp.pieces)
            p.candidate = parse_proposal(
                task_type,
                smp.text,
                n_inputs=cfg.induction_inputs,
                min_distinct=cfg.induction_distinct_inputs,
                reference=refs[0] if refs else None,
                reference_ids=[t.task_id for t in refs],
                think_prefilled=cfg.response_prefill != "none",
                lenient=cfg.lenient_parsing,
                rename_entry=cfg.rename_entry_function,
                reject_multiple=cfg.reject_multiple_functions,
                parsing=cfg.answer_parsing,
                inputs=s.cfg.executor.inputs,
                buffer_broken_format=cfg.buffer_broken_format,
                reject_revealing_message=cfg.reject_revealing_message,
            )
            proposals.append(p)
    return proposals, filtered


def _validate(s: Session, proposals: list[ProposalRollout], iteration: int, known: Container[str] = ()) -> list[Task]:
    """Run the candidates in the sandbox; mark exact duplicates (of the buffers, of `known` task ids, or of an earlier
    proposal in this batch); return the distinct new tasks."""
    outcomes = validate_candidates(
        s.executor,
        [p.candidate for p in proposals],
        iteration=iteration,
        shown_fraction=s.cfg.selfplay.induction_shown_fraction,
        proposal_ids=[p.proposal_id for p in proposals],
    )
    fresh: dict[str, Task] = {}
    for p, outcome in zip(proposals, outcomes, strict=True):
        p.outcome = outcome
        if outcome.valid and outcome.task is not None:
            p.task_id = outcome.task.task_id
            p.in_buffers = p.task_id in s.buffers
            p.duplicate = p.in_buffers or p.task_id in known or p.task_id in fresh
            if not p.duplicate:
                fresh[p.task_id] = outcome.task
    return list(fresh.values())


def _seed_tasks(task: Task, sharing: Sequence[TaskTypeSpec]) -> list[Task]:
    """A valid seed program joins the shared seed set: as a task of each type that shares it (deduction and
    abduction: the same triplet). Any other seed task joins as it is."""
    if not any(t.name == task.task_type for t in sharing):
        return [task]
    return [t.from_seed(task) for t in sharing]


def _solve_round(s: Session, tasks: list[Task], purpose: str, n: int) -> tuple[list[SolveRollout], int]:
    compact = s.cfg.selfplay.compact_prompts
    timeout_s = s.cfg.executor.timeout_s
    prompts = [
        _prompt(s, solver_messages(t, compact=compact, timeout_s=timeout_s), "solve", t.task_type) for t in tasks
    ]
    sampled, filtered = sample(s, prompts, "solve", [t.task_type for t in tasks], n, purpose)
    rollouts = [
        SolveRollout(tasks[i], purpose, prompt, smp.prompt_token_ids, smp.completion, smp.pieces)
        for i, prompt, samples in sampled
        for smp in samples
    ]
    return rollouts, filtered


def _solve_rounds(s: Session, rounds: list[tuple[list[Task], str, int]]) -> tuple[list[list[SolveRollout]], int]:
    """Several solver rounds, (tasks, purpose, rollouts per task) each, in one sampling call: a task's prompt once per
    rollout, so that all rounds share the decode steps (the batch's solves and the learnability rollouts together:
    a decode step costs about the same for 18 rows as for 42). The same distribution as one call per round.
    Returns each round's rollouts (a task's together, in order) and the number of (task, round) prompts dropped."""
    compact = s.cfg.selfplay.compact_prompts
    items = [(r, j, t) for r, (tasks, _, n) in enumerate(rounds) for j, t in enumerate(tasks) for _ in range(n)]
    timeout_s = s.cfg.executor.timeout_s
    prompts = [
        _prompt(s, solver_messages(t, compact=compact, timeout_s=timeout_s), "solve", t.task_type) for _, _, t in items
    ]
    sampled, _ = sample(s, prompts, "solve", [t.task_type for _, _, t in items], 1, "solve")
    out: list[list[SolveRollout]] = [[] for _ in rounds]
    kept = set()
    for i, prompt, samples in sampled:
        r, j, task = items[i]
        kept.add((r, j))
        out[r] += [
            SolveRollout(task, rounds[r][1], prompt, x.prompt_token_ids, x.completion, x.pieces) for x in samples
        ]
    return out, len({(r, j) for r, j, _ in items} - kept)


def _grade(s: Session, rollouts: list[SolveRollout]) -> None:
    """Parse each answer and grade it in the sandbox; `correct`: the verdict (see SolveRollout.correct)."""
    cfg = s.cfg.selfplay
    for x in rollouts:
        x.answer = parse_answer(
            x.task.task_type,
            x.completion.text,
            think_prefilled=cfg.response_prefill != "none",
            lenient=cfg.lenient_parsing,
            empty_is_format_error=s.cfg.rewards.empty_answer_is_format_error,
            parsing=cfg.answer_parsing,
        )
    gradable = [x for x in rollouts if x.answer and x.answer.answer is not None]
    grades = s.executor.grade_many([grade_request(x.task, x.answer.answer) for x in gradable]) if gradable else []
    for x in rollouts:
        x.correct = False
    for x, g in zip(gradable, grades, strict=True):
        needs_format = x.purpose != "learnability" or cfg.learnability_needs_format
        x.correct = bool(g.correct and (x.format_ok or not needs_format))
        x.grade_crashed = g.crashed
