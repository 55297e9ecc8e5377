"""What the stages of one iteration hand each other: rollouts, and one typed result per stage.

Each stage takes the result of the stage before and returns its own (`Seeded` -> `Proposed` -> `Validated` ->
`Solved` -> `Rewarded` -> `Updated`). The iteration's rollouts also accumulate in one `IterationBatch`, which each
stage appends its part to, across the attempts of an iteration whose batch was sampled again; the commit stage writes
it as an `IterationRecord`.
A rollout is filled in as it moves on (outcome, verdict, reward, advantage), and proposals meet their rollouts by id.
A crash before commit loses only these objects: the store removes the iteration's partial rows on resume.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from azr_core.algo.proposals import Candidate, ProposalOutcome, SolverAnswer
from azr_core.algo.tasks import Task, TaskType, new_id
from azr_core.policy.rollout.base import Completion


@dataclass
class ProposalRollout:
    """One proposer completion and what became of it."""

    task_type: TaskType
    stage: str  # seed | propose
    prompt: str
    prompt_token_ids: list[int]
    completion: Completion  # all it generated; its text is what the parser read
    references: list[Task]
    pieces: list[tuple[list[int], Completion]] = field(default_factory=list)  # what the update trains on
    proposal_id: str = field(default_factory=new_id)
    candidate: Candidate | None = None
    outcome: ProposalOutcome | None = None
    task_id: str | None = None
    duplicate: bool = False  # an exact duplicate of a task in the buffers or earlier in this batch
    in_buffers: bool = False  # an exact copy of a task already in the buffers (a reference, the zero triplet)
    solve_rate: float | None = None
    n_solves: int = 0
    program_known: bool = False  # valid, and its program (any input) already in the buffers (rewards.known_program)
    reward: float | None = None
    reward_part: str | None = None  # the part of the reward that decided it (azr_core.algo.reward_parts)
    advantage: float | None = None

    @property
    def valid(self) -> bool:
        return bool(self.outcome and self.outcome.valid)

    @property
    def format_ok(self) -> bool:
        return bool(self.candidate and self.candidate.format_ok)

    @property
    def group(self) -> str:
        return f"propose/{self.task_type}"


@dataclass
class SolveRollout:
    """One solver completion for a task: a batch solve (trained on) or a learnability probe (not trained on)."""

    task: Task
    purpose: str  # solve | learnability
    prompt: str
    prompt_token_ids: list[int]
    completion: Completion
    pieces: list[tuple[list[int], Completion]] = field(default_factory=list)
    rollout_id: str = field(default_factory=new_id)
    answer: SolverAnswer | None = None
    # The verdict: a batch solve's is the reward's (format right and the answer correct); a learnability probe's
    # needs the format only with selfplay.learnability_needs_format (the reference grades the answer alone).
    correct: bool | None = None
    grade_crashed: bool = False  # the sandbox lost the grading: no verdict, left out of the solve rate
    reward: float | None = None
    reward_part: str | None = None  # the part of the reward that decided it (azr_core.algo.reward_parts)
    advantage: float | None = None

    @property
    def format_ok(self) -> bool:
        return bool(self.answer and self.answer.format_ok)

    @property
    def group(self) -> str:
        return f"solve/{self.task.task_type}"


Rollout = ProposalRollout | SolveRollout


@dataclass
class Seeded:
    """Seeding's result: its proposals (recorded, never trained on) and the seed tasks, already in the buffers."""

    iteration: int
    proposals: list[ProposalRollout]
    tasks: list[Task]
    rounds: int
    seconds: float
    buffer_sizes: dict[str, int] = field(default_factory=dict)  # after seeding's own additions

    def summary(self) -> dict[str, Any]:
        return _summary(
            self.iteration,
            "seed",
            self.seconds,
            rounds=self.rounds,
            proposals=len(self.proposals),
            valid=sum(p.valid for p in self.proposals),
            seed_tasks=len(self.tasks),
            buffer_sizes=self.buffer_sizes,
        )


@dataclass
class IterationBatch:
    """Everything one iteration sampled, appended to by each stage as it finishes, over all its attempts: a batch
    with no live group is sampled again (selfplay.degenerate_retries) and the new rollouts join this one batch, whose
    advantages are then computed together. `rollouts` is the batch the update trains on, in group order."""

    seeded: Seeded
    attempt: int = 0  # 1 for the iteration's first batch, 2 for its first resample, ...
    proposals: list[ProposalRollout] = field(default_factory=list)
    new_tasks: list[Task] = field(default_factory=list)
    solves: list[SolveRollout] = field(default_factory=list)
    probes: list[SolveRollout] = field(default_factory=list)
    rollouts: list[Rollout] = field(default_factory=list)
    filtered_prompts: dict[str, int] = field(default_factory=lambda: {"propose": 0, "solve": 0})
    seconds: dict[str, float] = field(
        default_factory=lambda: {"propose": 0.0, "execute_validate": 0.0, "solve": 0.0, "reward": 0.0}
    )

    @property
    def iteration(self) -> int:
        return self.seeded.iteration


@dataclass
class Proposed:
    """This attempt's proposals, parsed (not yet run); `batch` is the iteration's, which they have joined."""

    batch: IterationBatch
    proposals: list[ProposalRollout]
    filtered_prompts: int  # proposer prompts over selfplay.max_prompt_tokens: dropped, not truncated
    seconds: float

    @property
    def iteration(self) -> int:
        return self.batch.iteration

    @property
    def attempt(self) -> int:
        """1 for the iteration's first batch, 2 for its first resample, ..."""
        return self.batch.attempt

    def summary(self) -> dict[str, Any]:
        return _summary(
            self.iteration,
            "propose",
            self.seconds,
            attempt=self.attempt,
            proposals=len(self.proposals),
            parsed=sum(bool(p.candidate and p.candidate.parsed) for p in self.proposals),
            format_ok=sum(p.format_ok for p in self.proposals),
            filtered_prompts=self.filtered_prompts,
            tokens=sum(len(p.completion.token_ids) for p in self.proposals),
        )


@dataclass
class Validated:
    """The proposals after the sandbox: every one with its outcome; the distinct new tasks among the valid ones."""

    proposed: Proposed
    new_tasks: list[Task]
    seconds: float

    @property
    def iteration(self) -> int:
        return self.proposed.iteration

    @property
    def proposals(self) -> list[ProposalRollout]:
        return self.proposed.proposals

    def summary(self) -> dict[str, Any]:
        todo = self.proposals
        valid = sum(p.valid for p in todo)
        reasons: dict[str, int] = {}
        for p in todo:
            if p.outcome and not p.valid:
                key = reason_category(p.outcome.reason)
                reasons[key] = reasons.get(key, 0) + 1
        return _summary(
            self.iteration,
            "execute_validate",
            self.seconds,
            proposals=len(todo),
            valid=valid,
            valid_rate=round(valid / len(todo), 3) if todo else 0.0,
            new_tasks=len(self.new_tasks),
            reasons=dict(sorted(reasons.items(), key=lambda kv: -kv[1])[:5]),
        )


@dataclass
class Solved:
    """Solver rollouts of the batch (trained on) and learnability probes of the valid proposals' tasks."""

    validated: Validated
    solves: list[SolveRollout]
    probes: list[SolveRollout]
    filtered_prompts: int
    seconds: float

    @property
    def iteration(self) -> int:
        return self.validated.iteration

    def summary(self) -> dict[str, Any]:
        return _summary(
            self.iteration,
            "solve",
            self.seconds,
            solves=len(self.solves),
            learnability=len(self.probes),
            filtered_prompts=self.filtered_prompts,
            tokens=sum(len(x.completion.token_ids) for x in self.solves + self.probes),
        )


@dataclass
class Rewarded:
    """Every rollout graded and rewarded; `batch` is what the update trains on, group by group, with advantages
    (with the rollouts of earlier attempts of the iteration, if any: one batch, its advantages computed together)."""

    solved: Solved
    batch: list[Rollout]
    seconds: float

    @property
    def iteration(self) -> int:
        return self.solved.iteration

    @property
    def attempt(self) -> int:
        return self.solved.validated.proposed.attempt

    @property
    def live_groups(self) -> list[str]:
        """The TRR++ groups with some non-zero advantage: where the update gets a gradient."""
        return sorted({b.group for b in self.batch if b.advantage})

    def summary(self) -> dict[str, Any]:
        solves = self.solved.solves
        proposals = self.solved.validated.proposals
        return _summary(
            self.iteration,
            "reward",
            self.seconds,
            attempt=self.attempt,
            solve_accuracy=round(share(x.correct for x in solves), 4),
            mean_proposer_reward=_mean([p.reward for p in proposals]),
            batch=len(self.batch),
            nonzero_advantages=sum(1 for b in self.batch if b.advantage),
            live_groups=len(self.live_groups),
        )


@dataclass
class Updated:
    """The update's metrics, the trainer's optimiser step after it, and the checkpoint that holds it."""

    rewarded: Rewarded
    train_metrics: dict[str, float]
    step: int
    checkpoint_id: str
    seconds: float

    @property
    def iteration(self) -> int:
        return self.rewarded.iteration

    def summary(self) -> dict[str, Any]:
        return _summary(
            self.iteration,
            "update",
            self.seconds,
            sequences=len(self.rewarded.batch),
            trained_sequences=int(self.train_metrics.get("sequences", 0)),
            optimizer_steps=int(self.train_metrics.get("optimizer_steps", 0)),
            step=self.step,
            loss=round(self.train_metrics.get("loss", 0.0), 6),
        )


@dataclass
class IterationRecord:
    """The whole iteration, flat, as the commit stage writes it."""

    iteration: int
    seed_proposals: list[ProposalRollout]
    proposals: list[ProposalRollout]
    seed_tasks: list[Task]
    new_tasks: list[Task]
    solves: list[SolveRollout]
    probes: list[SolveRollout]
    batch: list[Rollout]
    filtered_prompts: dict[str, int]
    train_metrics: dict[str, float]
    step: int
    checkpoint_id: str
    stage_seconds: dict[str, float]
    attempts: int = 1  # batches sampled: 1 + resamples of batches with no live group

    @classmethod
    def of(cls, u: Updated) -> IterationRecord:
        b = u.rewarded.solved.validated.proposed.batch  # every attempt's rollouts (one, unless resampled)
        return cls(
            iteration=u.iteration,
            seed_proposals=b.seeded.proposals,
            proposals=list(b.proposals),
            seed_tasks=b.seeded.tasks,
            new_tasks=list(b.new_tasks),
            solves=list(b.solves),
            probes=list(b.probes),
            batch=u.rewarded.batch,
            filtered_prompts=dict(b.filtered_prompts),
            train_metrics=u.train_metrics,
            step=u.step,
            checkpoint_id=u.checkpoint_id,
            stage_seconds={"seed": b.seeded.seconds, **b.seconds, "update": u.seconds},
            attempts=b.attempt,
        )

    @property
    def all_proposals(self) -> list[ProposalRollout]:
        return self.seed_proposals + self.proposals

    @property
    def all_tasks(self) -> list[Task]:
        return self.seed_tasks + self.new_tasks


def _summary(iteration: int, stage: str, seconds: float, **extra: Any) -> dict[str, Any]:
    """The small dict a stage logs: counts and rates, never rows or tensors."""
    return {"iteration": iteration, "stage": stage, "seconds": round(seconds, 3), **extra}


def reason_category(reason: str | None) -> str:
    """The part of a `category: detail` reason before the colon (what metrics and history queries group on)."""
    return (reason or "unknown").split(":", 1)[0].strip() or "unknown"


def share(flags: Iterable[bool | None]) -> float:
    """Fraction of true flags; 0.0 for none (empty batches are normal for a small model)."""
    flags = list(flags)
    return sum(bool(f) for f in flags) / len(flags) if flags else 0.0


def _mean(values: list[float | None]) -> float:
    vals = [v for v in values if v is not None]
    return round(sum(vals) / len(vals), 4) if vals else 0.0


def task_type_of(b: Rollout) -> TaskType:
    """The task type of a proposal or a solve."""
    return b.task_type if isinstance(b, ProposalRollout) else b.task.task_type
