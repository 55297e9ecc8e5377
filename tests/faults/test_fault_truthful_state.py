"""Truthful state in the run folder and in MLflow: a session ends FINISHED only on success (FAILED on an error,
KILLED on a signal or cancellation), and the run folder keeps the first resolved config and each session's."""

from __future__ import annotations

import doctest
from pathlib import Path

import pytest
import yaml
from mlflow import MlflowClient
from prefect.exceptions import TerminationSignal

import azr_core.tracking.runs as tracking_mod
from azr_core.config import load_config
from azr_core.store import open_run
from azr_core.tracking.runs import TAG_END_REASON, Tracker, TrackingConfig, end_status


@pytest.fixture(scope="module")
def uri(tmp_path_factory) -> str:
    return f"sqlite:///{tmp_path_factory.mktemp('mlflow') / 'mlflow.db'}"


def _status(uri: str, tracker: Tracker) -> tuple[str, str | None]:
    run = MlflowClient(tracking_uri=uri).get_run(tracker.run_id)
    return run.info.status, run.data.tags.get(TAG_END_REASON)


@pytest.mark.parametrize(
    ("exc", "status"),
    [
        (None, "FINISHED"),
        (ValueError("executor refused"), "FAILED"),
        (KeyboardInterrupt(), "KILLED"),  # SIGINT
        (TerminationSignal(15), "KILLED"),  # what Prefect raises in a flow run on SIGTERM (cancel, worker stop)
    ],
)
def test_a_session_ends_with_the_status_of_how_it_ended(uri: str, tmp_path: Path, exc, status: str):
    with pytest.raises(type(exc)) if exc is not None else _nothing():
        with Tracker(tmp_path / "run", TrackingConfig(tracking_uri=uri)) as tracker:
            tracker.log_metrics({"x": 1.0}, step=1)
            if exc is not None:
                raise exc
    got, reason = _status(uri, tracker)
    assert got == status
    if exc is not None:
        assert reason.startswith(type(exc).__name__)


class _nothing:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def test_close_refuses_unknown_statuses_and_a_resume_runs_again(uri: str, tmp_path: Path):
    first = Tracker(tmp_path / "run", TrackingConfig(tracking_uri=uri))
    with pytest.raises(ValueError, match="use one of FINISHED, FAILED, KILLED"):
        first.close("DONE")
    first.close("FAILED", reason="RuntimeError: worker died")
    first.close("FINISHED")  # idempotent: the first end stands
    assert _status(uri, first) == ("FAILED", "RuntimeError: worker died")
    second = Tracker(tmp_path / "run", TrackingConfig(tracking_uri=uri))  # the next session resumes it
    assert second.run_id == first.run_id and _status(uri, second)[0] == "RUNNING"
    second.close(end_status(None))
    assert _status(uri, second)[0] == "FINISHED"


def test_end_status_doctest():
    assert doctest.testmod(tracking_mod).failed == 0


def test_the_run_folder_keeps_the_first_config_and_each_sessions(tmp_path: Path):
    run_dir = tmp_path / "run"
    first = load_config(None, ["run.iterations=5", "store.fsync=false"], profile="cpu-tiny")
    with open_run(run_dir, first):
        pass
    second = load_config(None, ["run.iterations=9", "store.fsync=false"], profile="cpu-tiny")
    with open_run(run_dir, second):
        pass
    assert yaml.safe_load((run_dir / "config.yaml").read_text())["run"]["iterations"] == 5  # never replaced
    sessions = sorted((run_dir / "configs").iterdir())
    assert [p.name[:12] for p in sessions] == ["session-0001", "session-0002"]
    assert [yaml.safe_load(p.read_text())["run"]["iterations"] for p in sessions] == [5, 9]
    assert load_config(sessions[1]) == second  # each file resolves back to its session's config
