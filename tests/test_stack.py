"""The real `azr up` / `status` / `down` on free ports with a temporary state folder: services answer, the stack is
idempotent, MLflow tracking and the registry work through the served store, and nothing is left running."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.request
from pathlib import Path

import psutil
import pytest
from stackutil import free_port

from azr_core.stack.local import SERVICES

AZR = str(Path(sys.executable).parent / "azr")


def azr(*args: str, env: dict[str, str], timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run([AZR, *args], env=env, capture_output=True, text=True, timeout=timeout)


def get(url: str) -> tuple[int, str]:
    with urllib.request.urlopen(url, timeout=5) as resp:  # noqa: S310 - loopback
        return resp.status, resp.read().decode()


def alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


@pytest.mark.slow
def test_up_status_down(tmp_path):
    state = tmp_path / "stack"
    prefect_port, mlflow_port = free_port(), free_port()
    env = {**os.environ, "AZR_STATE_DIR": str(state)}
    env.pop("MLFLOW_TRACKING_URI", None)
    pids: list[int] = []
    try:
        up = azr("up", "--prefect-port", str(prefect_port), "--mlflow-port", str(mlflow_port), env=env)
        assert up.returncode == 0, up.stdout + up.stderr
        assert f"export PREFECT_API_URL=http://127.0.0.1:{prefect_port}/api" in up.stdout

        # Every service's own pid and all its descendants, to check after `down` that none survived.
        for service in SERVICES:
            pid = json.loads((state / "run" / f"{service}.json").read_text())["pid"]
            pids += [pid, *(c.pid for c in psutil.Process(pid).children(recursive=True))]
        for pid in pids:  # loopback only: no listening socket of ours on another address
            for conn in psutil.Process(pid).net_connections(kind="inet"):
                if conn.status == psutil.CONN_LISTEN:
                    assert conn.laddr.ip == "127.0.0.1", conn

        assert get(f"http://127.0.0.1:{prefect_port}/api/health") == (200, "true")
        assert get(f"http://127.0.0.1:{mlflow_port}/health")[0] == 200
        code, pool = get(f"http://127.0.0.1:{prefect_port}/api/work_pools/azr-pool")
        assert code == 200 and json.loads(pool)["type"] == "process"

        status = azr("status", env=env)
        assert status.returncode == 0, status.stdout + status.stderr
        lines = [ln for ln in status.stdout.splitlines() if ln.split()[0] in SERVICES]
        assert len(lines) == 3 and all(ln.split()[1] == "running" for ln in lines), status.stdout
        assert f"http://127.0.0.1:{mlflow_port}" in status.stdout and str(state / "logs") in status.stdout
        assert "pool azr-pool: azr-worker (online)" in status.stdout, status.stdout  # the pool's workers

        env_sh = (state / "env.sh").read_text()
        assert f"export MLFLOW_TRACKING_URI=http://127.0.0.1:{mlflow_port}" in env_sh
        sourced = subprocess.run(["bash", "-c", f"source {state / 'env.sh'} && echo $PREFECT_API_URL"],
                                 capture_output=True, text=True, check=True)  # fmt: skip
        assert sourced.stdout.strip() == f"http://127.0.0.1:{prefect_port}/api"

        # Idempotent: a second `up` (ports from stack.json) leaves the running services alone.
        again = azr("up", env=env)
        assert again.returncode == 0 and again.stdout.count("already running") == 3, again.stdout + again.stderr
        for service in SERVICES:
            assert json.loads((state / "run" / f"{service}.json").read_text())["pid"] in pids
        clash = azr("up", "--prefect-port", str(free_port()), env=env)
        assert clash.returncode == 1 and "azr down" in clash.stderr

        _tracking_through_the_served_store(tmp_path, state, mlflow_port)

        down = azr("down", env=env)
        assert down.returncode == 0, down.stdout + down.stderr
        assert [pid for pid in pids if alive(pid)] == []
        status = azr("status", env=env)
        assert status.returncode == 3 and status.stdout.count("stopped") == 3, status.stdout
        assert azr("down", env=env).stdout.count("not running") == 3  # down is idempotent too
    finally:
        azr("down", env=env, timeout=120)
        for pid in pids:  # last resort, so a failed test never leaves servers on the shared cores
            if alive(pid):
                psutil.Process(pid).kill()


def _tracking_through_the_served_store(tmp_path: Path, state: Path, mlflow_port: int) -> None:
    """A model version registered through the MLflow UI server (as env.sh's MLFLOW_TRACKING_URI points) loads back,
    and the run folder resumes the same MLflow run when opened on the SQLite file directly (as flow runs do)."""
    from azr_core.policy.tiny import make_tiny_model_dir
    from azr_core.tracking.registry import load_model_folder
    from azr_core.tracking.runs import Tracker, TrackingConfig

    http = f"http://127.0.0.1:{mlflow_port}"
    run_dir = tmp_path / "run"
    tracker = Tracker(run_dir, TrackingConfig(tracking_uri=http))
    tracker.log_metrics({"solve/accuracy": 0.5}, step=1)
    mv = tracker.register_checkpoint(make_tiny_model_dir(tmp_path / "m", hidden=16, layers=1), iteration=1)
    assert str(mv.version) == "1"
    assert (load_model_folder("models:/azr-policy/1", tmp_path / "dl", tracking_uri=http) / "config.json").is_file()
    direct = Tracker(run_dir, TrackingConfig(tracking_uri=f"sqlite:///{state / 'mlflow.db'}"))
    assert direct.run_id == tracker.run_id


def test_listen_address_and_worker_settings(tmp_path):
    from azr_core.stack.join import check_run_folder_shared
    from azr_core.stack.settings import StackSettings

    # Loopback unless asked; an address given is what the URLs use; all interfaces are reached through loopback.
    assert StackSettings.resolve(tmp_path).prefect_url == "http://127.0.0.1:4200"
    assert StackSettings.resolve(tmp_path, host="10.1.2.3").mlflow_url == "http://10.1.2.3:5000"
    assert StackSettings.resolve(tmp_path, host="0.0.0.0").prefect_api_url == "http://127.0.0.1:4200/api"
    assert StackSettings.resolve(tmp_path, host="fd00::5").prefect_url == "http://[fd00::5]:4200"
    with pytest.raises(ValueError, match="not an IP address: give this host's address"):
        StackSettings.resolve(tmp_path, host="my-laptop")
    # What `azr up` was last brought up with wins over the defaults; a stack.json older than `host` reads as loopback.
    (tmp_path / "stack.json").write_text('{"prefect_port": 4300, "host": "10.1.2.3", "local_worker": false}')
    saved = StackSettings.resolve(tmp_path)
    assert (saved.prefect_url, saved.local_worker) == ("http://10.1.2.3:4300", False)
    (tmp_path / "stack.json").write_text('{"prefect_port": 4300}')
    assert StackSettings.resolve(tmp_path).host == "127.0.0.1" and StackSettings.resolve(tmp_path).local_worker
    # A run folder off the state folder's filesystem is refused on a joined worker only.
    joined = {"AZR_JOINED_WORKER": "w1", "AZR_STATE_DIR": str(tmp_path)}
    check_run_folder_shared(tmp_path / "runs" / "a", joined)
    check_run_folder_shared("/dev/shm/x", {"AZR_STATE_DIR": str(tmp_path)})
    if os.stat("/dev/shm").st_dev != os.stat(tmp_path).st_dev:
        with pytest.raises(ValueError, match="not on the shared filesystem .* worker w1"):
            check_run_folder_shared("/dev/shm/x", joined)


def test_up_refuses_a_bad_listen_address(tmp_path):
    env = {**os.environ, "AZR_STATE_DIR": str(tmp_path / "stack")}
    done = azr("up", "--host", "my-laptop", env=env, timeout=60)
    assert done.returncode == 2 and "not an IP address" in done.stderr, done.stderr
    assert not (tmp_path / "stack" / "stack.json").exists()


def test_up_worker_flags_override_the_saved_choice_and_otherwise_keep_it(tmp_path, monkeypatch):
    """`azr up --no-worker` is kept in stack.json; a later `azr up --worker` starts a worker here again."""
    from typer.testing import CliRunner

    import azr_core.stack.local
    from azr_core.cli import build_app

    seen = []
    monkeypatch.setattr(azr_core.stack.local, "up", lambda settings, **kw: seen.append(settings.local_worker))
    app = build_app(["azr_core.commands.stack"])
    (tmp_path / "stack.json").write_text('{"local_worker": false}')  # what `up --no-worker` saved
    for flags, expected in (([], False), (["--worker"], True), (["--no-worker"], False)):
        result = CliRunner().invoke(app, ["up", "--state-dir", str(tmp_path), *flags])
        assert result.exit_code == 0, result.output
        assert seen[-1] is expected, flags
    (tmp_path / "stack.json").unlink()
    CliRunner().invoke(app, ["up", "--state-dir", str(tmp_path)])
    assert seen[-1] is True  # a new stack has a worker
