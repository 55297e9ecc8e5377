"""Settings of the sandboxed executor, with their defaults visible in one place."""

from __future__ import annotations

import os
from typing import Literal

from pydantic import Field

from azr_core.common.config_base import Section


class ExecutorConfig(Section):
    """How model-written programs are checked and run. Every limit applies to each single execution."""

    sandbox: Literal["firejail", "none"] = Field(
        "firejail",
        description="'firejail' runs programs in firejail workers. 'none' runs them in plain worker processes with "
        "only rlimits and static checks: UNSAFE, for machines without firejail; a warning is printed on every run.",
    )
    workers: int = Field(
        0,
        ge=0,
        description="Sandboxed worker processes (each forks one child per execution). 0 = auto: 16 per CPU core, "
        "at most 64, so that programs that run into the time limit (each holds its worker until then) overlap "
        "instead of stalling the batch. An idle worker costs memory (~10 MB), no CPU.",
    )
    placement: Literal["driver", "hosts"] = Field(
        "driver",
        description="Where programs run. 'driver': one pool beside the driver. 'hosts': one pool on each host of the "
        "policy's worker group (its first rank there), and each validation or grading batch is split among them in "
        "order, for runs over several hosts (trainer.hostfile); results are the same as one pool's.",
    )
    timeout_s: float = Field(
        10.0, gt=0, description="Wall-clock time limit of one execution, enforced by the parent (the reference: 10 s)."
    )
    inputs: Literal["expression", "literal"] = Field(
        "expression",
        description="How a task input (the text of a call's arguments, `f(<input>)`) is read, for proposals, "
        "abduction answers and induction pairs. 'expression' (the reference): any expression that passes the static "
        "checks (`range(3)`, `'a-b'.split('-')`), evaluated inside the sandbox in the program's namespace, never in "
        "the trusted process. 'literal': Python literals and a few listed operations on them, built in the trusted "
        "process. Outputs are literals either way.",
    )
    deprioritize_after_s: float = Field(
        0.05,
        ge=0,
        description="A child still running after this long is reniced to 19, so long runners (usually infinite "
        "loops) cannot starve short programs. 0 disables it.",
    )
    memory_mb: int = Field(512, gt=16, description="Address-space limit (RLIMIT_AS) of a child, MiB.")
    max_processes: int = Field(
        0,
        ge=0,
        description="RLIMIT_NPROC of a child; 0 = auto: 16 per worker + 256. It counts every process of the sandbox "
        "user on the machine: 3 per worker of every executor running (firejail's two and the worker), plus what "
        "children start, so it must leave room for the executors that run at once (self-play's, and an evaluation's "
        "two: at 256, two evaluations' 32-worker graders made every HumanEval+ program fail to fork). It binds only "
        "for an unprivileged user, which is why the sandbox runs as `sandbox_user`; fork bombs stop at it.",
    )
    max_file_bytes: int = Field(1 << 20, ge=0, description="Largest file a child may write (RLIMIT_FSIZE), bytes.")
    max_open_files: int = Field(64, gt=8, description="Open-file limit (RLIMIT_NOFILE) of a child.")
    max_program_chars: int = Field(10_000, gt=0, description="Longest accepted program, characters.")
    max_input_chars: int = Field(2_000, gt=0, description="Longest accepted input (call arguments), characters.")
    max_output_chars: int = Field(5_000, gt=0, description="Longest accepted output (repr of the return value).")
    max_ast_nodes: int = Field(5_000, gt=0, description="Largest accepted program, in AST nodes.")
    determinism_runs: int = Field(
        2,
        ge=1,
        description="Executions per validated task, each in a different worker (different hash seed, memory "
        "layout and process); all must return equal values.",
    )
    static_checks: bool = Field(
        True, description="Refuse banned modules and names before running. Turn off only to test the sandbox itself."
    )
    sandbox_user: str = Field(
        "azr-sandbox",
        description="Unprivileged user the sandbox runs as when the executor runs as root (process limits do not "
        "bind root). Created by infra/setup.sh (`azr sandbox-setup`).",
    )
    hash_seed: int | None = Field(
        None,
        ge=0,
        description="PYTHONHASHSEED of every worker. None: a different random seed per worker (self-play's "
        "determinism check relies on it). A fixed value makes set and dict-of-str orders agree between workers, "
        "which benchmark grading needs (an expected output computed in one worker, compared with another's).",
    )
    python: str = Field(
        "/usr/bin/python3",
        description="Interpreter inside the sandbox: the system python, since firejail's private home hides venvs "
        "under /root. The runner needs only its standard library.",
    )
    firejail: str = Field("firejail", description="The firejail executable.")
    hidden_paths: list[str] = Field(
        default_factory=lambda: ["/work", "/root", "/home", "/opt", "/srv", "/mnt", "/media", "/var", "/boot"],
        description="Paths made inaccessible inside the sandbox (firejail --blacklist), on top of its private home, "
        "/tmp and /dev. The executor's working directory is added.",
    )

    def resolved_max_processes(self) -> int:
        """The sandbox user's process limit after applying the `0 = auto` rule."""
        return self.max_processes or 16 * self.resolved_workers() + 256

    def resolved_workers(self) -> int:
        """The worker count after applying the `0 = auto` rule."""
        if self.workers:
            return self.workers
        return max(2, min(64, 16 * (os.cpu_count() or 1)))
