"""The simulated cluster (infra/cluster.sh): hosts as network namespaces on a bridge of their own, each with its own
address and CPU set; up is idempotent, down removes everything (also a half-made cluster), bad input is refused."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "infra" / "cluster.sh"

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("ip") is None, reason="network namespaces need root and iproute2"
)


def cluster(*args: str, check: bool = True, env: dict | None = None) -> subprocess.CompletedProcess:
    out = subprocess.run(["bash", str(SCRIPT), *args], capture_output=True, text=True, timeout=120, env=env)
    if check and out.returncode != 0:
        raise AssertionError(f"cluster.sh {' '.join(args)} -> {out.returncode}\n{out.stdout}\n{out.stderr}")
    return out


def namespaces() -> set[str]:
    names = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout.split()
    return {n for n in names if n.startswith("azr-")}


@pytest.fixture
def env(tmp_path):
    e = {**os.environ, "AZR_CLUSTER_STATE": str(tmp_path / "state")}
    cluster("down", env=e)
    yield e
    cluster("down", env=e)  # always torn down, also when the test failed
    assert not namespaces()


def test_two_hosts_reach_each_other_and_nothing_else(env):
    out = cluster("up", "2", "--cores-per-host", "1", env=env)
    assert "cluster up: 2 hosts" in out.stdout
    hosts = [line.split() for line in cluster("hosts", env=env).stdout.splitlines()]
    assert [h[:2] for h in hosts] == [["azr-h1", "10.77.0.1"], ["azr-h2", "10.77.0.2"]]
    assert cluster("status", env=env).stdout.startswith("up: 2 hosts")
    # each host runs on its own cores
    n = os.cpu_count() or 1
    for k, (host, *_rest) in enumerate(hosts):
        aff = cluster("exec", host, "--", sys.executable, "-c", "import os; print(sorted(os.sched_getaffinity(0)))",
                      env=env).stdout  # fmt: skip
        assert aff.strip() == f"[{k % n}]"
    # also when started from inside another host (a driver on azr-h1 launching ranks on azr-h2 through `exec`)
    nested = cluster("exec", "azr-h1", "--", "bash", str(SCRIPT), "exec", "azr-h2", "--", sys.executable, "-c",
                     "import os; print(sorted(os.sched_getaffinity(0)))", env=env).stdout  # fmt: skip
    assert nested.strip() == f"[{1 % n}]"
    # host 2 listens on its address; host 1 connects to it over the bridge
    server = subprocess.Popen(
        ["bash", str(SCRIPT), "exec", "azr-h2", "--", sys.executable, "-c",
         "import socket; s = socket.create_server(('10.77.0.2', 7070)); print('ready', flush=True); "
         "c, _ = s.accept(); c.sendall(c.recv(64).upper()); c.close()"],
        stdout=subprocess.PIPE, text=True, env=env,
    )  # fmt: skip
    try:
        assert server.stdout.readline().strip() == "ready"
        reply = cluster("exec", "azr-h1", "--", sys.executable, "-c",
                        "import socket; c = socket.create_connection(('10.77.0.2', 7070), timeout=10); "
                        "c.sendall(b'ping'); print(c.recv(64).decode())", env=env).stdout  # fmt: skip
        assert reply.strip() == "PING"
    finally:
        server.kill()
        server.wait()
    # the machine's own namespace has no interface on the cluster's subnet, and the bridge is not in it
    assert "10.77.0." not in subprocess.run(["ip", "-o", "addr"], capture_output=True, text=True).stdout
    assert subprocess.run(["ip", "link", "show", "azrbr0"], capture_output=True).returncode != 0
    # a host sees only its own subnet: no route out of the machine
    routes = cluster("exec", "azr-h1", "--", "ip", "route", env=env).stdout
    assert "default" not in routes and "10.77.0.0/24" in routes


def test_up_again_leaves_a_running_cluster_alone(env):
    cluster("up", "2", env=env)
    sleeper = subprocess.Popen(["bash", str(SCRIPT), "exec", "azr-h2", "--", "sleep", "60"], env=env)
    try:
        time.sleep(0.5)
        assert "already up" in cluster("up", "2", env=env).stdout
        assert sleeper.poll() is None  # the host's process lives on
        cluster("up", "3", env=env)  # another shape: rebuilt, its processes ended
        assert sleeper.wait(timeout=10) is not None
        assert namespaces() == {"azr-net", "azr-h1", "azr-h2", "azr-h3"}
    finally:
        sleeper.kill()


def test_a_half_made_cluster_is_reported_and_torn_down(env):
    subprocess.run(["ip", "netns", "add", "azr-h1"], check=True)  # as left by a killed `up`
    status = cluster("status", check=False, env=env)
    assert status.returncode == 3 and "half-made" in status.stdout and "azr-h1" in status.stdout
    cluster("up", "1", env=env)
    assert namespaces() == {"azr-net", "azr-h1"}
    cluster("down", env=env)
    assert not namespaces()


@pytest.mark.parametrize(
    "args, message",
    [
        (("up", "0"), "1 to 250"),
        (("up", "2", "--cores-per-host", "x"), "positive number"),
        (("up", "2", "--subnet", "192.168.1"), "10.x.y.0/24"),
        (("exec", "azr-h9", "--", "true"), "no cluster is up"),
    ],
)
def test_bad_input_is_refused_with_the_fix(env, args, message):
    out = cluster(*args, check=False, env=env)
    assert out.returncode == 2 and message in out.stderr
    assert not namespaces()
