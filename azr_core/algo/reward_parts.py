"""The rewards as named parts, per role, composed in one place.

Each role's reward is a cascade: the first part that decides a rollout gives its reward (the reference's rules, and
the paper's: a broken format outranks everything, then an invalid proposal, then what the task is worth). The
commit logs, per part, role and task type, the mean reward it gave and the share of rollouts it decided
(`reward/<part>/<role>/<type>`, `reward_share/<part>/<role>/<type>`), as TRL logs each of its reward functions.

Adding a rule is one `RewardPart` in `SOLVER_PARTS` or `PROPOSER_PARTS`: a name and a function of the rollout and the
`rewards` settings that returns its reward, or None when the rollout is not its to decide.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from azr_core.config import RewardsConfig


@dataclass(frozen=True)
class RewardPart:
    """One named rule of a role's reward."""

    name: str
    decide: Callable[[Any, RewardsConfig], float | None]  # (rollout, settings) -> reward, or None: not mine


def _learnability(p: Any, r: RewardsConfig) -> float:
    rate = p.solve_rate  # mean accuracy of the learnability rollouts; None: none ran, nothing showed it learnable
    return 1.0 - rate if rate is not None and 0.0 < rate < 1.0 else r.unlearnable


#: Solver: the format (or an empty answer, with rewards.empty_answer_is_format_error), then the answer's verdict.
SOLVER_PARTS: tuple[RewardPart, ...] = (
    RewardPart("format", lambda x, r: None if x.format_ok else r.format_error),
    RewardPart("answer", lambda x, r: r.correct if x.correct else r.wrong_answer),
)

#: Proposer: the format, validity, the copy penalties (off unless set), then learnability (1 - solve rate when
#: 0 < rate < 1, else rewards.unlearnable).
PROPOSER_PARTS: tuple[RewardPart, ...] = (
    RewardPart("format", lambda p, r: None if p.format_ok else r.format_error),
    RewardPart("validity", lambda p, r: None if p.valid else r.invalid_proposal),
    RewardPart(
        "known_program", lambda p, r: r.known_program if r.known_program is not None and p.program_known else None
    ),  # fmt: skip
    RewardPart("known_task", lambda p, r: r.known_task if r.known_task is not None and p.in_buffers else None),
    RewardPart("learnability", _learnability),
)


def compose(parts: Sequence[RewardPart], rollout: Any, settings: RewardsConfig) -> tuple[float, str]:
    """The reward of `rollout` and the name of the part that decided it (the first that does)."""
    for part in parts:
        value = part.decide(rollout, settings)
        if value is not None:
            return float(value), part.name
    raise ValueError(f"no reward part decided the rollout (the last of {[p.name for p in parts]} must always decide)")
