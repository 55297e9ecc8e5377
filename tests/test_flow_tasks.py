"""The flow's side of the loop (tasks/selfplay.py): how its `call` runs what `run_iteration` asks."""

from __future__ import annotations

from azr_core.selfplay import stages


def test_the_flow_asks_resample_through_call_and_unwraps_its_own_handoff():
    """run_iteration asks `resample` through `call`: the flow's call unwraps its Handoff itself, so no Prefect-side
    object reaches azr_core (it used to be unwrapped in the loop)."""
    from types import SimpleNamespace

    from tasks.selfplay import Handoff, as_tasks

    s = SimpleNamespace(cfg=SimpleNamespace(selfplay=SimpleNamespace(degenerate_retries=1)))
    dead = SimpleNamespace(live_groups=[], attempt=1)
    call = as_tasks(after=None)
    assert call(stages.resample, s, Handoff(dead)) is True
    assert call(stages.resample, s, Handoff(SimpleNamespace(live_groups=["solve/deduction"], attempt=1))) is False
    assert call(stages.resample, s, Handoff(SimpleNamespace(live_groups=[], attempt=2))) is False
