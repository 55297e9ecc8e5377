"""Task-Relative REINFORCE++ (TRR++): advantages normalised separately in each (role, task type) group.

    A_i = (r_i - mean_g) / std_g        for rollout i in group g

with the population std of the group's rewards. Each of the six groups has its own baseline, so a task type that is
easy for the solver does not drown the signal of a hard one, and proposer rewards never shift solver advantages.
Degenerate groups get zero advantages instead of NaN: a group of one (nothing to compare with) and a group whose
rewards are all equal (std below `eps`: no signal, and dividing would blow up float noise).
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Hashable, Sequence

from azr_core.algo.tasks import Role, TaskType


def group_normalize(rewards: Sequence[float], groups: Sequence[Hashable], *, eps: float = 1e-6) -> list[float]:
    """(r - group mean) / group std for each reward, each group on its own; 0 for degenerate groups.

    >>> group_normalize([1.0, 0.0, 5.0, 5.0, 3.0], ["a", "a", "b", "b", "c"])
    [1.0, -1.0, 0.0, 0.0, 0.0]
    """
    if len(rewards) != len(groups):
        raise ValueError(f"{len(rewards)} rewards but {len(groups)} group labels")
    members: dict[Hashable, list[int]] = defaultdict(list)
    for i, g in enumerate(groups):
        members[g].append(i)
    out = [0.0] * len(rewards)
    for idx in members.values():
        values = [float(rewards[i]) for i in idx]
        if any(not math.isfinite(v) for v in values):
            raise ValueError("rewards must be finite")
        if len(values) < 2:
            continue
        mean = math.fsum(values) / len(values)
        std = math.sqrt(math.fsum((v - mean) ** 2 for v in values) / len(values))
        if std < eps:
            continue
        for i, v in zip(idx, values, strict=True):
            out[i] = (v - mean) / std
    return out


def trr_advantages(
    rewards: Sequence[float],
    roles: Sequence[Role | str],
    task_types: Sequence[TaskType | str],
    *,
    eps: float = 1e-6,
) -> list[float]:
    """TRR++ advantages: `group_normalize` over the (role, task type) of each rollout.

    >>> trr_advantages([1.0, -0.5, 0.75, 0.0], ["solve", "solve", "propose", "propose"],
    ...                ["deduction", "deduction", "deduction", "deduction"])
    [1.0, -1.0, 1.0, -1.0]
    """
    if not len(rewards) == len(roles) == len(task_types):
        raise ValueError("rewards, roles and task_types must have the same length")
    groups = [(Role(r), str(t)) for r, t in zip(roles, task_types, strict=True)]
    return group_normalize(rewards, groups, eps=eps)
