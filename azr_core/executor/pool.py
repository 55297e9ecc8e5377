"""A pool of long-lived sandbox workers, driven from one thread with a selector.

Jobs go to whichever worker is free (a job may ask to avoid one worker: the second run of a determinism check must
see another hash seed and another process). A worker that dies or stops answering is killed with its whole process
group, replaced, and its job reported as crashed; the rest of the batch goes on.
"""

from __future__ import annotations

import json
import os
import random
import selectors
import signal
import subprocess
import tempfile
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from azr_core.executor.checks import BANNED_MODULES
from azr_core.executor.config import ExecutorConfig
from azr_core.executor.sandbox import RUNNER_SOURCE, LaunchSpec, SandboxUnavailable, launch_spec

START_TIMEOUT_S = 20.0  # firejail + python start in well under a second; a loaded machine gets slack
HOST_GRACE_S = 5.0  # the worker enforces each time limit; the host steps in only if the worker itself hangs


@dataclass
class Job:
    """One execution: call `f` of `program` with the arguments in `call` (repr of `(args, kwargs)`), or, when `args`
    is given, with the arguments that text of a call's argument list evaluates to inside the sandbox (an input written
    as an expression, already through the static checks)."""

    key: Any
    program: str
    call: str
    avoid_worker: int | None = None
    seed: int = field(default_factory=lambda: random.randrange(1 << 30))
    args: str | None = None


@dataclass
class RunResult:
    """What one execution returned. status: ok | error | timeout | crashed | not_literal | too_large | no_f."""

    status: str
    output: str | None
    detail: str | None
    worker: int
    wall: float = 0.0
    cpu: float = 0.0


def _start_failure(code: int | None, stderr: str) -> str:
    """Why a worker did not come up, and the fix where we know it."""
    how = "did not start in time" if code is None else f"exited at start (code {code})"
    msg = f"the sandbox worker {how}: {stderr or 'no output'}"
    if "not allowed to use Firejail" in stderr:
        msg += (
            "\n  This user is not listed in /etc/firejail/firejail.users. Fix: `sudo $(which azr) sandbox-setup` "
            "(lists the user who runs it through sudo), or add the user name to that file."
        )
    return msg


class _Worker:
    def __init__(self, index: int, spec: LaunchSpec, init: dict[str, Any], expect_sandbox: bool) -> None:
        self.index = index
        self.stderr = tempfile.TemporaryFile()
        self.proc = subprocess.Popen(
            spec.argv,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self.stderr,
            env=spec.env,
            cwd="/",
            user=spec.user,
            group=spec.group,
            extra_groups=[] if spec.user else None,
            start_new_session=True,  # one process group to kill, whatever the worker left behind
            bufsize=0,
        )
        self.buf = b""
        self.job: Job | None = None
        self.deadline = 0.0
        self.expect_sandbox = expect_sandbox
        try:
            self._send(str(len(RUNNER_SOURCE.encode())).encode() + b"\n" + RUNNER_SOURCE.encode())
            self._send(json.dumps({"init": init}).encode() + b"\n")
        except BrokenPipeError:  # the launcher exited at once (firejail refusing this user does)
            err = self._start_error(wait_s=5)
            self.kill()
            raise err from None

    def _start_error(self, wait_s: float) -> SandboxUnavailable:
        """The worker did not come up: a moment to learn its exit code (it is exiting, or it hangs), then why."""
        try:
            code = self.proc.wait(timeout=wait_s)
        except subprocess.TimeoutExpired:
            code = None
        return SandboxUnavailable(_start_failure(code, self.stderr_tail()))

    def _send(self, data: bytes) -> None:
        self.proc.stdin.write(data)

    def wait_ready(self, timeout: float) -> None:
        hello = self.read_line(timeout)
        if hello is None:
            raise self._start_error(wait_s=2)
        info = json.loads(hello)
        if self.expect_sandbox and info.get("pid1") != "firejail":
            # firejail silently runs programs unsandboxed for a user not listed in firejail.users.
            raise SandboxUnavailable(
                "firejail started the worker outside a sandbox (is the sandbox user missing from "
                "/etc/firejail/firejail.users?). Run `azr sandbox-setup` as root."
            )

    def read_line(self, timeout: float) -> bytes | None:
        end = time.monotonic() + timeout
        fd = self.proc.stdout.fileno()
        sel = selectors.DefaultSelector()
        sel.register(fd, selectors.EVENT_READ)
        try:
            while b"\n" not in self.buf:
                left = end - time.monotonic()
                if left <= 0 or not sel.select(left):
                    return None
                data = os.read(fd, 65536)
                if not data:
                    return None
                self.buf += data
        finally:
            sel.close()
        line, _, self.buf = self.buf.partition(b"\n")
        return line

    def submit(self, job: Job, timeout: float) -> None:
        self.job = job
        self.deadline = time.monotonic() + timeout + HOST_GRACE_S
        req = {"id": 0, "program": job.program, "call": job.call, "timeout": timeout, "seed": job.seed}
        if job.args is not None:
            req["args"] = job.args
        self._send(json.dumps(req).encode() + b"\n")

    def stderr_tail(self, limit: int = 600) -> str:
        try:
            self.stderr.seek(0)
            return self.stderr.read().decode(errors="replace")[-limit:].strip()
        except (OSError, ValueError):
            return ""

    def kill(self) -> None:
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except OSError:
            pass
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            pass
        for stream in (self.proc.stdin, self.proc.stdout, self.stderr):
            try:
                stream.close()
            except OSError:
                pass


class WorkerPool:
    """Runs Jobs on `cfg.resolved_workers()` sandbox workers; results come back from `poll()` as they finish."""

    def __init__(self, cfg: ExecutorConfig) -> None:
        self.cfg = cfg
        self.size = max(2, cfg.resolved_workers())  # two at least: a determinism check needs a second worker
        self._seeds = random.Random()
        self._workers: list[_Worker | None] = [None] * self.size
        self._pending: deque[Job] = deque()
        self._sel = selectors.DefaultSelector()
        self._done: list[tuple[Job, RunResult]] = []
        self.restarts = 0
        self._init = {
            "max_output_chars": cfg.max_output_chars,
            "cpu_limit_s": int(cfg.timeout_s) + 1,
            "memory_mb": cfg.memory_mb,
            "max_file_bytes": cfg.max_file_bytes,
            "max_open_files": cfg.max_open_files,
            "max_processes": cfg.resolved_max_processes(),
            "banned_modules": sorted(BANNED_MODULES),
            "guard_builtins": cfg.static_checks,
            "deprioritize_after_s": cfg.deprioritize_after_s,
            "undumpable": True,
        }
        workers: list[_Worker] = []
        try:  # a worker that fails to start takes the ones started before it down with it
            for i in range(self.size):
                workers.append(self._spawn(i))
            for w in workers:
                w.wait_ready(START_TIMEOUT_S)
        except BaseException:
            for w in workers:
                w.kill()
            raise
        for w in workers:
            self._install(w)

    # -- public ---------------------------------------------------------------------------------------------------
    def submit(self, job: Job) -> None:
        self._pending.append(job)
        self._dispatch()

    def in_flight(self) -> int:
        return len(self._pending) + sum(1 for w in self._workers if w is not None and w.job is not None)

    def poll(self) -> list[tuple[Job, RunResult]]:
        """Block until at least one job finishes (or none is left); return the finished ones."""
        while not self._done and self.in_flight():
            self._dispatch()
            now = time.monotonic()
            busy = [w for w in self._workers if w is not None and w.job is not None]
            wait = max(0.0, min((w.deadline for w in busy), default=now + 1.0) - now)
            for key, _ in self._sel.select(min(wait, 1.0)):
                self._on_readable(key.data)
            now = time.monotonic()
            for w in busy:  # (a worker replaced above, while reading, is no longer in self._workers)
                if self._workers[w.index] is w and w.job is not None and now > w.deadline:
                    self._replace(w, "crashed", "sandbox worker stopped answering; it was killed and replaced")
        done, self._done = self._done, []
        return done

    def close(self) -> None:
        for i, w in enumerate(self._workers):
            if w is not None:
                self._sel.unregister(w.proc.stdout)
                w.kill()
                self._workers[i] = None
        self._sel.close()

    # -- internals ------------------------------------------------------------------------------------------------
    def _spawn(self, index: int) -> _Worker:
        seed = self.cfg.hash_seed if self.cfg.hash_seed is not None else self._seeds.randrange(1, 1 << 31)
        spec = launch_spec(self.cfg, hash_seed=seed)
        init = dict(self._init, own_pid_namespace=spec.own_pid_namespace, limit_processes=spec.limit_processes)
        return _Worker(index, spec, init, expect_sandbox=self.cfg.sandbox == "firejail")

    def _install(self, w: _Worker) -> None:
        self._workers[w.index] = w
        self._sel.register(w.proc.stdout, selectors.EVENT_READ, w)

    def _dispatch(self) -> None:
        for w in self._workers:
            if not self._pending:
                return
            if w is None or w.job is not None:
                continue
            job = self._take_for(w.index)
            if job is not None:
                w.submit(job, self.cfg.timeout_s)

    def _take_for(self, index: int) -> Job | None:
        for i, job in enumerate(self._pending):
            if job.avoid_worker != index:
                del self._pending[i]
                return job
            if i > 64:  # a long run of jobs that must avoid this worker: leave them for others
                return None
        return None

    def _on_readable(self, w: _Worker) -> None:
        try:
            data = os.read(w.proc.stdout.fileno(), 1 << 16)
        except OSError:
            data = b""
        if not data:
            self._replace(w, "crashed", "sandbox worker died while running this program")
            return
        w.buf += data
        while b"\n" in w.buf and w.job is not None:
            line, _, w.buf = w.buf.partition(b"\n")
            try:
                res = json.loads(line)
                result = RunResult(
                    status=str(res["status"]),
                    output=res.get("output"),
                    detail=res.get("detail"),
                    worker=w.index,
                    wall=float(res.get("wall", 0.0)),
                    cpu=float(res.get("cpu", 0.0)),
                )
            except (ValueError, KeyError, TypeError):
                self._replace(w, "crashed", "sandbox worker sent a malformed reply")
                return
            self._done.append((w.job, result))
            w.job = None

    def _replace(self, w: _Worker, status: str, detail: str) -> None:
        if self._workers[w.index] is not w:  # replaced already: its job was reported then
            return
        job, w.job = w.job, None
        tail = w.stderr_tail(200)
        self._sel.unregister(w.proc.stdout)
        w.kill()
        self._workers[w.index] = None
        if job is not None:
            self._done.append((job, RunResult(status, None, detail + (f" ({tail})" if tail else ""), w.index)))
        self.restarts += 1
        fresh = self._spawn(w.index)
        try:
            fresh.wait_ready(START_TIMEOUT_S)
        except BaseException:
            fresh.kill()
            raise
        self._install(fresh)
