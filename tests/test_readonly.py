"""The read-only commands never write: `azr report`, `azr sql`, `azr status --run` and `azr eval score`, each run as
a user runs it on a run folder with a real MLflow store (SQLite) whose run is FINISHED, leave the run's status, end
time, tags, params and metrics, the model versions' tags and aliases, and every file of the run folder and of the
MLflow store (bytes and mtimes) as they were. (`azr report` used to reopen the run through a Tracker, which set a
FINISHED run RUNNING, and wrote its page into the run folder.)"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from reportutil import make_registry, make_run

AZR = [sys.executable, "-m", "azr_core.cli"]


def _files(*roots: Path) -> dict[str, tuple[str, int]]:
    """Every file and folder under `roots`: content hash (files) and mtime in ns."""
    out = {}
    for root in roots:
        for p in sorted([root, *root.rglob("*")]):
            digest = hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else "dir"
            out[str(p)] = (digest, p.stat().st_mtime_ns)
    return out


def _mlflow_state(uri: str, run_id: str) -> dict:
    from azr_core.tracking.store import mlflow_client

    client = mlflow_client(uri)
    run = client.get_run(run_id)
    versions = client.search_model_versions("name = 'azr-policy'")
    return {
        "status": run.info.status,
        "end_time": run.info.end_time,
        "tags": dict(run.data.tags),
        "params": dict(run.data.params),
        "metrics": dict(run.data.metrics),
        "artifacts": sorted(a.path for a in client.list_artifacts(run_id)),
        "versions": {
            v.version: (dict(v.tags), sorted(client.get_model_version("azr-policy", v.version).aliases))
            for v in versions
        },  # fmt: skip
        "model_tags": dict(client.get_registered_model("azr-policy").tags),
    }


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("readonly")
    run_dir = root / "run"
    make_run(run_dir)
    uri = make_registry(run_dir, root / "mlflow")
    (run_id,) = [r["run_id"] for r in json.loads((run_dir / "mlflow_run.json").read_text())["runs"].values()]
    (root / "cwd").mkdir()
    completions = root / "completions.jsonl"
    completions.write_text(json.dumps({"id": "sample_0", "completion": "<answer>'abc'</answer>"}) + "\n")
    env = {**os.environ, "MLFLOW_TRACKING_URI": uri, "AZR_STATE_DIR": str(root / "stack"), "PYTHONPATH": os.getcwd()}
    return {"root": root, "run_dir": run_dir, "uri": uri, "run_id": run_id, "env": env, "completions": completions}


COMMANDS = {
    "report": lambda w: ["report", str(w["run_dir"])],  # default output folder: reports/<run name> under the cwd
    "report --out": lambda w: ["report", str(w["run_dir"]), "--out", str(w["root"] / "out")],
    "sql": lambda w: ["sql", "--run", str(w["run_dir"]), "SELECT bench, count(*) FROM evals GROUP BY ALL"],
    "status --run": lambda w: ["status", "--run", str(w["run_dir"])],
    "eval score": lambda w: ["eval", "score", "cruxeval-o", str(w["completions"])],
}


@pytest.mark.sandbox
@pytest.mark.parametrize("name", list(COMMANDS))
def test_a_read_only_command_changes_nothing(world, name):
    mlflow_dir = world["root"] / "mlflow"
    files_before = _files(world["run_dir"], mlflow_dir)
    state_before = _mlflow_state(world["uri"], world["run_id"])
    assert state_before["status"] == "FINISHED"
    done = subprocess.run([*AZR, *COMMANDS[name](world)], capture_output=True, text=True, timeout=300,
                          env=world["env"], cwd=world["root"] / "cwd")  # fmt: skip
    # status exits 3 here (no stack is up) and still shows the run; the others succeed.
    assert done.returncode == (3 if name == "status --run" else 0), done.stdout + done.stderr
    assert _mlflow_state(world["uri"], world["run_id"]) == state_before
    assert _files(world["run_dir"], mlflow_dir) == files_before
    if name == "report":
        assert (world["root"] / "cwd" / "reports" / "run" / "index.html").is_file()
    if name == "status --run":
        assert "MLflow run (FINISHED; metrics per iteration): http://127.0.0.1:5000/#/experiments/" in done.stdout
        assert "/runs/flow-run/0f1e2d3c" in done.stdout and "model: models:/azr-policy/2 (iteration 2)" in done.stdout
        assert "aliases: none" in done.stdout and "promotion: rejected against version 1, p = 0.42" in done.stdout
    if name == "sql":
        assert "cruxeval-o" in done.stdout


def test_report_with_mlflow_logs_the_page_and_leaves_the_run_finished(world, tmp_path):
    """Asked for (`--mlflow`), the report is logged as artifacts: that is the one write, the run stays FINISHED."""
    before = _mlflow_state(world["uri"], world["run_id"])
    done = subprocess.run([*AZR, "report", str(world["run_dir"]), "--out", str(tmp_path / "out"), "--mlflow"],
                          capture_output=True, text=True, timeout=300, env=world["env"])  # fmt: skip
    assert done.returncode == 0, done.stderr
    after = _mlflow_state(world["uri"], world["run_id"])
    assert after["artifacts"] == sorted({*before["artifacts"], "report"})
    assert {k: v for k, v in after.items() if k != "artifacts"} == {k: v for k, v in before.items() if k != "artifacts"}
