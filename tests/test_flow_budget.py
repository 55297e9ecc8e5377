"""The flow's budgets: 0 iterations or 0 seconds run nothing (0 never means "no limit")."""

from __future__ import annotations

import pytest

from flows.self_play import self_play


@pytest.mark.parametrize("budget", [{"iterations": 0}, {"max_wall_s": 0}])
def test_a_zero_budget_runs_nothing(tmp_path, budget):
    run_dir = tmp_path / "run"
    out = self_play.fn(profile="cpu-tiny", run_dir=str(run_dir), **budget)  # the flow's body, no Prefect API
    assert out["iterations_done"] == 0
    assert not run_dir.exists()  # not even opened: no workers started, no folder written
