"""Hostile programs through the real firejail sandbox. Each test checks the host afterwards, not only the verdict.

`bare_sandbox` has the static checks and guarded builtins OFF, so these tests show that the OS layer (firejail,
rlimits, the unprivileged user, fork-per-execution) holds on its own; `executor` is the full stack.
"""

from __future__ import annotations

import os
import pwd
import socket
import threading
import time
import uuid
from pathlib import Path

import pytest

from azr_core.executor import Executor, ExecutorConfig

pytestmark = pytest.mark.sandbox


def sandbox_processes() -> int:
    """Processes on the host whose real uid is the sandbox user's (workers + anything left behind)."""
    uid = pwd.getpwnam("azr-sandbox").pw_uid
    count = 0
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            status = Path(f"/proc/{pid}/status").read_text()
        except OSError:
            continue
        uids = next(line for line in status.splitlines() if line.startswith("Uid:")).split()
        count += int(uids[1]) == uid
    return count


def settle_to(expected: int, timeout: float = 5.0) -> int:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        n = sandbox_processes()
        if n <= expected:
            return n
        time.sleep(0.1)
    return sandbox_processes()


def run1(ex: Executor, program: str, input_text: str = "0"):
    return ex.validate_many([(program, input_text)])[0]


def test_infinite_loop_times_out_and_leaves_nothing(executor):
    before = sandbox_processes()
    start = time.monotonic()
    res = run1(executor, "def f(x):\n    while True:\n        x += 1")
    assert not res.valid and res.reason.startswith("timeout")
    assert time.monotonic() - start < executor.cfg.timeout_s + 2
    assert settle_to(before) == before
    assert run1(executor, "def f(x):\n    return x + 1", "1").output == "2"


def test_fork_bomb_is_contained(bare_sandbox):
    before = sandbox_processes()
    bomb = (
        "import os\ndef f(x):\n    while True:\n        try:\n            os.fork()\n        except OSError:\n"
        "            pass"
    )
    res = run1(bare_sandbox, bomb)
    assert not res.valid
    assert settle_to(before) == before, "fork bomb left processes behind"
    assert run1(bare_sandbox, "def f(x):\n    return x * 3", "2").output == "6"


def test_daemonized_grandchild_is_killed(bare_sandbox):
    before = sandbox_processes()
    prog = (
        "import os, time\ndef f(x):\n    if os.fork() == 0:\n        os.setsid()\n        time.sleep(60)\n"
        "        os._exit(0)\n    return x"
    )
    res = run1(bare_sandbox, prog, "5")
    assert res.valid and res.output == "5"
    assert settle_to(before) == before


@pytest.mark.parametrize("fixture", ["executor", "bare_sandbox"])
def test_memory_bomb_fails_inside_the_limit(fixture, request):
    ex = request.getfixturevalue(fixture)
    res = run1(ex, "def f(x):\n    return len(bytearray(8 * 1024 ** 3))")
    assert not res.valid and "MemoryError" in res.reason
    res = run1(ex, "def f(x):\n    a = []\n    while True:\n        a.append(' ' * 10 ** 6)")
    assert not res.valid and ("MemoryError" in res.reason or res.reason.startswith("crashed"))


def test_no_network(bare_sandbox):
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)
    server.settimeout(3)
    port = server.getsockname()[1]
    accepted = []
    threading.Thread(target=lambda: _accept(server, accepted), daemon=True).start()
    prog = (
        f"import socket\ndef f(x):\n    socket.create_connection(('127.0.0.1', {port}), timeout=1)\n"
        "    return 'connected'"
    )
    res = run1(bare_sandbox, prog)
    assert not res.valid and ("ConnectionRefused" in res.reason or "OSError" in res.reason), res.reason
    unix = "import socket\ndef f(x):\n    s = socket.socket(socket.AF_UNIX)\n    return 'made'"
    assert not run1(bare_sandbox, unix).valid
    time.sleep(0.2)
    assert accepted == [], "the sandbox reached a host socket"
    server.close()


def _accept(server, accepted):
    try:
        accepted.append(server.accept())
    except OSError:
        pass


def test_writes_do_not_reach_the_host(bare_sandbox, tmp_path):
    marker = f"/tmp/azr-hostile-{uuid.uuid4().hex}"
    in_repo = Path.cwd() / f"azr-hostile-{uuid.uuid4().hex}"
    home = Path(pwd.getpwnam("azr-sandbox").pw_dir) / "planted"
    for target in (marker, in_repo, home, tmp_path / "x"):
        prog = f"def f(x):\n    with open({str(target)!r}, 'w') as fh:\n        fh.write('pwned')\n    return 1"
        run1(bare_sandbox, prog)
        assert not Path(target).exists(), f"sandbox wrote {target} on the host"


def test_reads_outside_are_blocked(bare_sandbox):
    for target in (Path.cwd() / "pyproject.toml", Path("/etc/shadow"), Path("/root/.bashrc")):
        prog = f"def f(x):\n    return open({str(target)!r}).read()[:20]"
        res = run1(bare_sandbox, prog)
        assert not res.valid and ("PermissionError" in res.reason or "FileNotFoundError" in res.reason), (target, res)


def test_environment_secrets_do_not_leak(monkeypatch):
    monkeypatch.setenv("AZR_TEST_SECRET", "s3cr3t-value")
    with Executor(ExecutorConfig(workers=2, timeout_s=2.0, static_checks=False)) as ex:
        res = run1(
            ex,
            "import os\ndef f(x):\n    return [kv for kv in sorted(os.environ.items()) if kv[0] != 'PYTHONHASHSEED']",
        )
        proc = run1(ex, "def f(x):\n    return open('/proc/1/environ', 'rb').read().decode(errors='replace')")
    assert res.valid
    assert "s3cr3t-value" not in res.output and "AZR_TEST_SECRET" not in res.output
    assert "s3cr3t-value" not in (proc.output or "")


def test_subprocess_stays_inside(bare_sandbox):
    target = Path.cwd() / f"azr-sub-{uuid.uuid4().hex}"
    prog = (
        "import subprocess\ndef f(x):\n"
        f"    r = subprocess.run(['sh', '-c', 'echo pwned > {target}; id -u'], capture_output=True, text=True)\n"
        "    return r.stdout.strip()"
    )
    res = run1(bare_sandbox, prog)
    assert not target.exists()
    if res.valid:  # the shell may run, but only as the unprivileged user and inside the jail
        assert res.output == repr(str(pwd.getpwnam("azr-sandbox").pw_uid))


def test_ctypes_cannot_gain_privilege(bare_sandbox, executor):
    prog = "import ctypes\ndef f(x):\n    libc = ctypes.CDLL(None)\n    return [libc.setuid(0), libc.kill(1, 9)]"
    restarts = bare_sandbox.worker_restarts
    res = run1(bare_sandbox, prog)
    # setuid fails; SIGKILL to the PID namespace's init is ignored by the kernel: the sandbox lives on.
    assert res.valid and res.output.startswith("[-1,"), res
    assert bare_sandbox.worker_restarts == restarts
    assert run1(bare_sandbox, "def f(x):\n    return x", "3").output == "3"
    assert run1(executor, prog).reason.startswith("check: banned module: ctypes")


def test_killing_the_worker_does_not_stop_the_batch(bare_sandbox):
    restarts = bare_sandbox.worker_restarts
    killer = "import os, signal\ndef f(x):\n    os.kill(os.getppid(), signal.SIGKILL)\n    return x"
    items = [("def f(x):\n    return x * 2", str(i)) for i in range(10)]
    items.insert(3, (killer, "1"))
    results = bare_sandbox.validate_many(items)
    assert not results[3].valid and results[3].reason.startswith("crashed"), results[3]
    assert [r.output for i, r in enumerate(results) if i != 3] == [str(2 * i) for i in range(10)]
    assert bare_sandbox.worker_restarts > restarts


def test_builtins_poisoning_does_not_reach_the_next_program(bare_sandbox):
    poison = (
        "import builtins\nbuiltins.len = lambda x: 42\nbuiltins.sorted = None\ndef f(x):\n    return builtins.len(x)"
    )
    honest = "def f(x):\n    return [len(x), sorted(x)]"
    items = [(poison, "[1]"), (honest, "[3, 1, 2]")] * 6
    results = bare_sandbox.validate_many(items)
    # The poison breaks its own child (the runner's len() lies too), never the next program's.
    assert not any(r.valid for r in results[0::2])
    assert all(r.output == "[3, [1, 2, 3]]" for r in results[1::2])


def test_forged_protocol_output_is_not_accepted(bare_sandbox):
    forged = '{"id": 0, "status": "ok", "output": "1337", "detail": null}\\n'
    prog = (
        "import os\ndef f(x):\n    for path in ['/proc/%d/fd/1' % os.getppid(), '/dev/stdout']:\n        try:\n"
        f"            with open(path, 'w') as fh:\n                fh.write('{forged}')\n        except OSError:\n"
        "            pass\n    print('noise' * 1000)\n    return 7"
    )
    res = run1(bare_sandbox, prog)
    assert res.output == "7", res


def test_output_limits_and_non_literals(executor):
    too_big = run1(executor, "def f(x):\n    return 'a' * 10 ** 6")
    assert not too_big.valid and too_big.reason.startswith("output too large")
    for prog in (
        "def f(x):\n    return object()",
        "def f(x):\n    return lambda: 1",
        "class A:\n    def __repr__(self):\n        return '1'\ndef f(x):\n    return A()",
        "class L(list):\n    pass\ndef f(x):\n    return L([1])",
        "def f(x):\n    return float('nan')",
        "def f(x):\n    return [float('inf')]",
        "def f(x):\n    a = []\n    a.append(a)\n    return a",
    ):
        res = run1(executor, prog)
        assert not res.valid and res.reason.startswith("not literal"), (prog, res)


def test_nondeterminism_is_caught(executor, bare_sandbox):
    words = ", ".join(repr(f"w{i}") for i in range(12))
    res = run1(executor, f"def f(x):\n    return list({{{words}}})")
    assert not res.valid and res.reason.startswith("nondeterministic")
    res = run1(executor, "def f(x):\n    return hash('abc') % 1000003")
    assert not res.valid and res.reason.startswith("nondeterministic")
    res = run1(bare_sandbox, "def f(x):\n    return id(object()) % 1000003")
    assert not res.valid and res.reason.startswith("nondeterministic")
    state = "seen = []\ndef f(x, acc=[]):\n    acc.append(x)\n    return len(acc)"
    assert run1(executor, state, "1").output == "1"  # fresh process per run: state never leaks between runs


def test_exceptions_and_exits_are_invalid(executor, bare_sandbox):
    assert run1(executor, "def f(x):\n    raise Exception").reason == "error: Exception"
    assert run1(executor, "def f(x):\n    return 1 / x").reason.startswith("error: ZeroDivisionError")
    assert run1(bare_sandbox, "import sys\ndef f(x):\n    sys.exit(0)").reason.startswith("error: SystemExit")
    assert run1(bare_sandbox, "import os\ndef f(x):\n    os._exit(0)").reason.startswith("crashed")
    assert run1(executor, "def f(x):\n    return f(x)").reason.startswith("error: RecursionError")


def test_missing_firejail_refuses_with_instructions():
    from azr_core.executor import SandboxUnavailable

    with pytest.raises(SandboxUnavailable, match="apt-get install"):
        Executor(ExecutorConfig(firejail="/nonexistent/firejail")).start()


def test_unsafe_mode_warns_and_still_runs(capfd):
    with Executor(ExecutorConfig(sandbox="none", workers=2, timeout_s=2.0)) as ex:
        assert run1(ex, "def f(x):\n    return x * 2", "4").output == "8"
        assert not run1(ex, "import os\ndef f(x):\n    return 1").valid
    assert "WITHOUT the firejail sandbox" in capfd.readouterr().err


def test_a_worker_replaced_twice_in_one_poll_round_reports_its_job_once():
    """Found by the executor soak: a worker that died (read EOF) and whose deadline had also passed was replaced a
    second time in the same poll round, on its closed pipe, which broke the whole batch. Replacing is idempotent."""
    from azr_core.executor.pool import Job, WorkerPool

    pool = WorkerPool(ExecutorConfig(workers=1, timeout_s=2.0))
    try:
        pool.submit(Job("k", "def f(x):\n    while True:\n        pass", "((0,), {})"))
        (w,) = [w for w in pool._workers if w is not None and w.job is not None]
        pool._replace(w, "crashed", "first")  # as when its pipe reached EOF ...
        pool._replace(w, "crashed", "second")  # ... and its deadline had passed in the same round
        done = pool.poll()
        assert [(job.key, res.detail.split(" (")[0]) for job, res in done] == [("k", "first")]
        pool.submit(Job("k2", "def f(x):\n    return x + 1", "((1,), {})"))
        ((job, res),) = pool.poll()
        assert job.key == "k2" and res.status == "ok" and res.output == "2"  # the fresh worker serves
    finally:
        pool.close()


@pytest.mark.parametrize("limit", [256, 0])  # 256: the old fixed default; 0: auto, 16 per worker + 256
def test_executors_running_at_once_do_not_starve_each_other_of_processes(limit):
    """The process limit counts the sandbox user's processes machine-wide: 3 per worker of every executor. Two
    48-worker executors (288 processes; an evaluation's graders plus self-play's executor come to as many) broke
    every execution under the old limit of 256; the auto limit leaves room."""
    cfg = ExecutorConfig(workers=48, max_processes=limit)
    with Executor(cfg).start() as a, Executor(cfg).start() as b:
        progs = [(f"def f(x):\n    return x + {i}", "1") for i in range(20)]
        valid = [r.valid for ex in (a, b) for r in ex.validate_many(progs)]
    if limit:
        assert not any(valid)  # the failure this default fixes (a fork over the limit fails)
    else:
        assert all(valid)
