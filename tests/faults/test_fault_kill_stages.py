"""SIGKILL at each point of an iteration, then resume: the run goes on from its last commit, every committed row is
there exactly once, the same MLflow run continues with each iteration's metrics logged once and its model version
registered once (a kill after COMMITTED is repaired on resume). The process runs the real executor, store and MLflow
store with the scripted policy of tests/scripted.py (real checkpoints under a SIGKILL: test_pipeline.py)."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from stackutil import assert_each_row_once

from azr_core.store import connect, read_commit

HELPER = Path(__file__).with_name("_kill_at_stage.py")
POINTS = ["seed", "propose", "execute-validate", "solve", "reward", "update", "checkpoint", "commit", "after-commit"]

pytestmark = [pytest.mark.sandbox, pytest.mark.slow]


def _run(tmp: Path, point: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(HELPER), str(tmp), point], capture_output=True, text=True, timeout=600)


@pytest.fixture(scope="module")
def committed_once(tmp_path_factory) -> Path:
    """A run folder (and its MLflow store) with iteration 1 committed."""
    tmp = tmp_path_factory.mktemp("base")
    first = _run(tmp, "none")
    assert first.returncode == 0 and first.stdout.strip() == "1", first.stderr[-3000:]
    return tmp


@pytest.mark.parametrize("point", POINTS)
def test_sigkill_then_resume(committed_once: Path, tmp_path: Path, point: str):
    shutil.copytree(committed_once, tmp_path, dirs_exist_ok=True)
    run = tmp_path / "run"
    run_id = json.loads((run / "mlflow_run.json").read_text())

    killed = _run(tmp_path, point)
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-3000:]
    before = 2 if point == "after-commit" else 1
    assert read_commit(run).iteration == before

    resumed = _run(tmp_path, "none")
    assert resumed.returncode == 0 and resumed.stdout.strip() == str(before + 1), resumed.stderr[-3000:]
    last = before + 1
    con = connect(run)
    assert_each_row_once(con)
    its = [r[0] for r in con.execute("SELECT iteration FROM iterations ORDER BY 1").fetchall()]
    assert its == list(range(last + 1))
    assert (run / "checkpoints" / f"{last:06d}").is_dir() and not list((run / "checkpoints").glob(".*partial"))

    import mlflow

    (rid,) = {r["run_id"] for r in run_id["runs"].values()}
    now = {r["run_id"] for r in json.loads((run / "mlflow_run.json").read_text())["runs"].values()}
    assert now == {rid}  # the same MLflow run continued (the copy's store holds it under the copy's URI)
    client = mlflow.MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    steps = sorted(m.step for m in client.get_metric_history(rid, "train/step"))
    assert steps == list(range(1, last + 1))  # each committed iteration's metrics, once
    versions = client.search_model_versions(f"run_id = '{rid}'")
    assert sorted(int(v.tags["azr.iteration"]) for v in versions) == list(range(1, last + 1))
    assert client.get_run(rid).info.status == "FINISHED"
