"""Helpers shared by the tests: for those that start the real local stack (`azr up`), a free loopback port and a
command in the repo; for those that resume a run after a fault, the check that every committed row is there once."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

BIN = Path(sys.executable).parent
REPO = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run(cmd: list[str], env: dict[str, str], timeout: float = 1500) -> subprocess.CompletedProcess[str]:
    """Run `cmd` in the repo folder with `env`; output captured as text."""
    return subprocess.run(cmd, env=env, cwd=REPO, capture_output=True, text=True, timeout=timeout)


def stack_up_and_deploy(env: dict[str, str], *deploy_args: str, timeout: float = 1300) -> dict[str, str]:
    """`azr up` on free ports with `env` (its AZR_STATE_DIR), then `prefect deploy` (default `--all`); sets
    PREFECT_API_URL in `env` and returns it. The caller runs `azr down` in the end."""
    up = run([str(BIN / "azr"), "up", "--prefect-port", str(free_port()), "--mlflow-port", str(free_port()),
              "--timeout", "600"], env, timeout)  # fmt: skip
    assert up.returncode == 0, up.stdout + up.stderr
    for line in up.stdout.splitlines():
        if line.startswith("export PREFECT_API_URL="):
            env["PREFECT_API_URL"] = line.split("=", 1)[1]
    deploy = run([str(BIN / "prefect"), "--no-prompt", "deploy", *(deploy_args or ("--all",))], env, 600)
    assert deploy.returncode == 0, deploy.stdout + deploy.stderr
    return env


def assert_each_row_once(con) -> None:
    """No committed row of a run folder twice (a resumed iteration must not add its rows again)."""
    for table, key in (("proposals", "proposal_id"), ("rollouts", "rollout_id"), ("tasks", "task_id")):
        n, distinct = con.execute(f"SELECT count(*), count(DISTINCT {key}) FROM {table}").fetchone()
        assert n == distinct, f"duplicated rows in {table}"
