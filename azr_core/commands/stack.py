"""`azr up`, `azr down`, `azr status`: the local Prefect server, work pool, worker and MLflow UI.

    azr up                      # start what is not running, wait until healthy, print and write env.sh
    source .azr/stack/env.sh    # PREFECT_API_URL, MLFLOW_TRACKING_URI, AZR_STATE_DIR
    azr status                  # one line per service and the pool's workers; exit 0 only when all are running
    azr status --run runs/x     # and that run: MLflow run and Prefect flow run URLs, newest version, scores, alias
    azr down                    # stop everything, no process left behind
    azr up --host 10.0.0.1      # listen on that address instead, for workers on other hosts (docs/multi-host.md)
    azr join                    # on another host: a worker in the stack's pool (state folder on shared storage)
    azr leave                   # stop that worker

Exit codes: 0 done; 1 a service failed to start or stop (its log tail is printed); `status` exits 3 when some
service is not running (as `systemctl status` does).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

STATE_DIR = Annotated[
    Path | None,
    typer.Option("--state-dir", envvar="AZR_STATE_DIR", help="State folder (default: .azr/stack at the repo root)."),
]
PREFECT_PORT = Annotated[
    int | None,
    typer.Option(
        envvar="AZR_PREFECT_PORT",
        min=1,
        max=65535,
        help="Prefect server port (default 4200, or what the stack was last brought up with).",
    ),  # fmt: skip
]
MLFLOW_PORT = Annotated[
    int | None,
    typer.Option(
        envvar="AZR_MLFLOW_PORT",
        min=1,
        max=65535,
        help="MLflow UI port (default 5000, or what the stack was last brought up with).",
    ),  # fmt: skip
]
POOL = Annotated[str | None, typer.Option(envvar="AZR_WORK_POOL", help="Process work pool name (default azr-pool).")]
HOST_HELP = (
    "Address the Prefect server and the MLflow UI listen on (default 127.0.0.1, or what the stack was last brought up "
    "with). Give this host's address on a trusted network to let workers on other hosts join (`azr join`); "
    "0.0.0.0 listens on every interface. Neither service has authentication."
)
WORKER_HELP = (
    "--no-worker: start no worker here, a server host whose flow runs run on workers that join from other hosts. "
    "--worker: start one here again. Default: what the stack was last brought up with (a worker, the first time)."
)
WORKER_NAME_HELP = "This host's worker name in the pool (default azr-worker-<hostname>)."


def up(
    state_dir: STATE_DIR = None,
    prefect_port: PREFECT_PORT = None,
    mlflow_port: MLFLOW_PORT = None,
    pool: POOL = None,
    host: Annotated[str | None, typer.Option(envvar="AZR_STACK_HOST", help=HOST_HELP)] = None,
    worker: Annotated[bool | None, typer.Option("--worker/--no-worker", help=WORKER_HELP)] = None,
    timeout: Annotated[float, typer.Option(help="Seconds to wait for each service to become healthy.")] = 120.0,
) -> None:
    """Start the local stack (idempotent): Prefect server, work pool, worker, MLflow UI, on 127.0.0.1 unless --host."""
    from azr_core.stack.local import StackError, StackSettings
    from azr_core.stack.local import up as stack_up

    try:
        settings = StackSettings.resolve(state_dir, prefect_port, mlflow_port, pool, host, worker)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--host") from None
    try:
        stack_up(settings, timeout=timeout, echo=typer.echo)
    except StackError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None


def down(state_dir: STATE_DIR = None) -> None:
    """Stop every service of the local stack and check that none of their processes is left."""
    from azr_core.stack.local import StackSettings
    from azr_core.stack.local import down as stack_down

    left = stack_down(StackSettings.resolve(state_dir), echo=typer.echo)
    if left:
        typer.echo(f"error: processes still alive after SIGKILL: {left}", err=True)
        raise typer.Exit(1)


def _worker_name(name: str | None) -> str:
    import socket

    return name or f"azr-worker-{socket.gethostname()}"


def join(
    state_dir: STATE_DIR = None,
    name: Annotated[str | None, typer.Option(help=WORKER_NAME_HELP)] = None,
    timeout: Annotated[float, typer.Option(help="Seconds to wait for the server and for the worker.")] = 120.0,
) -> None:
    """Join this host to a stack whose server runs on another host: check what its flow runs need (the server and
    MLflow reachable, the state folder shared, the deployments' checkout here), then start a worker in its pool."""
    from azr_core.stack.join import join as stack_join
    from azr_core.stack.local import StackError, StackSettings

    try:
        stack_join(StackSettings.resolve(state_dir), _worker_name(name), timeout=timeout, echo=typer.echo)
    except StackError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None


def leave(state_dir: STATE_DIR = None, name: Annotated[str | None, typer.Option(help=WORKER_NAME_HELP)] = None) -> None:
    """Stop the worker `azr join` started on this host (a running flow run may finish within the grace period)."""
    from azr_core.stack.join import leave as stack_leave
    from azr_core.stack.local import StackSettings

    if stack_leave(StackSettings.resolve(state_dir), _worker_name(name), echo=typer.echo):
        raise typer.Exit(1)


RUN_HELP = "Also show this run folder: its MLflow run and Prefect flow run URLs, its newest model version."
WAIT_HELP = "With --run: wait up to this many seconds for the evaluation flow run of the newest version."


def status(
    state_dir: STATE_DIR = None,
    run: Annotated[Path | None, typer.Option("--run", help=RUN_HELP)] = None,
    wait_eval: Annotated[float, typer.Option(min=0, help=WAIT_HELP)] = 0.0,
) -> None:
    """One line per service (state, pid, URL, log) and the environment to use the stack; with --run, where to look
    at that run. Reads only."""
    import os
    import sys

    from azr_core.stack.local import StackSettings, pool_workers
    from azr_core.stack.local import status as stack_status

    settings = StackSettings.resolve(state_dir)
    services = stack_status(settings)
    for svc in services:
        typer.echo(svc.line())
    ok = all(s.state == "running" for s in services)
    workers = pool_workers(settings) if services[0].state == "running" else []
    if workers:  # joined workers on other hosts show here too
        typer.echo(f"pool {settings.pool}: " + ", ".join(f"{name} ({state.lower()})" for name, state in workers))
    if ok:
        typer.echo(f"env: source {settings.state_dir / 'env.sh'}  ({', '.join(settings.user_env())})")
    if run is not None:
        from azr_core.outcome import format_outcome, read_outcome, wait_for_evaluation

        # A status line must not hang on an MLflow server that is down (MLflow's default retries take minutes).
        os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "1")
        os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "10")
        uri = os.environ.get("MLFLOW_TRACKING_URI") or settings.mlflow_db_uri
        outcome = read_outcome(run, settings, tracking_uri=uri)
        if wait_eval > 0:
            outcome = wait_for_evaluation(outcome, settings, wait_eval, echo=typer.echo, tracking_uri=uri)
        # The commands to look further, spelled as this one was called (`.venv/bin/azr` in the main job).
        azr = sys.argv[0] if sys.argv and Path(sys.argv[0]).name == "azr" else "azr"
        typer.echo(format_outcome(outcome, azr=azr))
    if not ok:
        raise typer.Exit(3)


def register(app: typer.Typer) -> None:
    """Add `azr up`, `azr down`, `azr status`, `azr join` and `azr leave` to the CLI."""
    app.command("up")(up)
    app.command("down")(down)
    app.command("status")(status)
    app.command("join")(join)
    app.command("leave")(leave)
