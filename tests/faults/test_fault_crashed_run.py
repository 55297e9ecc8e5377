"""Truthful state without a person: on the real `azr up` stack, a flow run whose heartbeats stop is marked Crashed by
the automation `azr up` creates; the services run with telemetry off, durable leases and the heartbeat period set."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.request
import uuid
from datetime import UTC, datetime
from pathlib import Path

import psutil
import pytest

from azr_core.stack.local import CRASH_AFTER_S, CRASH_AUTOMATION, HEARTBEAT_S, LEASE_STORAGE, SERVICES, telemetry_env

AZR = str(Path(sys.executable).parent / "azr")


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _api(url: str, body: object | None = None, method: str | None = None) -> object:
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method=method, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=30) as resp:  # noqa: S310 - loopback
        text = resp.read().decode()
    return json.loads(text) if text else None


def test_telemetry_is_off_unless_the_user_opts_in():
    off = telemetry_env({})
    assert off["DO_NOT_TRACK"] == "true" and off["MLFLOW_DISABLE_TELEMETRY"] == "true"
    assert off["PREFECT_SERVER_ANALYTICS_ENABLED"] == "false"
    assert telemetry_env({"AZR_ALLOW_TELEMETRY": "1"}) == {}


@pytest.mark.slow
def test_a_silent_flow_run_is_marked_crashed_by_the_stack(tmp_path: Path):
    state = tmp_path / "stack"
    prefect_port, mlflow_port = _free_port(), _free_port()
    env = {**os.environ, "AZR_STATE_DIR": str(state)}
    env.pop("AZR_ALLOW_TELEMETRY", None)
    api = f"http://127.0.0.1:{prefect_port}/api"
    try:
        up = subprocess.run([AZR, "up", "--prefect-port", str(prefect_port), "--mlflow-port", str(mlflow_port)],
                            env=env, capture_output=True, text=True, timeout=400)  # fmt: skip
        assert up.returncode == 0, up.stdout + up.stderr
        assert f"created: {CRASH_AUTOMATION!r}" in up.stdout
        again = subprocess.run([AZR, "up"], env=env, capture_output=True, text=True, timeout=400)
        assert again.returncode == 0 and f"exists: {CRASH_AUTOMATION!r}" in again.stdout  # idempotent

        # Every service: telemetry off, and the server keeps leases on disk; the worker passes the heartbeat on.
        for service in SERVICES:
            pid = json.loads((state / "run" / f"{service}.json").read_text())["pid"]
            penv = psutil.Process(pid).environ()
            assert penv.get("DO_NOT_TRACK") == "true" and penv.get("MLFLOW_DISABLE_TELEMETRY") == "true", service
            assert penv.get("PREFECT_SERVER_CONCURRENCY_LEASE_STORAGE") == LEASE_STORAGE, service
            assert penv.get("PREFECT_FLOWS_HEARTBEAT_FREQUENCY") == str(HEARTBEAT_S), service
        assert "MLFLOW_DISABLE_TELEMETRY=true" in (state / "env.sh").read_text()

        autos = [a for a in _api(f"{api}/automations/filter", {}) if a["name"] == CRASH_AUTOMATION]
        assert len(autos) == 1 and autos[0]["trigger"]["posture"] == "Proactive"
        assert autos[0]["trigger"]["within"] > HEARTBEAT_S  # the window must exceed the heartbeat period

        # A flow run that beat once and then went silent, as a SIGKILLed flow-run process does.
        flow = _api(f"{api}/flows/", {"name": "azr-crash-probe"})
        run = _api(f"{api}/flow_runs/", {"flow_id": flow["id"], "state": {"type": "RUNNING", "name": "Running"}})
        beat = {"id": str(uuid.uuid4()), "occurred": datetime.now(UTC).isoformat(),
                "event": "prefect.flow-run.heartbeat",
                "resource": {"prefect.resource.id": f"prefect.flow-run.{run['id']}"}}  # fmt: skip
        _api(f"{api}/events", [beat])
        t0 = time.monotonic()
        state_type = "RUNNING"
        while time.monotonic() - t0 < CRASH_AFTER_S + 150:
            state_type = _api(f"{api}/flow_runs/{run['id']}")["state"]["type"]
            if state_type != "RUNNING":
                break
            time.sleep(5)
        detected = time.monotonic() - t0
        print(f"crashed run detected after {detected:.0f} s (window {CRASH_AFTER_S} s); load {os.getloadavg()}")
        assert state_type == "CRASHED"
        assert detected >= CRASH_AFTER_S - 5  # not before the window: a live run is never crashed early
    finally:
        down = subprocess.run([AZR, "down"], env=env, capture_output=True, text=True, timeout=300)
        assert down.returncode == 0, down.stdout + down.stderr
