"""How a sandbox worker process is started: the firejail command line, its user, its environment.

The worker itself is `runner.py`, sent on stdin to the system python, so the sandbox needs nothing from the host's
virtualenv. The firejail pitfalls this answers, as measured: `--private` hides /root (so: system python, source on
stdin), /tmp persists without `--private-tmp` (so: private tmp), `--timeout` costs 2 s (so: the parent enforces time
limits), process limits do not bind root (so: a dedicated unprivileged user).
"""

from __future__ import annotations

import os
import pwd
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

from azr_core.executor.config import ExecutorConfig

RUNNER_SOURCE = (Path(__file__).parent / "runner.py").read_text()
BOOTSTRAP = (
    "import sys;n=int(sys.stdin.buffer.readline());"
    "exec(compile(sys.stdin.buffer.read(n),'azr_runner','exec'),{'__name__':'__main__'})"
)
UNSAFE_WARNING = (
    "WARNING: executor.sandbox=none: model-written programs run WITHOUT the firejail sandbox, with only static "
    "checks and rlimits between them and this machine. Use it only on a disposable machine."
)


class SandboxUnavailable(RuntimeError):
    """The sandbox cannot start here; the message says what to install or set up."""


@dataclass(frozen=True)
class LaunchSpec:
    """Everything needed to start one worker process."""

    argv: list[str]
    env: dict[str, str]
    user: str | None
    group: int | None
    own_pid_namespace: bool
    limit_processes: bool


def launch_spec(cfg: ExecutorConfig, hash_seed: int) -> LaunchSpec:
    """The command line and identity of a worker; raises SandboxUnavailable with the fix when it cannot run."""
    if not Path(cfg.python).exists():
        raise SandboxUnavailable(
            f"the sandbox interpreter {cfg.python} does not exist: install the system python "
            "(apt-get install -y python3) or set executor.python to an interpreter outside /root"
        )
    # No -E/-I: they would ignore PYTHONHASHSEED, and the environment is ours anyway (built from scratch below).
    python_argv = [cfg.python, "-s", "-S", "-B", "-c", BOOTSTRAP]
    env = {"PATH": "/usr/bin:/bin", "LC_ALL": "C.UTF-8", "PYTHONHASHSEED": str(hash_seed)}
    if cfg.sandbox == "none":
        return LaunchSpec(python_argv, env, None, None, own_pid_namespace=False, limit_processes=os.geteuid() != 0)
    firejail = shutil.which(cfg.firejail)
    if firejail is None:
        raise SandboxUnavailable(
            "firejail is not installed, and model-written code never runs unsandboxed by default.\n"
            "  Install it:  apt-get update && apt-get install -y --no-install-recommends firejail\n"
            "  (or run infra/setup.sh, which also creates the sandbox user).\n"
            "  To run WITHOUT a sandbox anyway (unsafe): --unsafe-no-sandbox, or executor.sandbox=none."
        )
    user, group = None, None
    if os.geteuid() == 0:
        try:
            entry = pwd.getpwnam(cfg.sandbox_user)
        except KeyError:
            raise SandboxUnavailable(
                f"running as root, the sandbox needs the unprivileged user {cfg.sandbox_user!r} (process limits do "
                f"not bind root), and it does not exist. Create it: `azr sandbox-setup` (or infra/setup.sh)."
            ) from None
        user, group = cfg.sandbox_user, entry.pw_gid
    hidden = list(dict.fromkeys([*cfg.hidden_paths, os.getcwd()]))
    argv = [
        firejail,
        "--quiet",
        "--noprofile",
        "--net=none",
        "--protocol=inet",  # no unix sockets: --net=none does not isolate filesystem sockets
        "--private",
        "--private-tmp",
        "--private-dev",
        "--caps.drop=all",
        "--seccomp",
        "--nonewprivs",
        "--nogroups",
        "--nosound",
        "--no3d",
        "--machine-id",
        *[f"--blacklist={p}" for p in hidden if p not in ("/", "") and os.path.exists(p)],
        *python_argv,
    ]
    return LaunchSpec(argv, env, user, group, own_pid_namespace=True, limit_processes=True)


FIREJAIL_USERS = Path("/etc/firejail/firejail.users")


def setup_sandbox_user(
    name: str = "azr-sandbox", *, allow: tuple[str, ...] | None = None, users_file: Path = FIREJAIL_USERS
) -> list[str]:
    """Create the sandbox user and allow it in /etc/firejail/firejail.users (root only); returns what was done.

    `allow`: more users to list there; by default the user who ran `sudo azr sandbox-setup` ($SUDO_USER), since a
    non-root user runs firejail as themself (their own process limits bind) and firejail would run their programs
    unsandboxed if the file exists without them.
    """
    import subprocess

    if allow is None:
        allow = tuple(u for u in [os.environ.get("SUDO_USER")] if u and u != "root")

    if os.geteuid() != 0:
        raise SandboxUnavailable("creating the sandbox user needs root: sudo azr sandbox-setup")
    done = []
    home = Path("/var/lib") / name
    try:
        pwd.getpwnam(name)
    except KeyError:
        subprocess.run(
            ["useradd", "--system", "--home-dir", str(home), "--shell", "/usr/sbin/nologin", name], check=True
        )
        done.append(f"created user {name}")
    # firejail --private mounts a tmpfs over the user's home, so the home must exist.
    if not home.exists():
        home.mkdir(parents=True, mode=0o700)
        shutil.chown(home, user=name, group=pwd.getpwnam(name).pw_gid)
        done.append(f"created {home}")
    # Without this file every user may run firejail; with it, only those listed, and firejail runs anyone else's
    # program UNSANDBOXED. So list the user where the file exists (the workers also verify they are sandboxed).
    if users_file.exists():
        for user in (name, *allow):
            if user not in users_file.read_text().split():
                with users_file.open("a") as fh:
                    fh.write(f"{user}\n")
                done.append(f"listed {user} in {users_file}")
    return done


def warn_unsafe() -> None:
    """Printed on every run that executes programs without the sandbox."""
    print(UNSAFE_WARNING, file=sys.stderr, flush=True)
