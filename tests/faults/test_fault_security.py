"""Security set-up: the sandbox user step lists the user who ran it through sudo, so firejail never runs that user's
programs unsandboxed; run as root here (the test VM has no sudo), with $SUDO_USER as sudo sets it."""

from __future__ import annotations

import os
import pwd
from pathlib import Path

import pytest

from azr_core.executor.sandbox import setup_sandbox_user


@pytest.mark.skipif(os.geteuid() != 0, reason="creates users: needs root (CI runs as root)")
def test_sandbox_setup_lists_the_sudo_user_where_firejail_users_exists(tmp_path: Path, monkeypatch):
    users = tmp_path / "firejail.users"
    users.write_text("# only these users may run firejail\nalice\n")
    setup_sandbox_user("azr-sandbox", users_file=users)  # the sandbox user exists after infra/setup.sh
    monkeypatch.setenv("SUDO_USER", "bob")
    done = setup_sandbox_user("azr-sandbox", users_file=users)
    assert done == [f"listed bob in {users}"]
    assert users.read_text().split()[-3:] == ["alice", "azr-sandbox", "bob"]
    assert setup_sandbox_user("azr-sandbox", users_file=users) == []  # idempotent
    assert pwd.getpwnam("azr-sandbox").pw_uid != 0


def test_setup_script_runs_the_sandbox_step_through_sudo_for_a_non_root_user():
    script = (Path(__file__).resolve().parents[2] / "infra" / "setup.sh").read_text()
    # Through sudo by absolute path (sudo's secure_path has no .venv), and a failure says what to run.
    assert 'sudo "$PWD/.venv/bin/azr" sandbox-setup' in script
    assert "run 'sudo $PWD/.venv/bin/azr sandbox-setup'" in script


@pytest.mark.parametrize("script", ["exit 1", "head -c 1 >/dev/null; exit 1"])  # gone before / after our first write
def test_a_user_firejail_refuses_gets_one_error_naming_the_fix(script: str):
    """firejail exits at once for a user missing from a firejail.users that exists (measured as a non-root user with
    sudo): the executor says so and how to fix it, instead of a BrokenPipeError traceback."""
    from azr_core.executor.pool import _Worker
    from azr_core.executor.sandbox import LaunchSpec, SandboxUnavailable

    refusal = "echo 'Error: the user is not allowed to use Firejail.' >&2; "
    spec = LaunchSpec(["/bin/sh", "-c", refusal + script], {"PATH": "/usr/bin:/bin"}, None, None, False, False)
    with pytest.raises(SandboxUnavailable) as err:
        _Worker(0, spec, {}, expect_sandbox=True).wait_ready(30)
    msg = str(err.value)
    assert "exited at start (code 1)" in msg and "not allowed to use Firejail" in msg
    assert "sandbox-setup" in msg and "/etc/firejail/firejail.users" in msg


def test_a_worker_failing_to_start_takes_the_started_ones_down_with_it(monkeypatch):
    import psutil

    from azr_core.executor import pool as pool_mod
    from azr_core.executor.config import ExecutorConfig
    from azr_core.executor.sandbox import SandboxUnavailable

    started = []
    real = pool_mod.WorkerPool._spawn

    def spawn(self, index):
        if index == 2:
            raise SandboxUnavailable("the third worker refused")
        started.append(real(self, index))
        return started[-1]

    monkeypatch.setattr(pool_mod.WorkerPool, "_spawn", spawn)
    with pytest.raises(SandboxUnavailable, match="third worker"):
        pool_mod.WorkerPool(ExecutorConfig(workers=4, sandbox="none"))
    assert len(started) == 2
    assert all(not psutil.pid_exists(w.proc.pid) for w in started)  # killed and reaped, not left running
