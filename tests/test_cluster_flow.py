"""Flow runs on another host of the simulated cluster (infra/cluster.sh): the Prefect server and the MLflow UI in
azr-h1 (`azr up --host 10.77.0.1 --no-worker`), a worker in azr-h2 (`azr join`) runs `azr/self-play` with the tiny
model; its run folder and MLflow run are on the shared filesystem and the server's store; the next flow run resumes
on a worker of another host. `azr join` refuses, each with the fix, a host whose server is unreachable, whose state
folder is another stack's, or whose artifact folder is not the server's (a copy in a mount namespace of its own), and
a flow run on a joined worker refuses a run folder off the shared filesystem."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest
from stackutil import BIN, assert_each_row_once, free_port

from azr_core.policy.tiny import make_tiny_model_dir
from azr_core.store import connect, read_commit

ROOT = Path(__file__).resolve().parents[1]
CLUSTER = ROOT / "infra" / "cluster.sh"
AZR, PREFECT = str(BIN / "azr"), str(BIN / "prefect")  # the running virtualenv's: the same path on every host

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(os.geteuid() != 0 or shutil.which("ip") is None, reason="needs root and iproute2"),
]


def on(host: str, *cmd: str, env: dict, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    """`cmd` on a host of the cluster, from the repo folder."""
    return subprocess.run(["bash", str(CLUSTER), "exec", host, "--", *cmd], capture_output=True, text=True,
                          timeout=timeout, env=env, cwd=ROOT)  # fmt: skip


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    """A 2-host cluster, the stack's server in azr-h1 on 10.77.0.1 with no worker of its own, `self-play` deployed."""
    tmp = tmp_path_factory.mktemp("joined")
    env = {**os.environ, "AZR_CLUSTER_STATE": str(tmp / "cluster"), "AZR_STATE_DIR": str(tmp / "stack")}
    env.pop("MLFLOW_TRACKING_URI", None)
    env.pop("PREFECT_API_URL", None)
    subprocess.run(["bash", str(CLUSTER), "down"], env=env, capture_output=True, timeout=120)
    made = subprocess.run(["bash", str(CLUSTER), "up", "2", "--cores-per-host", "1"], env=env, capture_output=True,
                          text=True, timeout=120)  # fmt: skip
    assert made.returncode == 0, made.stderr
    try:
        ports = {"prefect": free_port(), "mlflow": free_port()}
        up = on("azr-h1", AZR, "up", "--host", "10.77.0.1", "--no-worker", "--prefect-port", str(ports["prefect"]),
                "--mlflow-port", str(ports["mlflow"]), "--timeout", "600", env=env, timeout=900)  # fmt: skip
        assert up.returncode == 0, up.stdout + up.stderr
        assert "none here (--no-worker)" in up.stdout and f"http://10.77.0.1:{ports['prefect']}" in up.stdout
        api = {**env, "PREFECT_API_URL": f"http://10.77.0.1:{ports['prefect']}/api"}
        deploy = on("azr-h2", PREFECT, "--no-prompt", "deploy", "--name", "self-play", env=api)
        assert deploy.returncode == 0, deploy.stdout + deploy.stderr
        yield {"env": env, "api": api, "tmp": tmp, "ports": ports, "tiny": make_tiny_model_dir(tmp / "tiny")}
    finally:
        for host in ("azr-h1", "azr-h2"):
            on(host, AZR, "leave", "--name", f"w-{host}", env=env, timeout=120)
        on("azr-h1", AZR, "down", env=env, timeout=300)
        subprocess.run(["bash", str(CLUSTER), "down"], env=env, capture_output=True, timeout=120)


def _flow_run(stack: dict, run_dir: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    overrides = [f"model.name_or_path={stack['tiny']}", "selfplay.prompt_template=raw", "selfplay.batch_per_group=1",
                 "selfplay.references_k=1", "selfplay.induction_inputs=2", "selfplay.learnability_rollouts=1",
                 "rollout.max_new_tokens=8", "buffers.seed_max_rounds=0", "store.fsync=false",
                 "evaluation.on_register=false", *extra]  # fmt: skip
    return on("azr-h1", PREFECT, "deployment", "run", "azr/self-play", "-p", "iterations=1", "-p", f"run_dir={run_dir}",
              "-p", f"overrides={json.dumps(overrides)}", "--watch", "--watch-timeout", "900", env=stack["api"],
              timeout=1000)  # fmt: skip


def test_a_worker_on_another_host_runs_the_flow_and_the_next_resumes_on_a_third(stack):
    env, tmp = stack["env"], stack["tmp"]
    joined = on("azr-h2", AZR, "join", "--name", "w-azr-h2", env=env)
    assert joined.returncode == 0, joined.stdout + joined.stderr
    for line in ("ok  state folder", "ok  artifacts shared", "deployments runnable here: self-play",
                 "worker w-azr-h2 joined pool azr-pool at http://10.77.0.1:"):  # fmt: skip
        assert line in joined.stdout, joined.stdout
    listed = on("azr-h1", AZR, "status", env=env)  # the server host lists the worker joined from azr-h2
    assert listed.returncode == 0 and "pool azr-pool: w-azr-h2 (online)" in listed.stdout, listed.stdout
    again = on("azr-h2", AZR, "join", "--name", "w-azr-h2", env=env)  # idempotent
    assert again.returncode == 0 and "already running" in again.stdout, again.stdout + again.stderr

    run_dir = tmp / "run"
    first = _flow_run(stack, run_dir)
    assert first.returncode == 0 and "Completed" in first.stdout, first.stdout[-3000:] + first.stderr[-2000:]
    assert read_commit(run_dir).iteration == 1
    worker_log = (tmp / "stack" / "hosts" / "w-azr-h2" / "worker.log").read_text(errors="replace")
    assert "Finished in state Completed" in worker_log  # the flow run ran on azr-h2's worker (h1 has none)
    # Tracked through the MLflow server on azr-h1, which stored it in the stack's database.
    recorded = json.loads((run_dir / "mlflow_run.json").read_text())["runs"]
    url = f"http://10.77.0.1:{stack['ports']['mlflow']}"
    assert list(recorded) == [url], recorded
    import mlflow

    run = mlflow.MlflowClient(f"sqlite:///{tmp / 'stack' / 'mlflow.db'}").get_run(recorded[url]["run_id"])
    assert run.data.metrics and run.data.tags.get("mlflow.runName"), run.data

    # A run folder off the shared filesystem (tmpfs) is refused before anything is written there.
    refused = _flow_run(stack, Path("/dev/shm/azr-test-run"))
    assert "Failed" in refused.stdout, refused.stdout[-2000:]
    assert not Path("/dev/shm/azr-test-run").exists()
    worker_log = (tmp / "stack" / "hosts" / "w-azr-h2" / "worker.log").read_text(errors="replace")
    assert "is not on the shared filesystem of the stack's state folder" in worker_log

    # azr-h2 leaves; a worker on azr-h1 takes the next flow run, which resumes the run folder.
    left = on("azr-h2", AZR, "leave", "--name", "w-azr-h2", env=env)
    assert left.returncode == 0 and "stopped" in left.stdout, left.stdout + left.stderr
    assert on("azr-h1", AZR, "join", "--name", "w-azr-h1", env=env).returncode == 0
    second = _flow_run(stack, run_dir)
    assert second.returncode == 0 and "Completed" in second.stdout, second.stdout[-3000:] + second.stderr[-2000:]
    assert read_commit(run_dir).iteration == 2
    con = connect(run_dir)
    rows = con.execute("SELECT iteration FROM iterations WHERE iteration > 0 ORDER BY 1").fetchall()
    iterations = [r[0] for r in rows]
    assert iterations == [1, 2], iterations  # the second flow run went on from the first's commit
    assert_each_row_once(con)
    assert on("azr-h1", AZR, "leave", "--name", "w-azr-h1", env=env).returncode == 0


def test_join_refuses_each_missing_precondition_with_its_fix(stack):
    env, tmp = stack["env"], stack["tmp"]
    saved = json.loads((tmp / "stack" / "stack.json").read_text())
    other = tmp / "other"
    other.mkdir(exist_ok=True)

    def join(state: Path, *extra: str, prefix: tuple[str, ...] = ()) -> subprocess.CompletedProcess[str]:
        return on("azr-h2", *prefix, AZR, "join", "--state-dir", str(state), "--name", "w-refused", *extra, env=env)

    done = join(other)  # no stack.json
    assert done.returncode == 1 and "holds no stack.json" in done.stderr, done.stderr
    # Another stack's state folder (its id differs from the one the server publishes).
    (other / "stack.json").write_text(json.dumps({**saved, "stack_id": "0" * 32}))
    done = join(other)
    assert done.returncode == 1 and "is not the state folder of the stack" in done.stderr, done.stderr
    # A server that is not there: a bounded wait, the address and the fix.
    (other / "stack.json").write_text(json.dumps({**saved, "host": "10.77.0.3"}))
    start = time.monotonic()
    done = join(other, "--timeout", "5")
    assert done.returncode == 1 and "10.77.0.3" in done.stderr and "azr up --host 10.77.0.3" in done.stderr
    assert time.monotonic() - start < 60
    # A copy of the state folder at the same path (a mount namespace of its own, as on a host without the share):
    # the id matches, but the MLflow server cannot read what this host writes to the artifact folder.
    state = tmp / "stack"
    copy = f'mount -t tmpfs none {state} && cp {other}/stack.json {state}/ && exec "$@"'
    (other / "stack.json").write_text(json.dumps(saved))
    done = join(state, prefix=("unshare", "-m", "sh", "-c", copy, "sh"))
    assert done.returncode == 1 and "ok  state folder" in done.stdout, done.stdout + done.stderr
    assert "does not see the file this host wrote" in done.stderr and "not shared" in done.stderr, done.stderr
    assert not (state / "hosts" / "w-refused").exists()  # no worker was started
