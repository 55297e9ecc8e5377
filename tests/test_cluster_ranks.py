"""Policy ranks across hosts of the simulated cluster (infra/cluster.sh): one rank per host, launched on each host
through `trainer.node_launch` (DeepSpeed's --no_ssh mode), gloo between hosts, the driver listening on its host's
address. The same batch gives the same update as one rank on one host; a checkpoint written on two hosts resumes
exactly; a peer on another host without the token is refused; a host that is not there fails the start at once,
named; a self-play run whose rank on the second host is killed mid-iteration loses nothing and resumes."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from azr_core.policy.tiny import make_tiny_model_dir

ROOT = Path(__file__).resolve().parents[1]
CLUSTER = ROOT / "infra" / "cluster.sh"
UTIL = ROOT / "tests" / "clusterutil.py"
NODE_LAUNCH = f"{CLUSTER} exec azr-h{{node}} -- env GLOO_SOCKET_IFNAME=eth0"

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(os.geteuid() != 0 or shutil.which("ip") is None, reason="needs root and iproute2"),
]


def _cluster(*args: str, env: dict) -> str:
    out = subprocess.run(["bash", str(CLUSTER), *args], capture_output=True, text=True, timeout=120, env=env)
    assert out.returncode == 0, out.stderr
    return out.stdout


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    state = tmp_path_factory.mktemp("cluster")
    env = {**os.environ, "AZR_CLUSTER_STATE": str(state)}
    _cluster("down", env=env)
    _cluster("up", "2", "--cores-per-host", "1", env=env)
    try:
        yield env
    finally:
        _cluster("down", env=env)  # also when a test failed


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return make_tiny_model_dir(tmp_path_factory.mktemp("tiny") / "model")


def _hostfile(path: Path, hosts: int) -> Path:
    path.write_text("".join(f"10.77.0.{k} slots=1\n" for k in range(1, hosts + 1)))
    return path


def run_update(tmp: Path, name: str, tiny: Path, env: dict, *, hosts: int = 0, extra: tuple[str, ...] = ()) -> dict:
    """clusterutil's update: on the machine itself (hosts=0), or driven from azr-h1 over `hosts` hosts."""
    out, log = tmp / f"{name}.json", tmp / f"{name}-workers.log"
    cmd = [sys.executable, str(UTIL), "--tiny", str(tiny), "--out", str(out), "--log", str(log), *extra]
    if hosts:
        cmd = ["bash", str(CLUSTER), "exec", "azr-h1", "--", *cmd, "--hostfile", str(_hostfile(tmp / f"{name}.hosts",
               hosts)), "--node-launch", NODE_LAUNCH, "--listen", "10.77.0.1"]  # fmt: skip
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=env, cwd=ROOT)
    if done.returncode != 0:
        tail = log.read_text(errors="replace")[-3000:] if log.exists() else ""
        raise AssertionError(f"{name}: exit {done.returncode}\n{done.stderr[-3000:]}\n--- workers.log ---\n{tail}")
    return json.loads(out.read_text())


def _same_update(a: dict, b: dict) -> None:
    assert a["metrics"]["loss"] == pytest.approx(b["metrics"]["loss"], rel=1e-5, abs=1e-7)
    assert a["metrics"]["grad_norm"] == pytest.approx(b["metrics"]["grad_norm"], rel=1e-5)
    assert a["metrics"]["tokens"] == b["metrics"]["tokens"] and a["metrics"]["sequences"] == b["metrics"]["sequences"]
    for x, y in zip(a["logprobs_after"], b["logprobs_after"], strict=True):  # the weights after the step
        assert x == pytest.approx(y, abs=1e-5)


def test_two_hosts_update_and_resume_as_one_host(cluster, tiny, tmp_path):
    one = run_update(tmp_path, "one", tiny, cluster, extra=("--save", str(tmp_path / "ckpt-one")))
    two = run_update(tmp_path, "two", tiny, cluster, hosts=2, extra=("--save", str(tmp_path / "ckpt-two")))
    assert [(i["rank"], i["node"], i["world_size"]) for i in two["info"]] == [(0, 0, 2), (1, 1, 2)]
    assert two["metrics"]["loss"] != 0 and two["metrics"]["grad_norm"] > 0
    _same_update(two, one)
    # the next step from each side's checkpoint: two hosts resume exactly where one host goes on
    again_one = run_update(tmp_path, "again-one", tiny, cluster, extra=("--resume-from", str(tmp_path / "ckpt-one")))
    again_two = run_update(tmp_path, "again-two", tiny, cluster, hosts=2,
                           extra=("--resume-from", str(tmp_path / "ckpt-two")))  # fmt: skip
    _same_update(again_two, again_one)
    # the resumed group starts from the weights the first one stepped to, and steps on from there
    for before, after in zip(again_two["logprobs_before"], two["logprobs_after"], strict=True):
        assert before == pytest.approx(after, abs=1e-6)
    moved = [abs(a - b) for x, y in zip(again_two["logprobs_after"], two["logprobs_after"], strict=True)
             for a, b in zip(x, y, strict=True)]  # fmt: skip
    assert max(moved) > 1e-4


def test_a_peer_on_another_host_without_the_token_is_refused(cluster, tiny, tmp_path):
    log = tmp_path / "refused-workers.log"
    # On azr-h2, a peer that reads the channel's address from the launcher's log line (as anyone on the network
    # could scan for it) and says hello without the token, again and again until the group is up.
    rogue = subprocess.Popen(
        ["bash", str(CLUSTER), "exec", "azr-h2", "--", sys.executable, "-c",
         "import json, os, re, socket, time\n"
         f"log = {str(log)!r}; tried = 0\n"
         "for _ in range(600):\n"
         "    text = open(log).read() if os.path.exists(log) else ''\n"
         "    m = re.search(r'--connect\\W+10\\.77\\.0\\.1:(\\d+)', text)\n"
         "    if m:\n"
         "        try:\n"
         "            c = socket.create_connection(('10.77.0.1', int(m.group(1))), timeout=5)\n"
         "            body = json.dumps({'hello': 0, 'token': 'guess'}).encode()\n"
         "            c.sendall(len(body).to_bytes(8, 'big') + body); c.close(); tried += 1\n"
         "        except OSError:\n"
         "            pass\n"
         "    time.sleep(0.2)\n"
         "print(tried)\n"],
        stdout=subprocess.PIPE, text=True, env=cluster,
    )  # fmt: skip
    try:
        result = run_update(tmp_path, "refused", tiny, cluster, hosts=2)
    finally:
        rogue.kill()
        rogue.wait()
    assert result["refused_peers"] >= 1  # the rogue was turned away ...
    assert [i["rank"] for i in result["info"]] == [0, 1]  # ... and the group started all the same


def test_a_host_that_is_not_there_fails_the_start_at_once_named(cluster, tiny, tmp_path):
    start = time.monotonic()
    with pytest.raises(AssertionError) as err:  # the hostfile names azr-h3, which the cluster lacks
        run_update(tmp_path, "missing", tiny, cluster, hosts=3)
    assert time.monotonic() - start < 120
    assert "launcher of node 2 (10.77.0.3) exited" in str(err.value) and "is up" in str(err.value)


def test_the_sandbox_on_every_host_gives_the_local_results(cluster, tiny, tmp_path):
    """executor.placement=hosts: CRUXEval's first half validated and graded on both hosts' pools, split in order,
    with outputs and verdicts equal to one local executor's."""
    from dataclasses import asdict

    from azr_core.executor import Executor, ExecutorConfig
    from tests.clusterutil import sandbox_items

    data = ROOT / "azr_core" / "eval" / "data" / "cruxeval_dev.jsonl"
    spread = run_update(tmp_path, "sandbox", tiny, cluster, hosts=2, extra=("--sandbox", str(data)))
    assert spread["hosts"] == [0, 1]  # one pool on each host
    items, grades = sandbox_items(str(data))
    with Executor(ExecutorConfig(workers=4, timeout_s=5.0)) as local:
        valid, graded = local.validate_many(items), local.grade_many(grades)
    assert len(spread["validated"]) == len(items) == 400
    assert spread["validated"] == [asdict(v) for v in valid]
    assert sum(v["valid"] for v in spread["validated"]) == 400
    assert spread["graded"] == [asdict(g) for g in graded]
    assert [g["correct"] for g in spread["graded"]] == [k % 2 == 0 for k in range(400)]
    # each host ran its share: two runs per validation (the determinism check), summed over the hosts
    assert set(spread["per_host"]) == {"0", "1"} and min(spread["per_host"].values()) >= 2 * 200
    assert spread["stats"]["executions"] == sum(spread["per_host"].values())


def test_a_rank_killed_on_another_host_fails_the_next_command_naming_rank_and_host(cluster, tiny, tmp_path):
    out = run_update(tmp_path, "killed", tiny, cluster, hosts=2, extra=("--kill-rank", "1"))
    assert out["error"] is not None and out["error"]["rank"] == 1 and out["error"]["host"] == "10.77.0.2"
    assert "rank 1 on 10.77.0.2 failed" in out["error"]["message"]
    assert out["seconds"] < 60  # within seconds, far inside trainer.worker_timeout_s
    assert out["stopped"] and out["alive"] == []  # the launchers and the surviving rank were stopped


def test_a_run_over_two_hosts_loses_nothing_to_a_killed_rank_and_resumes(cluster, tiny, tmp_path):
    """Self-play with the group over two hosts: iteration 1 commits; in iteration 2 the rank on azr-h2 is killed as
    the update begins: the iteration fails naming rank and host, within trainer.worker_timeout_s, and commits
    nothing; the next session resumes from iteration 1 and commits iteration 2, every row once."""
    from stackutil import assert_each_row_once

    from azr_core.store import connect

    run_dir = tmp_path / "run"

    def iteration(name: str, *extra: str) -> dict:
        return run_update(tmp_path, name, tiny, cluster, hosts=2, extra=("--selfplay", str(run_dir), *extra))

    first = iteration("sp-first")
    assert first["ranks"] == [[0, 0], [1, 1]] and first["error"] is None and first["after"] == 1
    killed = iteration("sp-killed", "--kill-at", "update")
    assert killed["before"] == 1 and killed["error"] is not None, killed
    assert killed["error"]["rank"] == 1 and killed["error"]["host"] == "10.77.0.2", killed["error"]
    assert killed["seconds"] < 120 and killed["after"] == 1  # bounded, and nothing half-committed
    resumed = iteration("sp-resumed")
    assert resumed["before"] == 1 and resumed["error"] is None and resumed["after"] == 2, resumed
    con = connect(run_dir)
    rows = con.execute("SELECT iteration FROM iterations WHERE iteration > 0 ORDER BY 1").fetchall()
    assert [r[0] for r in rows] == [1, 2]
    assert_each_row_once(con)
