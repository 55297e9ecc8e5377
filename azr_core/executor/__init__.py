"""The sandboxed code executor: static checks, firejail workers, task validation and answer grading."""

from azr_core.executor.checks import BANNED_MODULES, BANNED_NAMES, CheckError, check_program
from azr_core.executor.config import ExecutorConfig
from azr_core.executor.executor import Executor, GradeRequest, GradeResult, ValidationResult
from azr_core.executor.sandbox import SandboxUnavailable, setup_sandbox_user

__all__ = [
    "BANNED_MODULES",
    "BANNED_NAMES",
    "CheckError",
    "Executor",
    "ExecutorConfig",
    "GradeRequest",
    "GradeResult",
    "SandboxUnavailable",
    "ValidationResult",
    "check_program",
    "setup_sandbox_user",
]
