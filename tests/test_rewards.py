"""Reward functions: one signature, the paper's values, learnability edge cases, runnable docstrings."""

from __future__ import annotations

import doctest

import pytest
from hypothesis import given
from hypothesis import strategies as st

import azr_core.algo.rewards as rewards
from azr_core.algo.rewards import learnability, learnability_reward, solver_reward


def test_docstring_examples_run():
    result = doctest.testmod(rewards)
    assert result.attempted >= 4 and result.failed == 0


def test_solver_reward_paper_values():
    assert solver_reward(["x"] * 3, format_ok=[True, True, False], correct=[True, False, True]) == [1.0, -0.5, -1.0]


def test_solver_reward_settings_and_extra_columns_are_ignored():
    out = solver_reward(["x", "y"], format_ok=[True, False], correct=[True, False], correct_reward=2.0,
                        format_error_reward=-3.0, valid=[1, 2], prompts=["p", "q"])  # fmt: skip
    assert out == [2.0, -3.0]


def test_missing_or_misaligned_columns_fail_loudly():
    with pytest.raises(TypeError, match="correct"):
        solver_reward(["x"], format_ok=[True])
    with pytest.raises(ValueError, match="2 values for 1 completions"):
        solver_reward(["x"], format_ok=[True, True], correct=[True])


@pytest.mark.parametrize(
    ("format_ok", "valid", "rate", "expected"),
    [
        (True, True, 0.5, 0.5),
        (True, True, 0.125, 0.875),  # 1 of 8 solved: hard but learnable
        (True, True, 0.875, 0.125),
        (True, True, 1.0, 0.0),  # always solved: unlearnable (paper: 0)
        (True, True, 0.0, 0.0),  # never solved: unlearnable
        (True, True, None, 0.0),  # no rollouts ran: nothing shows it learnable
        (True, False, 0.5, -1.0),  # invalid
        (False, True, 0.5, -1.0),  # bad format (lenient parsing made a task of it)
        (False, False, None, -1.0),
    ],
)
def test_learnability_cases(format_ok, valid, rate, expected):
    assert learnability_reward(["c"], format_ok=[format_ok], valid=[valid], solve_rate=[rate]) == [expected]


def test_unlearnable_value_is_a_setting():
    out = learnability_reward(["a", "b", "c"], format_ok=[True] * 3, valid=[True] * 3, solve_rate=[0.0, 1.0, 0.5],
                              unlearnable_reward=-0.5)  # fmt: skip
    assert out == [-0.5, -0.5, 0.5]


@given(st.lists(st.booleans(), min_size=1, max_size=16))
def test_learnability_reward_is_one_minus_the_mean_accuracy(hits):
    rate = learnability([float(h) for h in hits])
    (r,) = learnability_reward(["c"], format_ok=[True], valid=[True], solve_rate=[rate])
    if all(hits) or not any(hits):
        assert r == 0.0
    else:
        assert 0.0 < r < 1.0 and r == pytest.approx(1.0 - sum(hits) / len(hits))


def test_learnability_of_nothing_is_none():
    assert learnability([]) is None


def test_reward_parts_cascade_in_order():
    """The first part that decides a rollout gives its reward; the copy penalties sit after validity and before
    learnability, and a broken format outranks them (a valid program with a broken format is still -1)."""
    from types import SimpleNamespace

    from azr_core.algo.reward_parts import PROPOSER_PARTS, SOLVER_PARTS, compose
    from azr_core.config import RewardsConfig

    r = RewardsConfig(known_program=-0.75, known_task=-0.25)

    def prop(**kw):
        base = dict(format_ok=True, valid=True, solve_rate=0.5, program_known=False, in_buffers=False)
        return SimpleNamespace(**{**base, **kw})

    assert compose(PROPOSER_PARTS, prop(), r) == (0.5, "learnability")
    assert compose(PROPOSER_PARTS, prop(solve_rate=1.0), r) == (0.0, "learnability")
    assert compose(PROPOSER_PARTS, prop(in_buffers=True), r) == (-0.25, "known_task")
    assert compose(PROPOSER_PARTS, prop(in_buffers=True, program_known=True), r) == (-0.75, "known_program")
    assert compose(PROPOSER_PARTS, prop(valid=False, program_known=True), r) == (-1.0, "validity")
    assert compose(PROPOSER_PARTS, prop(format_ok=False, program_known=True), r) == (-1.0, "format")
    paper = RewardsConfig()  # the penalties off: a copy earns its learnability
    assert compose(PROPOSER_PARTS, prop(in_buffers=True, program_known=True), paper) == (0.5, "learnability")
    solve = SimpleNamespace(format_ok=True, correct=False)
    assert compose(SOLVER_PARTS, solve, paper) == (-0.5, "answer")
    assert compose(SOLVER_PARTS, SimpleNamespace(format_ok=False, correct=True), paper) == (-1.0, "format")
