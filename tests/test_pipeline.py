"""The whole pipeline as a user runs it: the real local stack (Prefect server, process worker, MLflow),
`prefect deploy`, `prefect deployment run azr/self-play` on the default model with a tiny budget; then a worker
killed with SIGKILL in the middle of an iteration, and a second run that resumes with nothing lost and nothing
duplicated."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
from stackutil import BIN, REPO, assert_each_row_once, run, stack_up_and_deploy

from azr_core.store import connect, read_commit

TINY = [
    "selfplay.batch_per_group=1",
    "selfplay.degenerate_retries=0",  # one batch per iteration: the counts below are exact
    "selfplay.references_k=1",
    "rollout.max_new_tokens=24",
    "buffers.seed_max_rounds=0",
    "tracking.register_every=1",
    "store.fsync=false",
    "evaluation.suite=cruxeval-o",  # each registered version is evaluated by the `evaluate` deployment's trigger
    "evaluation.limit=2",
    "evaluation.max_new_tokens=16",
]

pytestmark = [pytest.mark.slow, pytest.mark.sandbox]


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    state = tmp_path_factory.mktemp("stack")
    env = {**os.environ, "AZR_STATE_DIR": str(state)}
    env.pop("MLFLOW_TRACKING_URI", None)
    try:  # `azr down` in the end even when `up` or `deploy` failed half-way
        stack_up_and_deploy(env)
        yield {"env": env, "state": state, "mlflow": f"sqlite:///{state / 'mlflow.db'}"}
    finally:
        run([str(BIN / "azr"), "down"], env, 300)


def deployment_run(stack, run_dir: Path, watch: bool = True) -> subprocess.CompletedProcess[str] | subprocess.Popen:
    cmd = [
        str(BIN / "prefect"),
        "deployment",
        "run",
        "azr/self-play",
        "-p",
        "iterations=1",
        "-p",
        f"run_dir={run_dir}",
        "-p",
        f"overrides={json.dumps(TINY)}",
    ]
    if watch:
        return run([*cmd, "--watch", "--watch-timeout", "1500"], stack["env"])
    return subprocess.Popen(
        cmd, env=stack["env"], cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )


def test_deployment_run_then_crash_and_resume(stack, tmp_path):
    run_dir = tmp_path / "run"
    first = deployment_run(stack, run_dir)
    assert first.returncode == 0 and "Completed" in first.stdout, first.stdout[-3000:] + first.stderr[-3000:]

    # Parquet rows through DuckDB
    con = connect(run_dir)
    assert read_commit(run_dir).iteration == 1
    assert con.execute("SELECT count(*) FROM proposals WHERE iteration = 1").fetchone()[0] == 3
    batch = con.execute("SELECT role, count(*) FROM rollouts WHERE iteration = 1 AND in_batch GROUP BY role").fetchall()
    assert dict(batch) == {"propose": 3, "solve": 3}
    metrics = con.execute("SELECT metrics FROM iterations WHERE iteration = 1").fetchone()[0]
    assert "valid_rate/deduction" in metrics and metrics["tokens/generated"] > 0
    con.close()

    # The UI's graph: each stage's task run is fed by the one before (open-run -> seed -> ... -> commit)
    upstream = _task_upstreams(stack["env"])
    chain = ["open-run", "seed [it 1]", "propose [it 1]", "execute-validate [it 1]", "solve [it 1]",
             "reward [it 1]", "update [it 1]", "commit [it 1]"]  # fmt: skip
    for before, stage in zip(chain, chain[1:], strict=False):
        assert upstream[stage] == [before], (stage, upstream)

    # MLflow: the run's metrics and a registered model version of the checkpoint
    import mlflow

    client = mlflow.MlflowClient(stack["mlflow"])
    (recorded,) = json.loads((run_dir / "mlflow_run.json").read_text())["runs"].values()
    run_id = recorded["run_id"]
    assert client.get_run(run_id).data.metrics["proposals/deduction"] == 1.0
    versions = client.search_model_versions("name='azr-policy'")
    mine = [v for v in versions if v.tags.get("azr.iteration") == "1" and v.run_id == run_id]
    assert mine, [v.tags for v in versions]

    # The commit announced the version; the `evaluate` deployment's trigger evaluated it in a flow run of its own
    model = f"models:/azr-policy/{mine[0].version}"
    state = _wait_for_eval_run(stack["env"], model, timeout=600)
    assert state == "COMPLETED", state
    con = connect(run_dir)
    rows = con.execute("SELECT bench, count(*), any_value(model_version) FROM evals GROUP BY bench").fetchall()
    assert rows == [("cruxeval-o", 2, int(mine[0].version))], rows
    con.close()
    assert "eval/cruxeval-o" in client.get_run(run_id).data.metrics

    # A second run, killed with SIGKILL (worker, flow run, policy and sandbox processes) mid-iteration.
    proc = deployment_run(stack, run_dir, watch=False)
    proc.communicate(timeout=120)
    worker = _worker_process(stack["state"])
    deadline = time.monotonic() + 900
    while (
        time.monotonic() < deadline
        and not list(run_dir.glob("tables/*/iteration=2"))
        and not _stage_started(stack["state"], "solve [it 2]")
    ):
        time.sleep(2)
    assert time.monotonic() < deadline, "iteration 2 never got going"
    tree = [worker, *worker.children(recursive=True)]
    for p in tree:
        try:
            p.send_signal(signal.SIGKILL)
        except psutil.NoSuchProcess:
            pass
    psutil.wait_procs(tree, timeout=30)
    assert read_commit(run_dir).iteration == 1
    _mark_stale_runs_crashed(stack["env"])

    # The stack restarts the dead worker; the next run resumes at iteration 2 and completes it.
    up = run([str(BIN / "azr"), "up", "--timeout", "600"], stack["env"], 1300)
    assert up.returncode == 0, up.stdout + up.stderr
    second = deployment_run(stack, run_dir)
    assert second.returncode == 0 and "Completed" in second.stdout, second.stdout[-3000:] + second.stderr[-3000:]
    assert read_commit(run_dir).iteration == 2
    con = connect(run_dir)
    its = [r[0] for r in con.execute("SELECT iteration FROM iterations ORDER BY iteration").fetchall()]
    assert its == [0, 1, 2]
    assert_each_row_once(con)
    assert con.execute("SELECT count(*) FROM proposals WHERE iteration = 2").fetchone()[0] == 3
    assert sorted(p.name for p in (run_dir / "checkpoints").iterdir()) == ["000001", "000002"]


def _wait_for_eval_run(env: dict[str, str], model: str, timeout: float) -> str:
    """The final state of the `azr-eval` flow run whose `model` parameter is `model` (waits for it to appear)."""
    code = (
        "import asyncio, sys\n"
        "from prefect.client.orchestration import get_client\n"
        "from prefect.client.schemas.filters import FlowFilter, FlowFilterName\n"
        "async def main():\n"
        "    async with get_client() as c:\n"
        "        runs = await c.read_flow_runs(flow_filter=FlowFilter(name=FlowFilterName(any_=['azr-eval'])))\n"
        "        mine = [r for r in runs if r.parameters.get('model') == sys.argv[1]]\n"
        "        print(mine[0].state_type.value if mine else 'NONE')\n"
        "asyncio.run(main())\n"
    )
    deadline, state = time.monotonic() + timeout, "NONE"
    while time.monotonic() < deadline:
        out = run([sys.executable, "-c", code, model], env, 60)
        state = out.stdout.strip().splitlines()[-1] if out.stdout.strip() else out.stderr[-500:]
        if state in ("COMPLETED", "FAILED", "CRASHED", "CANCELLED"):
            return state
        time.sleep(5)
    return f"timed out in state {state}"


def _worker_process(state: Path) -> psutil.Process:
    info = json.loads((state / "run" / "prefect-worker.json").read_text())
    return psutil.Process(info["pid"])


def _stage_started(state: Path, name: str) -> bool:
    log = state / "logs" / "prefect-worker.log"
    return log.exists() and f"Task run '{name}'" in log.read_text(errors="replace")


def _task_upstreams(env: dict[str, str]) -> dict[str, list[str]]:
    """Task run name -> names of the task runs its inputs came from, for the newest completed flow run (the nightly
    deployment's scheduled runs sort first by start time otherwise)."""
    code = (
        "import asyncio, json\n"
        "from prefect.client.orchestration import get_client\n"
        "from prefect.client.schemas.filters import (FlowFilter, FlowFilterName, FlowRunFilter, FlowRunFilterState,\n"
        "    FlowRunFilterStateType, TaskRunFilter, TaskRunFilterFlowRunId)\n"
        "from prefect.client.schemas.objects import StateType\n"
        "from prefect.client.schemas.sorting import FlowRunSort\n"
        "async def main():\n"
        "    async with get_client() as c:\n"
        "        ok = FlowRunFilterStateType(any_=[StateType.COMPLETED])\n"
        "        done = FlowRunFilter(state=FlowRunFilterState(type=ok))\n"
        "        azr = FlowFilter(name=FlowFilterName(any_=['azr']))  # not the evaluation's flow runs\n"
        "        newest = FlowRunSort.START_TIME_DESC\n"
        "        (fr,) = await c.read_flow_runs(flow_filter=azr, flow_run_filter=done, sort=newest, limit=1)\n"
        "        mine = TaskRunFilter(flow_run_id=TaskRunFilterFlowRunId(any_=[fr.id]))\n"
        "        trs = await c.read_task_runs(task_run_filter=mine)\n"
        "        names = {str(t.id): t.name for t in trs}\n"
        "        out = {t.name: sorted({names.get(str(i.id), '?') for v in t.task_inputs.values() for i in v\n"
        "                               if getattr(i, 'input_type', '') == 'task_run'}) for t in trs}\n"
        "        print(json.dumps(out))\n"
        "asyncio.run(main())\n"
    )
    res = run([sys.executable, "-c", code], env, 120)
    assert res.returncode == 0, res.stderr
    return json.loads(res.stdout.strip().splitlines()[-1])


def _mark_stale_runs_crashed(env: dict[str, str]) -> None:
    # A flow run whose process was SIGKILLed stays RUNNING on the server and keeps its deployment concurrency slot.
    code = (
        "import asyncio\n"
        "from prefect.client.orchestration import get_client\n"
        "from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterState, FlowRunFilterStateType\n"
        "from prefect.client.schemas.objects import StateType\n"
        "from prefect.states import Crashed\n"
        "async def main():\n"
        "    async with get_client() as c:\n"
        "        f = FlowRunFilter(state=FlowRunFilterState(type=FlowRunFilterStateType(any_=[StateType.RUNNING])))\n"
        "        for r in await c.read_flow_runs(flow_run_filter=f):\n"
        "            await c.set_flow_run_state(r.id, Crashed(message='worker killed'), force=True)\n"
        "asyncio.run(main())\n"
    )
    res = run([sys.executable, "-c", code], env, 120)
    assert res.returncode == 0, res.stderr
