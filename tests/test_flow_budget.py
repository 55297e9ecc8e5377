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


def test_a_finished_run_is_not_opened_and_its_state_says_so(tmp_path):
    from prefect.states import State

    from azr_core.config import StoreConfig
    from azr_core.store import open_run

    run_dir = tmp_path / "run"
    with open_run(run_dir) as store:
        store.config = StoreConfig(fsync=False)
        for it in (1, 2):
            w = store.begin()
            w.write("rollouts", [{"rollout_id": f"{it}", "role": "solve", "task_type": "deduction", "reward": 1.0}])
            w.commit(f"ckpt{it}")
    before = sorted(p.name for p in run_dir.iterdir())
    out = self_play.fn(profile="cpu-tiny", run_dir=str(run_dir), overrides=["run.iterations=2"])
    assert isinstance(out, State) and out.is_completed() and out.name == "Nothing to train"
    assert "reached run.iterations=2: nothing left to train" in out.message and "run.iterations=4" in out.message
    assert sorted(p.name for p in run_dir.iterdir()) == before  # not opened: no workers, no config, no logs
