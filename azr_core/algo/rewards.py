"""Reward functions. One signature for all, as in TRL: `(completions, **kwargs) -> list[float]`.

The keyword arguments are per-completion columns (lists as long as `completions`) plus scalar settings; a function
takes the columns it needs and ignores the rest, so a caller can pass one dict of columns to every reward. Grading
itself (is this answer correct?) happens in the executor; these functions turn verdicts into numbers, by the same
named parts the self-play loop composes (azr_core.algo.reward_parts).

Paper values are the defaults: solver 1 / -0.5 / -1; proposer learnability 1 - mean accuracy when strictly between 0
and 1, else `unlearnable` (0), and -1 for an invalid or badly formatted proposal.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from types import SimpleNamespace
from typing import Any

from azr_core.algo.reward_parts import PROPOSER_PARTS, SOLVER_PARTS, compose


def _column(name: str, values: Sequence[Any] | None, n: int) -> Sequence[Any]:
    if values is None:
        raise TypeError(f"missing keyword column {name!r}")
    if len(values) != n:
        raise ValueError(f"column {name!r} has {len(values)} values for {n} completions")
    return values


def solver_reward(
    completions: Sequence[str],
    *,
    format_ok: Sequence[bool] | None = None,
    correct: Sequence[bool | None] | None = None,
    correct_reward: float = 1.0,
    wrong_reward: float = -0.5,
    format_error_reward: float = -1.0,
    **_: Any,
) -> list[float]:
    """Solver reward: `correct_reward` when the format is right and the answer correct, `wrong_reward` when the format
    is right and the answer wrong (or ungradable: `correct` None), `format_error_reward` when the format is wrong.

    >>> solver_reward(["a", "b", "c", "d"], format_ok=[True, True, False, True], correct=[True, False, True, None])
    [1.0, -0.5, -1.0, -0.5]
    """
    n = len(completions)
    fmt = _column("format_ok", format_ok, n)
    ok = _column("correct", correct, n)
    settings = SimpleNamespace(correct=correct_reward, wrong_answer=wrong_reward, format_error=format_error_reward)
    rows = [SimpleNamespace(format_ok=f, correct=c) for f, c in zip(fmt, ok, strict=True)]
    return [compose(SOLVER_PARTS, x, settings)[0] for x in rows]


def learnability(accuracies: Sequence[float]) -> float | None:
    """Mean solver accuracy over the n rollouts of one task (None when there were none).

    >>> learnability([1.0, 0.0, 0.0, 1.0])
    0.5
    """
    return math.fsum(accuracies) / len(accuracies) if accuracies else None


def learnability_reward(
    completions: Sequence[str],
    *,
    format_ok: Sequence[bool] | None = None,
    valid: Sequence[bool] | None = None,
    solve_rate: Sequence[float | None] | None = None,
    unlearnable_reward: float = 0.0,
    invalid_reward: float = -1.0,
    format_error_reward: float = -1.0,
    **_: Any,
) -> list[float]:
    """Proposer reward: 1 - solve_rate when 0 < solve_rate < 1; `unlearnable_reward` when a valid task is solved
    always or never; `invalid_reward` for an invalid proposal, `format_error_reward` for a badly formatted one.

    `solve_rate` is the mean accuracy of the n learnability rollouts (`learnability(...)`); a valid proposal whose
    rate is missing (no rollouts) counts as unlearnable, since nothing showed it can be learned.

    >>> learnability_reward(["a"] * 5, format_ok=[True, True, True, True, False],
    ...                     valid=[True, True, True, False, True], solve_rate=[0.25, 1.0, 0.0, None, 0.5])
    [0.75, 0.0, 0.0, -1.0, -1.0]
    >>> learnability_reward(["a"], format_ok=[True], valid=[True], solve_rate=[1.0], unlearnable_reward=-0.5)
    [-0.5]
    """
    n = len(completions)
    fmt = _column("format_ok", format_ok, n)
    val = _column("valid", valid, n)
    rates = _column("solve_rate", solve_rate, n)
    settings = SimpleNamespace(unlearnable=unlearnable_reward, invalid_proposal=invalid_reward,
                               format_error=format_error_reward, known_program=None, known_task=None)  # fmt: skip
    rows = [SimpleNamespace(format_ok=f, valid=v, solve_rate=r, program_known=False, in_buffers=False)
            for f, v, r in zip(fmt, val, rates, strict=True)]  # fmt: skip
    return [compose(PROPOSER_PARTS, p, settings)[0] for p in rows]
