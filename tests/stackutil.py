"""Helpers of the tests that start the real local stack (`azr up`): a free loopback port, a command in the repo."""

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
