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
