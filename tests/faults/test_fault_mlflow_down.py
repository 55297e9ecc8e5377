"""The MLflow tracking server down during commits: training goes on, and tracking catches up when the server is back
(in the same session, or in the next one if the session ended first), every iteration's metrics logged once and its
model version registered once. A real `mlflow ui` server over SQLite; the scripted policy, the real executor and
store."""

from __future__ import annotations

import signal
import sys
import time
from pathlib import Path

import psutil
import pytest
from stackutil import free_port

from azr_core.selfplay.iteration import run_iteration
from azr_core.stack.local import StackSettings, _spawn, _wait_ready
from azr_core.store import read_commit

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from scripted import make_session  # noqa: E402

pytestmark = [pytest.mark.sandbox, pytest.mark.slow]


class Server:
    """The MLflow UI service exactly as `azr up` runs it (its command and environment), on a free port."""

    def __init__(self, tmp: Path) -> None:
        self.settings = StackSettings(state_dir=tmp / "stack", mlflow_port=free_port())
        self.proc: psutil.Process | None = None

    @property
    def uri(self) -> str:
        return self.settings.mlflow_url

    def start(self) -> None:
        self.settings.state_dir.mkdir(parents=True, exist_ok=True)
        self.proc = _spawn(self.settings, "mlflow-ui")
        _wait_ready(self.settings, "mlflow-ui", self.proc, 300)

    def kill(self) -> None:
        tree = [self.proc, *self.proc.children(recursive=True)]
        for p in tree:
            p.send_signal(signal.SIGKILL)
        psutil.wait_procs(tree, timeout=30)

    def alive(self) -> bool:
        return self.proc is not None and self.proc.is_running() and self.proc.status() != psutil.STATUS_ZOMBIE


def _logged_steps(server: Server, run_dir: Path) -> list[int]:
    import json

    from mlflow import MlflowClient

    client = MlflowClient(server.uri)
    (recorded,) = json.loads((run_dir / "mlflow_run.json").read_text())["runs"].values()
    return sorted(m.step for m in client.get_metric_history(recorded["run_id"], "train/step"))


def _versions(server: Server) -> list[str]:
    from mlflow import MlflowClient

    client = MlflowClient(server.uri, registry_uri=server.uri)
    return sorted(v.tags.get("azr.iteration") for v in client.search_model_versions("name='azr-policy'"))


def test_training_goes_on_while_mlflow_is_down_and_tracking_catches_up(tmp_path, caplog):
    server = Server(tmp_path)
    server.start()
    try:
        over = {"tracking.tracking_uri": server.uri, "tracking.register_every": 1, "buffers.seed_max_rounds": 0}
        with make_session(tmp_path, **over) as s:
            run_iteration(s)
            server.kill()
            began = time.monotonic()
            out = run_iteration(s)  # committed, not published
            assert time.monotonic() - began < 120  # bounded retries (tracking.http_retries), not MLflow's ~4 min
            assert out["committed"] == 2 and out["model_version"] is None and s.unpublished == [2]
            assert "MLflow unreachable after iteration 2 was committed" in caplog.text
            server.start()
            out = run_iteration(s)  # publishes 2, then 3
            assert out["model_version"] is not None and s.unpublished == []
            assert _logged_steps(server, tmp_path / "run") == [1, 2, 3]
            server.kill()
            run_iteration(s)  # 4 committed; the session then ends while MLflow is still down
        assert read_commit(tmp_path / "run").iteration == 4
        server.start()
        with make_session(tmp_path, **over) as s:  # the next session publishes what the last one could not
            assert s.last_iteration == 4
        assert _logged_steps(server, tmp_path / "run") == [1, 2, 3, 4]
        assert _versions(server) == ["1", "2", "3", "4"]
    finally:
        if server.alive():
            server.kill()
