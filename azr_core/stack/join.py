"""A worker on this host for a stack whose server runs on another host (`azr join`), and the check that a flow run
on such a worker makes of its run folder.

    host A:  azr up --host 10.0.0.1 [--no-worker]      # the Prefect server and the MLflow UI listen on 10.0.0.1
    host B:  azr join --state-dir /shared/azr/stack     # a worker in A's pool; flow runs of any deployment run here
    host B:  azr leave --state-dir /shared/azr/stack    # stop it

What a worker on B needs, each checked before it starts (`check_join`), each failure one error naming the fix:
  - the state folder of the stack on shared storage, at the same path on every host: its `stack.json` says where the
    server is, and its id must be the one the server publishes (a copy or another stack's folder is refused);
  - the Prefect server and the MLflow UI reachable from B (health answers);
  - MLflow's artifact folder shared: a file B writes there is read back through the MLflow server on A;
  - the work pool, and every deployment's working directory and entrypoint present on B (the same checkout, or a
    shared one, at the same path; with the same virtualenv path).
Flow runs on B track to A's MLflow server over HTTP (not the SQLite file: SQLite over a network filesystem is unsafe),
and refuse a run folder outside the shared filesystem (`check_run_folder_shared`).
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import time
from collections.abc import Callable
from pathlib import Path
from urllib.parse import quote, urlparse

import psutil

from azr_core.stack.crash_automation import HEARTBEAT_S
from azr_core.stack.local import STACK_ID_VARIABLE, StackError, console_script, http_call, worker_online
from azr_core.stack.processes import alive, log_tail, recorded_process, spawn_detached, stop_process_tree
from azr_core.stack.settings import StackSettings, read_stack_file, repo_root, telemetry_env

JOINED_ENV = "AZR_JOINED_WORKER"  # in a joined worker's environment, inherited by its flow runs: the worker's name
CHECKS_EXPERIMENT = "azr-stack-checks"  # the MLflow experiment of the shared-artifacts check's short-lived runs


class JoinError(StackError):
    """This host cannot run the stack's flow runs; the message names what is missing and the fix."""


def worker_dir(settings: StackSettings, name: str) -> Path:
    """`<state>/hosts/<name>/`: the joined worker's log, pid record and Prefect home."""
    return settings.state_dir / "hosts" / name


def _get_json(url: str, timeout: float = 10.0) -> tuple[int, object]:
    code, text = http_call(url, timeout=timeout)
    return code, json.loads(text) if code == 200 and text else None


def _wait_health(url: str, what: str, fix: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while True:
        code, _ = http_call(url, timeout=5.0)
        if code == 200:
            return
        if time.monotonic() > deadline:
            raise JoinError(f"{what} at {url} does not answer from this host ({code or 'no connection'} after "
                            f"{timeout:.0f} s): {fix}")  # fmt: skip
        time.sleep(1.0)


def _check_stack_id(settings: StackSettings, stack_id: str) -> None:
    code, variable = _get_json(f"{settings.prefect_api_url}/variables/name/{STACK_ID_VARIABLE}")
    published = variable.get("value") if isinstance(variable, dict) else None
    if published != stack_id:
        raise JoinError(
            f"the state folder {settings.state_dir} on this host is not the state folder of the stack whose server "
            f"answers at {settings.prefect_url} (stack id here {stack_id[:12]}, the server's "
            f"{str(published)[:12] if published else 'none: HTTP ' + str(code)}): mount the server host's state "
            "folder on this host at the same path (shared storage, not a copy), or run `azr up` there again"
        )


def _check_pool(settings: StackSettings) -> None:
    code, pool = _get_json(f"{settings.prefect_api_url}/work_pools/{quote(settings.pool)}")
    if code != 200 or not isinstance(pool, dict):
        raise JoinError(f"the server has no work pool {settings.pool!r} (HTTP {code}): `azr up` on the server host "
                        "creates it")  # fmt: skip
    if pool.get("type") != "process":
        raise JoinError(f"work pool {settings.pool!r} has type {pool.get('type')!r}, not 'process'")


def _check_artifacts_shared(settings: StackSettings, name: str) -> str:
    """Write a file into the stack's artifact folder here and read it back through the MLflow server: proof that both
    hosts see one folder (what MLflow needs: a run's artifacts are written by the flow run, served by the UI)."""
    from azr_core.tracking.store import mlflow_client

    client = mlflow_client(settings.mlflow_url)
    experiment = client.get_experiment_by_name(CHECKS_EXPERIMENT)
    location = (settings.state_dir / "mlflow-artifacts" / CHECKS_EXPERIMENT).as_uri()
    exp_id = experiment.experiment_id if experiment else client.create_experiment(CHECKS_EXPERIMENT, location)
    run = client.create_run(exp_id, run_name=f"join {name}")
    try:
        uri = urlparse(run.info.artifact_uri)
        if uri.scheme != "file":
            return f"artifacts at {run.info.artifact_uri} (not a file path: nothing to check)"
        folder = Path(uri.path)
        nonce = secrets.token_hex(8)
        try:
            folder.mkdir(parents=True, exist_ok=True)
            (folder / "join-probe.txt").write_text(nonce, encoding="utf-8")
        except OSError as exc:
            raise JoinError(f"cannot write MLflow's artifact folder {folder} from this host ({exc}): mount the "
                            "stack's state folder here at the same path, writable") from None  # fmt: skip
        url = f"{settings.mlflow_url}/get-artifact?path=join-probe.txt&run_uuid={run.info.run_id}"
        code, text = http_call(url, timeout=15.0)
        if code != 200 or text != nonce:
            raise JoinError(
                f"the MLflow server at {settings.mlflow_url} does not see the file this host wrote to {folder} "
                f"(HTTP {code}): the artifact folder is not shared. Mount the server host's state folder "
                f"{settings.state_dir} here at the same path (a shared filesystem, not a copy)"
            )
        return f"artifacts shared ({folder.parent.parent})"
    finally:
        client.delete_run(run.info.run_id)


def _check_deployments(settings: StackSettings) -> list[str]:
    """Each deployment of the pool can start here: its working directory and entrypoint file exist on this host."""
    body = {"work_pools": {"name": {"any_": [settings.pool]}}}
    code, text = http_call(f"{settings.prefect_api_url}/deployments/filter", body=body, timeout=10.0)
    if code != 200:
        raise JoinError(f"listing the deployments of pool {settings.pool!r} failed: HTTP {code or 'no answer'}")
    seen = []
    for dep in json.loads(text):
        folder = None
        for step in dep.get("pull_steps") or []:
            for key, args in step.items():
                if key.endswith("set_working_directory"):
                    folder = Path(args["directory"])
        if folder is None:
            continue
        entry = folder / str(dep.get("entrypoint") or "").split(":")[0]
        if not entry.is_file():
            raise JoinError(
                f"deployment {dep['name']!r} runs {entry}, which is not on this host: put the checkout it was "
                f"deployed from ({folder}) on shared storage, or the same checkout at the same path, with its "
                "virtualenv at the same path too"
            )
        seen.append(f"{dep['name']} ({folder})")
    return seen


def check_join(settings: StackSettings, name: str, *, timeout: float = 30.0,
               echo: Callable[[str], None] = print) -> None:  # fmt: skip
    """Every precondition of a worker on this host, in order; one line per check passed. Raises JoinError."""
    saved = read_stack_file(settings.state_dir)
    if not saved.get("stack_id"):
        raise JoinError(f"{settings.state_dir} holds no stack.json with a stack id: point --state-dir (or "
                        "$AZR_STATE_DIR) at the server host's state folder, mounted here at the same path, and run "
                        "`azr up` on the server host first")  # fmt: skip
    port_fix = (f"check that the server host runs `azr up --host {settings.host}` and that port {{port}} is open "
                "from this host")  # fmt: skip
    _wait_health(f"{settings.prefect_api_url}/health", "the Prefect server",
                 port_fix.format(port=settings.prefect_port), timeout)  # fmt: skip
    echo(f"ok  Prefect server {settings.prefect_url} answers")
    _check_stack_id(settings, str(saved["stack_id"]))
    echo(f"ok  state folder {settings.state_dir} is the server's (stack id {str(saved['stack_id'])[:12]})")
    _wait_health(f"{settings.mlflow_url}/health", "the MLflow UI", port_fix.format(port=settings.mlflow_port), timeout)
    echo(f"ok  MLflow {settings.mlflow_url} answers")
    _check_pool(settings)
    echo(f"ok  {_check_artifacts_shared(settings, name)}")
    deployments = _check_deployments(settings)
    echo(f"ok  pool {settings.pool}: deployments runnable here: {', '.join(deployments) or 'none yet'}")


def _worker_env(settings: StackSettings, name: str) -> dict[str, str]:
    env = dict(os.environ)
    env.pop("PREFECT_API_DATABASE_CONNECTION_URL", None)  # a worker has no database of its own
    env.update({
        "PREFECT_HOME": str(worker_dir(settings, name) / "prefect"),
        "PREFECT_API_URL": settings.prefect_api_url,
        "PREFECT_FLOWS_HEARTBEAT_FREQUENCY": str(HEARTBEAT_S),
        "PREFECT_WORKER_QUERY_SECONDS": "1",
        # Over HTTP, not the SQLite file: SQLite's locks are not safe on a network filesystem.
        "MLFLOW_TRACKING_URI": settings.mlflow_url,
        "AZR_STATE_DIR": str(settings.state_dir),
        JOINED_ENV: name,
        "PYTHONUNBUFFERED": "1",
        **telemetry_env(),
    })  # fmt: skip
    return env


def join(settings: StackSettings, name: str, *, timeout: float = 120.0, echo: Callable[[str], None] = print) -> int:
    """Check this host (`check_join`), then start a worker named `name` in the stack's pool and wait until the server
    lists it ONLINE. Idempotent: a worker of that name already running here is left as it is. Returns its pid."""
    home = worker_dir(settings, name)
    pid_file, log = home / "worker.json", home / "worker.log"
    running = recorded_process(pid_file)
    if running is not None and worker_online(settings, name)[0]:
        echo(f"worker {name} already running (pid {running.pid}) in pool {settings.pool}; log {log}")
        return running.pid
    check_join(settings, name, timeout=min(timeout, 30.0), echo=echo)
    cmd = [console_script("prefect"), "--no-prompt", "worker", "start", "--pool", settings.pool, "--type", "process",
           "--name", name]  # fmt: skip
    proc = running or spawn_detached(cmd, env=_worker_env(settings, name), log=log, pid_file=pid_file,
                                     cwd=repo_root() or Path.cwd())  # fmt: skip
    deadline = time.monotonic() + timeout
    while not worker_online(settings, name)[0]:
        if not alive(proc) or time.monotonic() > deadline:
            state = "exited" if not alive(proc) else f"not ONLINE after {timeout:.0f} s"
            raise JoinError(f"worker {name} {state}; log {log}:\n{log_tail(log)}")
        time.sleep(0.5)
    echo(f"worker {name} joined pool {settings.pool} at {settings.prefect_url} (pid {proc.pid}); log {log}")
    return proc.pid


def leave(settings: StackSettings, name: str, *, echo: Callable[[str], None] = print) -> list[int]:
    """Stop this host's joined worker `name` (SIGINT first: a running flow run may finish within the grace period);
    returns the pids that survived (none)."""
    pid_file = worker_dir(settings, name) / "worker.json"
    proc: psutil.Process | None = recorded_process(pid_file)
    if proc is None:
        echo(f"no worker {name} running on this host")
        return []
    left = stop_process_tree(proc, first=signal.SIGINT)
    if not left:
        pid_file.unlink(missing_ok=True)
    echo(f"worker {name} stopped (pid {proc.pid})" + (f"; STILL ALIVE: {left}" if left else ""))
    return left


def _existing(path: Path) -> Path:
    path = path.resolve()
    while not path.exists():
        path = path.parent
    return path


def check_run_folder_shared(run_dir: str | Path, environ: dict[str, str] | None = None) -> None:
    """On a joined worker (JOINED_ENV set), refuse a run folder that is not on the filesystem of the stack's state
    folder, whose sharing `azr join` proved: a run folder on this host's own disk would be invisible to every other
    host (the next flow run, on another worker, would start the run over; `azr sql` on the server host would not see
    it). Elsewhere nothing is checked."""
    environ = os.environ if environ is None else environ
    if not environ.get(JOINED_ENV) or not environ.get("AZR_STATE_DIR"):
        return
    state, run = _existing(Path(environ["AZR_STATE_DIR"])), _existing(Path(run_dir))
    if state.stat().st_dev != run.stat().st_dev:
        raise ValueError(
            f"run folder {run_dir} is not on the shared filesystem of the stack's state folder {state} (this flow "
            f"run is on worker {environ[JOINED_ENV]}, joined from another host): a run folder here would be lost "
            "to the other hosts. Put run folders on that shared filesystem (a relative run_dir lands in the "
            "deployment's checkout)"
        )
