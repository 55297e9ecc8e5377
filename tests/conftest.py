"""Shared fixtures: sandboxed executors started once per test session (worker start-up is the slow part)."""

from __future__ import annotations

import shutil

import pytest

from azr_core.executor import Executor, ExecutorConfig


def _need_firejail() -> None:
    if shutil.which("firejail") is None:
        pytest.fail("firejail is not installed: run infra/setup.sh (the sandbox tests never skip silently)")


@pytest.fixture(scope="session")
def executor():
    """The real firejail sandbox with every check on, as self-play uses it."""
    _need_firejail()
    with Executor(ExecutorConfig(workers=4, timeout_s=2.0)) as ex:
        yield ex


@pytest.fixture(scope="session")
def bare_sandbox():
    """The real firejail sandbox with static checks and guarded builtins OFF: tests that the OS layer holds alone."""
    _need_firejail()
    with Executor(ExecutorConfig(workers=3, timeout_s=2.0, static_checks=False)) as ex:
        yield ex
