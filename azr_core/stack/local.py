"""The local stack: a Prefect server, a process work pool and its worker, and an MLflow UI, all on 127.0.0.1.

    up(StackSettings.resolve())    # idempotent: starts what is not running, waits until each service is healthy
    status(settings)               # one ServiceStatus per service
    down(settings)                 # stop each service's whole process tree (flow runs included), verified

Everything lives in one state folder (`$AZR_STATE_DIR`, else `.azr/stack/` at the repo root): `stack.json` (the
ports and pool the stack was brought up with), `run/<service>.json` (pid and start time, so a recycled pid is never
mistaken for ours), `logs/<service>.log`, the Prefect home with its SQLite database, `mlflow.db`, the MLflow artifacts
and `env.sh` for scripts to source. Prefect and MLflow are started through their CLIs: this module never imports
them, so it stays quick and framework-free.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shlex
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

import psutil

from azr_core.common.atomic import atomic_write_text
from azr_core.stack.crash_automation import CRASH_AFTER_S, CRASH_AUTOMATION, HEARTBEAT_S, crash_automation
from azr_core.stack.processes import alive, log_tail, recorded_process, spawn_detached, stop_process_tree
from azr_core.stack.settings import (  # noqa: F401 - re-exported: the stack's settings are part of its API
    DEFAULT_MLFLOW_PORT,
    DEFAULT_POOL,
    DEFAULT_PREFECT_PORT,
    HOST,
    SERVICES,
    TELEMETRY_OPT_IN,
    WORKER_NAME,
    StackSettings,
    read_stack_file,
    repo_root,
    resolve_state_dir,
    telemetry_env,
)

# Leases of deployment concurrency slots in files under PREFECT_HOME: the in-memory default forgets them on a server
# restart, so a slot held then stays taken until the lease would have expired.
LEASE_STORAGE = "prefect.server.concurrency.lease_storage.filesystem"
STACK_ID_VARIABLE = "azr_stack_id"  # the Prefect variable that holds the stack's id (see `azr join`)


class StackError(RuntimeError):
    """A service failed to start, stop or answer; the message says which and shows its log tail."""


@dataclass
class ServiceStatus:
    """One service as `azr status` shows it."""

    name: str
    state: str  # running | unhealthy | stopped
    pid: int | None
    url: str
    log: Path
    detail: str = field(default="")

    def line(self) -> str:
        pid = f"pid {self.pid}" if self.pid else "pid -"
        extra = f"  ({self.detail})" if self.detail else ""
        return f"{self.name:<15} {self.state:<9} {pid:<10} {self.url:<24} log {self.log}{extra}"


# ---- HTTP and processes --------------------------------------------------------------------------------------------


def http_call(url: str, *, body: dict[str, object] | None = None, timeout: float = 5.0,
          method: str | None = None) -> tuple[int, str]:  # fmt: skip
    """(status, text) of a GET (or a JSON POST when `body`, or `method`); status 0 when nothing answers."""
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"}, method=method)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:  # noqa: S310 - the stack's own URLs
            return resp.status, resp.read().decode("utf-8", "replace")
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode("utf-8", "replace")
    except (urllib.error.URLError, OSError):
        return 0, ""


def _port_in_use(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM) as s:
        s.settimeout(0.5)
        return s.connect_ex((host, port)) == 0


def console_script(name: str) -> str:
    """A console script of this virtualenv (beside the running python), else from PATH."""
    beside = Path(sys.executable).parent / name
    return str(beside) if beside.exists() else name


# ---- the services --------------------------------------------------------------------------------------------------


def _base_env(settings: StackSettings) -> dict[str, str]:
    prefect_home = settings.state_dir / "prefect"
    env = dict(os.environ)
    env.update({
        "PREFECT_HOME": str(prefect_home),
        "PREFECT_API_URL": settings.prefect_api_url,
        # Explicit so that a PREFECT_API_DATABASE_CONNECTION_URL in the user's environment cannot redirect it.
        "PREFECT_API_DATABASE_CONNECTION_URL": f"sqlite+aiosqlite:///{prefect_home / 'prefect.db'}",
        "PREFECT_SERVER_CONCURRENCY_LEASE_STORAGE": LEASE_STORAGE,
        "PREFECT_FLOWS_HEARTBEAT_FREQUENCY": str(HEARTBEAT_S),  # flow runs inherit it from the worker
        "AZR_STATE_DIR": str(settings.state_dir),
        "PYTHONUNBUFFERED": "1",
        **telemetry_env(),
    })  # fmt: skip
    return env


def ensure_crash_automation(settings: StackSettings) -> str:
    """Create the crash automation on the stack's Prefect server unless one of that name exists: 'exists' or
    'created'."""
    code, text = http_call(f"{settings.prefect_api_url}/automations/filter", body={}, timeout=10.0)
    if code != 200:
        raise StackError(f"listing Prefect automations failed: HTTP {code or 'no answer'} {text[:200]}")
    if any(a.get("name") == CRASH_AUTOMATION for a in json.loads(text)):
        return "exists"
    code, text = http_call(f"{settings.prefect_api_url}/automations/", body=crash_automation(), timeout=10.0)
    if code not in (200, 201):
        raise StackError(f"creating the crash automation failed: HTTP {code or 'no answer'} {text[:300]}")
    return "created"


def _command(settings: StackSettings, service: str) -> tuple[list[str], dict[str, str]]:
    env = _base_env(settings)
    if service == "prefect-server":
        cmd = [console_script("prefect"), "--no-prompt", "server", "start", "--host", settings.host,
               "--port", str(settings.prefect_port)]  # fmt: skip
    elif service == "prefect-worker":
        cmd = [console_script("prefect"), "--no-prompt", "worker", "start", "--pool", settings.pool,
               "--type", "process", "--name", WORKER_NAME]  # fmt: skip
        env["PREFECT_WORKER_QUERY_SECONDS"] = "1"  # default 10 s: a run would wait up to that long to start
        # Flow runs track straight into the SQLite store: they must not depend on the UI process being up.
        env["MLFLOW_TRACKING_URI"] = settings.mlflow_db_uri
    elif service == "mlflow-ui":
        # `mlflow ui --workers 1`: one uvicorn worker instead of four.
        # Artifacts are local files: the tracker writes them directly, the UI reads them from the same folder.
        cmd = [console_script("mlflow"), "ui", "--backend-store-uri", settings.mlflow_db_uri,
               "--default-artifact-root", (settings.state_dir / "mlflow-artifacts").as_uri(), "--no-serve-artifacts",
               "--host", settings.host, "--port", str(settings.mlflow_port), "--workers", "1"]  # fmt: skip
        # Job execution serves GenAI scorers only; on it starts a job runner and seven huey consumers (~1 GB).
        env["MLFLOW_SERVER_ENABLE_JOB_EXECUTION"] = "false"
    else:
        raise ValueError(f"unknown service {service!r}")
    return cmd, env


def _pool_worker_rows(settings: StackSettings) -> tuple[int, list[dict]]:
    """(HTTP status, the workers the server lists in the stack's pool)."""
    code, text = http_call(f"{settings.prefect_api_url}/work_pools/{settings.pool}/workers/filter", body={})
    return code, json.loads(text) if code == 200 else []


def worker_online(settings: StackSettings, name: str = WORKER_NAME) -> tuple[bool, str]:
    """(online, why not) of the worker `name` in the stack's pool, as the Prefect server sees it."""
    code, rows = _pool_worker_rows(settings)
    if code != 200:
        return False, f"work pool {settings.pool!r} not listed by the API (HTTP {code})"
    online = [w for w in rows if w.get("name") == name and w.get("status") == "ONLINE"]
    return bool(online), "" if online else f"worker {name!r} not yet ONLINE in pool {settings.pool!r}"


def pool_workers(settings: StackSettings) -> list[tuple[str, str]]:
    """(name, status) of every worker the server knows in the stack's pool, local or joined from another host; []
    when the server does not answer."""
    return sorted((w["name"], w.get("status") or "?") for w in _pool_worker_rows(settings)[1])


def _healthy(settings: StackSettings, service: str) -> tuple[bool, str]:
    """(ready, why not) from the service's own health answer."""
    if service == "prefect-server":
        code, _ = http_call(f"{settings.prefect_api_url}/health")
        return code == 200, f"{settings.prefect_api_url}/health answered {code or 'nothing'}"
    if service == "mlflow-ui":
        code, _ = http_call(f"{settings.mlflow_url}/health")
        return code == 200, f"{settings.mlflow_url}/health answered {code or 'nothing'}"
    return worker_online(settings)


def _spawn(settings: StackSettings, service: str) -> psutil.Process:
    cmd, env = _command(settings, service)
    # cwd: the repo, so that flow runs the worker starts resolve relative paths (configs, runs/) there.
    return spawn_detached(cmd, env=env, log=settings.log_path(service), pid_file=settings.pid_path(service),
                          cwd=repo_root() or Path.cwd())  # fmt: skip


def _wait_ready(settings: StackSettings, service: str, proc: psutil.Process, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while True:
        if not alive(proc):
            raise StackError(f"{service} exited while starting; log {settings.log_path(service)}:\n"
                             f"{log_tail(settings.log_path(service))}")  # fmt: skip
        ok, why = _healthy(settings, service)
        if ok:
            return
        if time.monotonic() > deadline:
            raise StackError(f"{service} not healthy after {timeout:.0f} s ({why}); log {settings.log_path(service)}:"
                             f"\n{log_tail(settings.log_path(service))}")  # fmt: skip
        time.sleep(0.25)


def _check_pool(settings: StackSettings, timeout: float) -> str:
    """'exists' or 'created by the worker' (`worker start --type process` creates a missing pool with the process
    worker's default job template, as `prefect work-pool create --type process` would, without another CLI start).
    """
    deadline = time.monotonic() + timeout
    while True:  # a server that just turned healthy can still be too busy to answer on 2 loaded cores
        code, text = http_call(f"{settings.prefect_api_url}/work_pools/{settings.pool}", timeout=10.0)
        if code != 0 or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    if code == 200:
        kind = json.loads(text).get("type")
        if kind != "process":
            raise StackError(f"work pool {settings.pool!r} exists with type {kind!r}, not 'process': pick another "
                             "name with --pool")  # fmt: skip
        return "exists"
    if code != 404:
        raise StackError(f"reading work pool {settings.pool!r} failed: HTTP {code or 'no answer'} {text[:200]}")
    return "created by the worker"


@contextlib.contextmanager
def _locked(settings: StackSettings) -> Iterator[None]:
    """One `azr up`/`azr down` at a time per state folder."""
    settings.state_dir.mkdir(parents=True, exist_ok=True)
    with open(settings.state_dir / ".lock", "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def write_env_file(settings: StackSettings) -> Path:
    """`<state>/env.sh`: `source` it to point Prefect and MLflow clients at this stack."""
    lines = ["# Written by `azr up`. Use: source " + shlex.quote(str(settings.state_dir / "env.sh"))]
    lines += [f"export {k}={shlex.quote(v)}" for k, v in settings.user_env().items()]
    lines += [f"# Prefect UI: {settings.prefect_url}   MLflow UI: {settings.mlflow_url}"]
    return atomic_write_text(settings.state_dir / "env.sh", "\n".join(lines) + "\n", fsync=False)


def _stack_id(settings: StackSettings) -> str:
    """The stack's id (made on its first `azr up`, then kept): a worker that joins from another host reads it from
    the shared state folder and compares it with the one the server publishes."""
    return str(read_stack_file(settings.state_dir).get("stack_id") or uuid.uuid4().hex)


def publish_stack_id(settings: StackSettings, stack_id: str, timeout: float = 120.0) -> None:
    """The Prefect variable `azr_stack_id` (created or updated). A server that just restarted may answer 503 for a
    while (its database busy with recovery): retried until `timeout`."""
    url = f"{settings.prefect_api_url}/variables/"
    deadline = time.monotonic() + timeout
    while True:
        code, text = http_call(url, body={"name": STACK_ID_VARIABLE, "value": stack_id}, timeout=10.0)
        if code == 409:  # it exists (an earlier `up` of this state folder, or another stack used this server before)
            code, text = http_call(f"{url}name/{STACK_ID_VARIABLE}", body={"value": stack_id}, timeout=10.0,
                                   method="PATCH")  # fmt: skip
        if code in (200, 201, 204):
            return
        if (code and code < 500) or time.monotonic() > deadline:
            raise StackError(f"publishing the stack id on the Prefect server failed: HTTP {code or 'no answer'} "
                             f"{text[:200]}")  # fmt: skip
        time.sleep(0.5)


def _create_pool(settings: StackSettings) -> None:
    """A process work pool with the process worker's default job template (`prefect work-pool create`)."""
    env = _base_env(settings)
    cmd = [console_script("prefect"), "--no-prompt", "work-pool", "create", settings.pool, "--type", "process"]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    if done.returncode != 0:
        raise StackError(f"creating work pool {settings.pool!r} failed:\n{(done.stdout + done.stderr)[-1500:]}")


def up(settings: StackSettings, *, timeout: float = 120.0, echo: Callable[[str], None] = print) -> list[ServiceStatus]:
    """Start every service that is not running and healthy, wait for each, write env.sh; idempotent."""
    services = [s for s in SERVICES if settings.local_worker or s != "prefect-worker"]
    with _locked(settings):
        running = {s: p for s in SERVICES if (p := recorded_process(settings.pid_path(s))) is not None}
        saved = read_stack_file(settings.state_dir)
        mine = {k: v for k, v in asdict(settings).items() if k != "state_dir"}
        defaults = {"host": HOST, "local_worker": True}  # a stack.json older than these settings
        if running and saved and any(saved.get(k, defaults.get(k)) != v for k, v in mine.items()):
            raise StackError(f"the stack in {settings.state_dir} runs with {saved}; run `azr down` first to "
                             f"bring it up with {mine}")  # fmt: skip
        if not settings.local_worker and "prefect-worker" in running:
            raise StackError("a local worker of this stack is running: run `azr down` first to bring the stack up "
                             "without one")  # fmt: skip
        for service, port in (("prefect-server", settings.prefect_port), ("mlflow-ui", settings.mlflow_port)):
            if service not in running and _port_in_use(settings.connect_host, port):
                raise StackError(f"port {port} on {settings.connect_host} is in use by a process this stack did not "
                                 f"start: stop it or pick another port for {service}")  # fmt: skip
        stack_id = _stack_id(settings)
        atomic_write_text(settings.state_dir / "stack.json", json.dumps({**mine, "stack_id": stack_id}) + "\n",
                          fsync=False)  # fmt: skip
        t0 = time.monotonic()
        started: dict[str, psutil.Process] = {}
        # The server and the UI start side by side (each takes seconds of imports); the worker needs the server.
        for service in ("prefect-server", "mlflow-ui"):
            if service not in running:
                started[service] = _spawn(settings, service)
        for service in ("prefect-server", "mlflow-ui"):
            proc = running.get(service) or started[service]
            _wait_ready(settings, service, proc, timeout)
            echo(f"{service:<15} {'started' if service in started else 'already running'} "
                 f"({time.monotonic() - t0:.1f} s)  {settings.url(service)}")  # fmt: skip
            if service == "prefect-server":
                pool_state = _check_pool(settings, timeout)
                publish_stack_id(settings, stack_id, timeout)
                echo(f"{'automation':<15} {ensure_crash_automation(settings)}: {CRASH_AUTOMATION!r} "
                     f"(no heartbeat for {CRASH_AFTER_S} s -> Crashed)")  # fmt: skip
                if not settings.local_worker and pool_state != "exists":
                    _create_pool(settings)
                    pool_state = "created"
                if settings.local_worker and "prefect-worker" not in running:  # its imports overlap the UI's start
                    started["prefect-worker"] = _spawn(settings, "prefect-worker")
        if settings.local_worker:
            proc = running.get("prefect-worker") or started["prefect-worker"]
            _wait_ready(settings, "prefect-worker", proc, timeout)
            state = "started" if "prefect-worker" in started else "already running"
        else:
            state = "none here (--no-worker): workers join with `azr join`"
        echo(f"{'prefect-worker':<15} {state} ({time.monotonic() - t0:.1f} s)  pool {settings.pool} ({pool_state})")
        if settings.host != HOST:
            echo(f"listening on {settings.host}: the Prefect API and the MLflow UI have no authentication; keep "
                 "these ports on a network you trust")  # fmt: skip
        env_file = write_env_file(settings)
    for key, value in settings.user_env().items():
        echo(f"export {key}={shlex.quote(value)}")
    echo(f"# written to {env_file}: source it in scripts")
    return status(settings, services)


def status(settings: StackSettings, services: list[str] | None = None) -> list[ServiceStatus]:
    """The state of each service: running (alive and healthy), unhealthy (alive, not answering) or stopped. A stack
    brought up with --no-worker has no local worker to report."""
    out = []
    for service in services or [s for s in SERVICES if settings.local_worker or s != "prefect-worker"]:
        proc = recorded_process(settings.pid_path(service))
        url = settings.url(service) if service != "prefect-worker" else f"pool {settings.pool}"
        if proc is None:
            out.append(ServiceStatus(service, "stopped", None, url, settings.log_path(service)))
            continue
        ok, why = _healthy(settings, service)
        out.append(ServiceStatus(service, "running" if ok else "unhealthy", proc.pid, url,
                                 settings.log_path(service), "" if ok else why))  # fmt: skip
    return out


def down(settings: StackSettings, *, echo: Callable[[str], None] = print) -> list[int]:
    """Stop every service (worker first, so no flow run starts meanwhile); returns pids that survived (none)."""
    left: list[int] = []
    if not settings.state_dir.is_dir():
        echo(f"no stack in {settings.state_dir}: nothing to stop")
        return left
    with _locked(settings):
        for service in reversed(SERVICES):
            proc = recorded_process(settings.pid_path(service))
            if proc is None:
                echo(f"{service:<15} not running")
            else:
                t0 = time.monotonic()
                # The worker gets SIGINT first: `prefect worker start` ignores a single SIGTERM, and on SIGINT it
                # stops polling and lets a running flow run finish (bounded by the grace period). The servers stop
                # faster on SIGTERM (MLflow: 3 s against 7 s on SIGINT).
                first = signal.SIGINT if service == "prefect-worker" else signal.SIGTERM
                survivors = stop_process_tree(proc, first=first)
                left += survivors
                echo(f"{service:<15} stopped pid {proc.pid} ({time.monotonic() - t0:.1f} s)"
                     + (f"; STILL ALIVE: {survivors}" if survivors else ""))  # fmt: skip
            if not left:
                settings.pid_path(service).unlink(missing_ok=True)
    return left
