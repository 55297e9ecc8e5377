"""`register_last`, the end of every self-play flow run, on a real MLflow store (SQLite) and a real model folder: the
last committed iteration becomes a version once, a version the commit made already is not made again, and
`register_every=0` or an unpublished iteration registers nothing. (The flow on the real stack: test_mission.py.)"""

from __future__ import annotations

from types import SimpleNamespace

from azr_core.policy.tiny import make_tiny_model_dir
from azr_core.selfplay.commit import register_last
from azr_core.tracking.runs import Tracker, TrackingConfig


def _session(tmp_path, every: int = 10, iteration: int = 3):
    model = make_tiny_model_dir(tmp_path / "model", hidden=16, layers=1)
    cfg = TrackingConfig(tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}", register_every=every)
    tracker = Tracker(tmp_path / "run", cfg)
    # The parts of a Session register_last reads; the tracker and the model folder are real.
    return SimpleNamespace(last_iteration=iteration, tracker=tracker, unpublished=[], flow_run_id="fr-1",
                           checkpoint_dir=lambda it: model)  # fmt: skip


def test_the_last_iteration_becomes_a_version_once(tmp_path):
    s = _session(tmp_path)
    first = register_last(s)
    assert str(first["model_version"]) == "1" and first["new"] and first["committed"] == 3
    mv = s.tracker.client.get_model_version("azr-policy", "1")
    assert mv.tags["azr.iteration"] == "3" and mv.tags["azr.prefect_flow_run_id"] == "fr-1"
    again = register_last(s)  # the commit (register_every) or an earlier call made it: found, not made again
    assert str(again["model_version"]) == "1" and not again["new"]
    assert len(s.tracker.client.search_model_versions("name = 'azr-policy'")) == 1


def test_nothing_is_registered_when_registration_is_off_or_not_possible(tmp_path):
    off = _session(tmp_path / "off", every=0)
    assert register_last(off)["model_version"] is None
    none_yet = _session(tmp_path / "none", iteration=0)
    assert register_last(none_yet)["model_version"] is None
    down = _session(tmp_path / "down")
    down.unpublished.append(3)  # MLflow was unreachable at its commit: the next session publishes it first
    out = register_last(down)
    assert out["model_version"] is None and "not yet published" in out["error"]
    assert not down.tracker.client.search_model_versions("name = 'azr-policy'")
