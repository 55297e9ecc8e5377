"""What one iteration accumulates between its stages, held in memory by the session until commit.

A crash before commit loses only this (the store removes the iteration's partial rows on resume), so nothing here
needs to reach disk before the commit stage writes it as Parquet rows.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from azr_core.policy.rollout.base import Completion
from azr_core.proposals import Candidate, ProposalOutcome, SolverAnswer
from azr_core.task_types import Task, TaskType, new_id


@dataclass
class ProposalRollout:
    """One proposer completion and what became of it."""

    task_type: TaskType
    stage: str  # seed | propose
    prompt: str
    prompt_token_ids: list[int]
    completion: Completion
    references: list[Task]
    proposal_id: str = field(default_factory=new_id)
    candidate: Candidate | None = None
    outcome: ProposalOutcome | None = None
    task_id: str | None = None
    duplicate: bool = False
    solve_rate: float | None = None
    n_solves: int = 0
    reward: float | None = None
    advantage: float | None = None

    @property
    def valid(self) -> bool:
        return bool(self.outcome and self.outcome.valid)


@dataclass
class SolveRollout:
    """One solver completion for a task: a batch solve (trained on) or a learnability estimate (not trained on)."""

    task: Task
    purpose: str  # solve | learnability
    prompt: str
    prompt_token_ids: list[int]
    completion: Completion
    proposal_id: str | None = None
    rollout_id: str = field(default_factory=new_id)
    answer: SolverAnswer | None = None
    correct: bool | None = None
    reward: float | None = None
    advantage: float | None = None


@dataclass
class IterationState:
    """Everything one iteration has produced so far."""

    iteration: int
    started_at: float = field(default_factory=time.time)
    proposals: list[ProposalRollout] = field(default_factory=list)
    solves: list[SolveRollout] = field(default_factory=list)
    new_tasks: list[Task] = field(default_factory=list)
    stage_seconds: dict[str, float] = field(default_factory=dict)
    metrics: dict[str, float] = field(default_factory=dict)
    train_metrics: dict[str, float] = field(default_factory=dict)
    checkpoint_id: str | None = None
    step: int = 0

    def summary(self, stage: str, **extra: Any) -> dict[str, Any]:
        """The small dict a stage returns (and logs): counts and rates, never rows or tensors."""
        return {
            "iteration": self.iteration,
            "stage": stage,
            "seconds": round(self.stage_seconds.get(stage, 0.0), 3),
            **extra,
        }


def reason_category(reason: str | None) -> str:
    """The part of a `category: detail` reason before the colon (what metrics and history queries group on)."""
    return (reason or "unknown").split(":", 1)[0].strip() or "unknown"


def share(flags: Iterable[bool | None]) -> float:
    """Fraction of true flags; 0.0 for none (empty batches are normal for a small model)."""
    flags = list(flags)
    return sum(bool(f) for f in flags) / len(flags) if flags else 0.0
