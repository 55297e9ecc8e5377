"""TRR++: per-(role, task type) normalisation, its invariances, and its degenerate cases."""

from __future__ import annotations

import math
import random
import statistics

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from azr_core.algo.advantages import group_normalize, trr_advantages
from azr_core.algo.tasks import GROUPS

REWARD = st.floats(min_value=-1000, max_value=1000, allow_nan=False, allow_infinity=False)
LABELS = st.sampled_from(range(6))
BATCH = st.lists(st.tuples(REWARD, LABELS), min_size=1, max_size=60)
EPS = 1e-6


def _split(batch):
    return [r for r, _ in batch], [g for _, g in batch]


def _members(groups, g):
    return [i for i, x in enumerate(groups) if x == g]


@settings(max_examples=300)
@given(BATCH)
def test_each_group_has_mean_zero_and_unit_std_when_it_varies(batch):
    rewards, groups = _split(batch)
    adv = group_normalize(rewards, groups, eps=EPS)
    assert all(math.isfinite(a) for a in adv)
    for g in set(groups):
        idx = _members(groups, g)
        values = [adv[i] for i in idx]
        if len(idx) > 1 and statistics.pstdev([rewards[i] for i in idx]) >= 1e-3:
            assert statistics.fmean(values) == pytest.approx(0.0, abs=1e-9)
            assert statistics.pstdev(values) == pytest.approx(1.0, rel=1e-9)
        elif statistics.pstdev([rewards[i] for i in idx]) < EPS:
            assert values == [0.0] * len(idx)


@settings(max_examples=200)
@given(
    BATCH,
    st.lists(REWARD, min_size=2, max_size=20),
    st.floats(min_value=-100, max_value=100),
    st.floats(min_value=0.01, max_value=100),
    st.randoms(use_true_random=False),
)
def test_shifting_or_scaling_one_group_changes_nothing(batch, target_rewards, shift, scale, rnd):
    assume(statistics.pstdev(target_rewards) > 1e-2)
    mixed = batch + [(r, "target") for r in target_rewards]
    rnd.shuffle(mixed)  # the group's members interleave with the others
    rewards, groups = _split(mixed)
    before = group_normalize(rewards, groups, eps=EPS)
    moved = [r * scale + shift if g == "target" else r for r, g in zip(rewards, groups, strict=True)]
    after = group_normalize(moved, groups, eps=EPS)
    assert after == pytest.approx(before, abs=1e-6)


@settings(max_examples=200)
@given(BATCH, st.lists(REWARD, min_size=60, max_size=60), LABELS)
def test_no_leakage_across_groups(batch, replacement, target):
    rewards, groups = _split(batch)
    before = group_normalize(rewards, groups)
    changed = [replacement[i] if g == target else r for i, (r, g) in enumerate(zip(rewards, groups, strict=True))]
    after = group_normalize(changed, groups)
    for i, g in enumerate(groups):
        if g != target:
            assert after[i] == before[i]  # bit-for-bit: other groups never see this one


def test_one_group_alone_equals_it_within_a_batch():
    """The normalisation of a group does not depend on which other groups share the batch."""
    rng = random.Random(0)
    roles, types = zip(*[GROUPS[rng.randrange(6)] for _ in range(120)], strict=True)
    rewards = [rng.choice([1.0, -0.5, -1.0, 0.25]) for _ in roles]
    full = trr_advantages(rewards, roles, types)
    for group in GROUPS:
        idx = [i for i in range(len(rewards)) if (roles[i], types[i]) == group]
        alone = trr_advantages([rewards[i] for i in idx], [roles[i] for i in idx], [types[i] for i in idx])
        assert alone == [full[i] for i in idx]


def test_hand_made_values():
    adv = trr_advantages(
        [1.0, -0.5, -1.0, 0.5, 0.0, -1.0, 1.0],
        ["solve", "solve", "solve", "propose", "propose", "propose", "solve"],
        ["deduction", "deduction", "deduction", "deduction", "deduction", "abduction", "abduction"],
    )
    # solve/deduction: mean -1/6, pstd sqrt(7/12 ... ) computed by hand below
    mean = (1.0 - 0.5 - 1.0) / 3
    std = math.sqrt(((1.0 - mean) ** 2 + (-0.5 - mean) ** 2 + (-1.0 - mean) ** 2) / 3)
    assert adv[:3] == pytest.approx([(1.0 - mean) / std, (-0.5 - mean) / std, (-1.0 - mean) / std])
    assert adv[3:5] == [1.0, -1.0]  # two values: always +-1
    assert adv[5] == 0.0 and adv[6] == 0.0  # groups of one


def test_degenerate_groups_give_zero_never_nan():
    assert group_normalize([], []) == []
    assert group_normalize([0.7], ["a"]) == [0.0]
    assert group_normalize([-1.0] * 64, ["a"] * 64) == [0.0] * 64
    assert group_normalize([0.1, 0.1 + 1e-12], ["a", "a"]) == [0.0, 0.0]  # float noise is not signal
    with pytest.raises(ValueError):
        group_normalize([1.0], ["a", "b"])
    with pytest.raises(ValueError, match="finite"):
        group_normalize([float("nan"), 1.0], ["a", "a"])
    with pytest.raises(ValueError):
        trr_advantages([1.0], ["nope"], ["deduction"])  # roles are the two of self-play


def test_a_registered_type_of_ones_own_is_its_own_group():
    # task types are names (azr_core.algo.types): a fourth type gets its own baseline, apart from deduction's
    adv = trr_advantages([1.0, 0.0, 1.0, 1.0], ["solve"] * 4, ["deduction", "deduction", "typeof", "typeof"])
    assert adv == [1.0, -1.0, 0.0, 0.0]
