"""The Prefect server restarted in the middle of a self-play flow run, on the real `azr up` stack with the deployment
and a tiny random model: the server comes back with its database and its (file-based) concurrency leases, and the
run folder reaches its target with every row exactly once, either in the same flow run or in the next deployment run,
which must not wait for a slot the restart leaked."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import psutil
import pytest
from stackutil import BIN, assert_each_row_once, run, stack_up_and_deploy

from azr_core.policy.tiny import make_tiny_model_dir
from azr_core.store import connect, read_commit

pytestmark = [pytest.mark.slow, pytest.mark.sandbox]

TERMINAL = {"COMPLETED", "FAILED", "CRASHED", "CANCELLED"}


def _flow_run_states(env: dict[str, str]) -> list[str]:
    code = (
        "import asyncio\n"
        "from prefect.client.orchestration import get_client\n"
        "from prefect.client.schemas.filters import FlowFilter, FlowFilterName\n"
        "from prefect.client.schemas.sorting import FlowRunSort\n"
        "async def main():\n"
        "    async with get_client() as c:\n"
        "        runs = await c.read_flow_runs(flow_filter=FlowFilter(name=FlowFilterName(any_=['azr'])),\n"
        "                                      sort=FlowRunSort.EXPECTED_START_TIME_ASC)\n"
        "        print(' '.join(r.state_type.value for r in runs if r.deployment_id is not None\n"
        "                       and r.parameters.get('iterations') == 3))\n"
        "asyncio.run(main())\n"
    )
    out = run([str(BIN / "python"), "-c", code], env, 120)
    return out.stdout.split() if out.returncode == 0 else ["?"]


def test_a_prefect_server_restart_mid_run_loses_nothing(tmp_path: Path):
    tiny = make_tiny_model_dir(tmp_path / "tiny")
    state, run_dir = tmp_path / "stack", tmp_path / "run"
    env = {**os.environ, "AZR_STATE_DIR": str(state)}
    env.pop("MLFLOW_TRACKING_URI", None)
    overrides = [f"model.name_or_path={tiny}", "selfplay.prompt_template=raw", "selfplay.batch_per_group=1",
                 "selfplay.references_k=1", "selfplay.induction_inputs=2", "selfplay.learnability_rollouts=1",
                 "rollout.max_new_tokens=8", "buffers.seed_max_rounds=0", "tracking.register_every=0",
                 "store.fsync=false"]  # fmt: skip
    cmd = [str(BIN / "prefect"), "deployment", "run", "azr/self-play", "-p", "iterations=3",
           "-p", f"run_dir={run_dir}", "-p", f"overrides={json.dumps(overrides)}"]  # fmt: skip
    try:
        stack_up_and_deploy(env)
        started = run(cmd, env, 300)
        assert started.returncode == 0, started.stdout + started.stderr

        deadline = time.monotonic() + 900
        while (read_commit(run_dir) is None or read_commit(run_dir).iteration < 1) and time.monotonic() < deadline:
            time.sleep(1)
        assert read_commit(run_dir) is not None, "iteration 1 never committed"

        # SIGKILL the server (its whole tree) in the middle of the run, then bring it back.
        server = psutil.Process(json.loads((state / "run" / "prefect-server.json").read_text())["pid"])
        tree = [server, *server.children(recursive=True)]
        for p in tree:
            p.send_signal(signal.SIGKILL)
        psutil.wait_procs(tree, timeout=30)
        time.sleep(5)
        back = run([str(BIN / "azr"), "up", "--timeout", "600"], env, 1300)
        assert back.returncode == 0, back.stdout + back.stderr

        deadline, states = time.monotonic() + 900, ["?"]
        while time.monotonic() < deadline:
            states = _flow_run_states(env)
            if states and states[0] in TERMINAL:
                break
            time.sleep(5)
        print(f"the flow run that lived through the restart ended {states}; the run folder is at iteration "
              f"{read_commit(run_dir).iteration}")  # fmt: skip
        assert states and states[0] in TERMINAL, states
        if read_commit(run_dir).iteration < 3:  # it did not survive: the next run must get the slot and finish
            again = run([*cmd, "--watch", "--watch-timeout", "900"], env, 1000)
            assert again.returncode == 0 and "Completed" in again.stdout, again.stdout[-3000:]
        assert read_commit(run_dir).iteration == 3
        con = connect(run_dir)
        assert_each_row_once(con)
        assert [r[0] for r in con.execute("SELECT iteration FROM iterations ORDER BY 1").fetchall()] == [0, 1, 2, 3]
    finally:
        subprocess.run([str(BIN / "azr"), "down"], env=env, capture_output=True, timeout=300)
