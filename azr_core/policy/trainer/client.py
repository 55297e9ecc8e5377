"""The orchestrator's side of the worker group: start it with the `deepspeed` launcher, send work, get results.

`PolicyWorkers` listens on a TCP port, launches `deepspeed ... --module azr_core.policy.trainer.workers`, and
waits for every rank to connect. Each command goes to all ranks (each with its share of the data) and the caller
waits for all replies, polling the launcher meanwhile: a rank that reports an error, closes its connection, or
outlives the timeout raises `WorkerError` naming the rank, and the whole group is stopped. Never a hang.
"""

from __future__ import annotations

import hmac
import os
import secrets
import selectors
import socket
import subprocess
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from azr_core.executor.config import ExecutorConfig
from azr_core.policy.config import ModelConfig, RolloutConfig, TrainerConfig
from azr_core.policy.rollout.base import PromptOutput, SamplingParams, Script
from azr_core.policy.trainer.build_locks import clear_stale_build_locks
from azr_core.policy.trainer.hosts import hostfile_nodes, launcher_commands
from azr_core.policy.trainer.process_group import stop_process_group
from azr_core.policy.trainer.protocol import ChannelClosed, FrameReader, recv_msg, send_msg
from azr_core.policy.trainer.records import SequenceRecord, shard_records, split_micro_batches, summarize

_RANK_VARS = {
    "RANK",
    "LOCAL_RANK",
    "WORLD_SIZE",
    "LOCAL_SIZE",
    "LOCAL_WORLD_SIZE",
    "MASTER_ADDR",
    "MASTER_PORT",
    "CROSS_RANK",
    "CROSS_SIZE",
}


class WorkerError(RuntimeError):
    """A worker failed: `rank` (None when the group failed as a whole), its host when the group spans several, and
    the error text it reported."""

    def __init__(self, rank: int | None, error: str, log_tail: str = "", host: str | None = None) -> None:
        self.rank, self.error, self.log_tail, self.host = rank, error, log_tail, host
        who = f"policy worker rank {rank}" if rank is not None else "policy worker group"
        who += f" on {host}" if host else ""
        msg = f"{who} failed: {error.strip()}"
        if log_tail:
            msg += f"\n--- worker log (last lines) ---\n{log_tail}"
        super().__init__(msg)


class PolicyWorkers:
    """A group of policy worker processes, alive until `close()`; use as a context manager."""

    def __init__(
        self,
        model: ModelConfig,
        rollout: RolloutConfig,
        trainer: TrainerConfig,
        *,
        log_path: Path | None = None,
        start_timeout_s: float = 900.0,
        listen_host: str | None = None,
        launcher_args: Sequence[str] = (),
        env: dict[str, str] | None = None,
        executor: ExecutorConfig | None = None,
    ) -> None:
        self.model_cfg, self.rollout_cfg, self.trainer_cfg = model, rollout, trainer
        self.start_timeout_s = start_timeout_s
        # several nodes: an address the other nodes can reach (trainer.listen_host unless given here)
        self.listen_host = listen_host or trainer.listen_host
        self.launcher_args = list(launcher_args)
        self.env = env
        self.executor_cfg = executor  # the sandbox's settings, for executor.placement=hosts (else unused)
        self.log_path = Path(log_path) if log_path else Path(tempfile.mkdtemp(prefix="azr-workers-")) / "workers.log"
        self.procs: list[subprocess.Popen] = []  # the launcher, or one per node (trainer.node_launch)
        self.socks: dict[int, socket.socket] = {}
        self.readers: dict[int, FrameReader] = {}
        self.info: list[dict[str, Any]] = []

    # ---- life cycle ----------------------------------------------------------------------------------------------

    @property
    def proc(self) -> subprocess.Popen | None:
        """The (first node's) launcher process."""
        return self.procs[0] if self.procs else None

    def launcher_commands(self, port: int, token_file: Path) -> list[list[str]]:
        """The `deepspeed` launcher command lines: one, or one per node (`azr_core.policy.trainer.hosts`)."""
        return launcher_commands(self.trainer_cfg, f"{self.listen_host}:{port}", token_file, self.launcher_args)

    def start(self) -> PolicyWorkers:
        """Launch the workers and wait until every rank has built its trainer (or failed)."""
        token = self._token = secrets.token_hex(16)
        server = socket.create_server((self.listen_host, 0))
        server.settimeout(1.0)
        port = server.getsockname()[1]
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        # Beside the log (the run folder: on several nodes, a shared one), readable by this user only, removed once
        # every rank has connected.
        token_file = self.log_path.parent / f".worker-token-{os.getpid()}-{port}"
        fd = os.open(token_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(token)
        self._log = open(self.log_path, "ab")
        self._clear_stale_locks()
        # Rank variables of this process (set for an in-process trainer) must not leak into the launcher's ranks.
        env = {k: v for k, v in os.environ.items() if k not in _RANK_VARS}
        env.update(self.env or {})
        try:
            for cmd in self.launcher_commands(port, token_file):
                self.procs.append(subprocess.Popen(
                    cmd,
                    stdout=self._log,
                    stderr=subprocess.STDOUT,
                    env=env,
                    start_new_session=True,  # its own process group: close() can stop every rank it spawned
                ))  # fmt: skip
            self._accept(server, token)
            init = {
                "model": self.model_cfg.model_dump(mode="json"),
                "rollout": self.rollout_cfg.model_dump(mode="json"),
                "trainer": self.trainer_cfg.model_dump(mode="json"),
                "executor": self.executor_cfg.model_dump(mode="json") if self.executor_cfg else None,
            }
            self.info = self._request_each("init", [init] * len(self.socks), self.start_timeout_s, raw_key="init")
        except BaseException:
            self.close(force=True)
            raise
        finally:
            server.close()
            token_file.unlink(missing_ok=True)
        return self

    def _accept(self, server: socket.socket, token: str) -> None:
        deadline = time.monotonic() + self.start_timeout_s
        expected: int | None = None
        self.refused_peers = 0
        next_lock_check = time.monotonic() + 15
        while expected is None or len(self.socks) < expected:
            self._check_launcher()
            if time.monotonic() > next_lock_check:  # a rank killed while loading its helper strands its siblings
                self._clear_stale_locks()
                next_lock_check = time.monotonic() + 15
            if time.monotonic() > deadline:
                raise WorkerError(
                    None,
                    f"only {len(self.socks)} of {expected or self._expected_world()} workers connected within "
                    f"{self.start_timeout_s:.0f}s: the worker log below says where start-up stopped (a rank waiting "
                    "on a lock or a compile, a crash); raise start_timeout_s only if it was still making progress",
                    self.log_tail(),
                )
            try:
                conn, _ = server.accept()
            except TimeoutError:
                continue
            hello = self._hello(conn, token)
            if hello is None:
                self.refused_peers += 1
                conn.close()  # not one of ours: no token, a wrong one, or not our protocol
                continue
            conn.settimeout(None)
            self.socks[int(hello["hello"])] = conn
            expected = expected or self._expected_world()
        self.readers = {r: FrameReader(s) for r, s in self.socks.items()}

    @staticmethod
    def _hello(conn: socket.socket, token: str) -> dict[str, Any] | None:
        """The peer's hello if it proves the token, else None. Bounded in time and size: a silent or hostile peer
        costs at most a few seconds and a few KiB, never the start of the group."""
        conn.settimeout(10)
        try:
            hello = recv_msg(conn, max_bytes=64 * 1024)
        except (OSError, ValueError):
            return None
        got = hello.get("token")
        if not isinstance(got, str) or not hmac.compare_digest(got.encode(), token.encode()):
            return None
        if not isinstance(hello.get("hello"), int):
            return None
        return hello

    def _clear_stale_locks(self) -> None:
        """Remove torch extension build locks left by killed processes (they would stall every start), saying so in
        the worker log."""
        for path in clear_stale_build_locks():
            self._log.write(f"[azr] removed a stale torch extension build lock {path} (owner killed)\n".encode())
            self._log.flush()

    def _expected_world(self) -> int:
        if self.trainer_cfg.hostfile is None:
            return self.trainer_cfg.num_workers
        return sum(slots for _, slots in hostfile_nodes(self.trainer_cfg.hostfile))

    def _check_launcher(self) -> None:
        for k, p in enumerate(self.procs):
            if p.poll() is None:
                continue
            msg = f"the deepspeed launcher exited with code {p.returncode}"
            if len(self.procs) > 1:
                host = hostfile_nodes(self.trainer_cfg.hostfile)[k][0]
                msg = (
                    f"the deepspeed launcher of node {k} ({host}) exited with code {p.returncode}: check that {host} "
                    "is up, that trainer.node_launch reaches it, and that it sees this venv and the run folder"
                )
            raise WorkerError(None, msg, self.log_tail())

    def log_tail(self, lines: int = 40) -> str:
        """The last lines the workers printed (stdout and stderr of all ranks)."""
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def close(self, *, force: bool = False, grace_s: float = 10.0) -> None:
        """Stop the workers: a polite shutdown command, then SIGTERM/SIGKILL to the launcher's process group."""
        if not force and self.socks and self.procs and all(p.poll() is None for p in self.procs):
            try:
                self._request_each("shutdown", [{}] * len(self.socks), grace_s)
            except (WorkerError, OSError):
                pass
        for s in self.socks.values():
            s.close()
        self.socks, self.readers = {}, {}
        for p in self.procs:
            stop_process_group(p, grace_s)
        self.procs = []
        if getattr(self, "_log", None) is not None:
            self._log.close()
            self._log = None

    def __enter__(self) -> PolicyWorkers:
        return self.start() if not self.procs else self

    def __exit__(self, *exc: object) -> None:
        self.close(force=exc[0] is not None)

    @property
    def world_size(self) -> int:
        """Number of ranks in the group."""
        return len(self.socks)

    # ---- commands ------------------------------------------------------------------------------------------------

    def _request_each(
        self, cmd: str, args: Sequence[dict[str, Any]], timeout_s: float, raw_key: str | None = None
    ) -> list[Any]:
        """Send rank r `args[r]`; wait for every reply or the first failure."""
        if not self.socks:
            raise WorkerError(None, "the worker group is not running (closed, or stopped after an error)")
        dead = [p for p in self.procs if p.poll() is not None]
        if dead:  # ranks alive, but nobody supervises them
            code = dead[0].returncode
            self.close(force=True)
            raise WorkerError(None, f"the deepspeed launcher exited with code {code} while its ranks ran on: the group "
                              "is stopped; a new session starts a new one and resumes from the last commit",
                              self.log_tail())  # fmt: skip
        for rank, sock in self.socks.items():
            send_msg(sock, {raw_key: args[rank]} if raw_key else {"cmd": cmd, "args": args[rank]})
        replies: dict[int, Any] = {}
        sel = selectors.DefaultSelector()
        for rank, sock in self.socks.items():
            sel.register(sock, selectors.EVENT_READ, rank)
        deadline = time.monotonic() + timeout_s
        try:
            while len(replies) < len(self.socks):
                left = deadline - time.monotonic()
                if left <= 0:
                    waiting = sorted(set(self.socks) - set(replies))
                    raise WorkerError(
                        waiting[0],
                        f"'{cmd}' timed out after {timeout_s:.0f}s (ranks {waiting})",
                        self.log_tail(),
                        self._host_of(waiting[0]),
                    )
                for key, _ in sel.select(timeout=min(left, 1.0)):
                    rank = key.data
                    try:
                        msgs = self.readers[rank].feed()
                    except (ChannelClosed, OSError) as err:
                        time.sleep(0.5)  # let the launcher log the dying rank's last words
                        raise WorkerError(
                            rank,
                            f"connection lost during '{cmd}' ({err}); the process died",
                            self.log_tail(),
                            self._host_of(rank),
                        ) from err
                    for msg in msgs:
                        if not msg.get("ok"):
                            who = int(msg.get("rank", rank))
                            raise WorkerError(who, msg.get("error", "unknown error"), host=self._host_of(who))
                        replies[rank] = msg.get("result")
                        sel.unregister(self.socks[rank])
                if len(replies) < len(self.socks):
                    self._check_launcher()
        except BaseException:
            self.close(force=True)  # a failed collective leaves the group in an unknown state
            raise
        finally:
            sel.close()
        return [replies[r] for r in sorted(replies)]

    def request_each(self, cmd: str, args: Sequence[dict[str, Any]], timeout_s: float) -> list[Any]:
        """Send rank r the command with `args[r]`; every rank's reply, in rank order (a failure stops the group and
        raises WorkerError, as every command does)."""
        return self._request_each(cmd, args, timeout_s)

    def _host_of(self, rank: int) -> str | None:
        """The hostfile host of a rank when the group spans several nodes (None on one node)."""
        if self.trainer_cfg.hostfile is None or not self.info:
            return None
        node = next((int(i.get("node", 0)) for i in self.info if i.get("rank") == rank), None)
        nodes = hostfile_nodes(self.trainer_cfg.hostfile)
        return nodes[node][0] if node is not None and node < len(nodes) and len(nodes) > 1 else None

    def ping(self) -> list[dict[str, Any]]:
        """Each rank's identity (rank, pid, host, device, ZeRO stage, backend, step)."""
        return self._request_each("ping", [{}] * self.world_size, 60)

    def generate(self, prompts: Sequence[str], params: SamplingParams) -> list[PromptOutput]:
        """Rollouts with the current weights; the prompts are split evenly over the ranks, order is kept."""
        return self._generate(prompts, params, None)

    def generate_scripted(
        self, prompts: Sequence[str], params: SamplingParams, scripts: Sequence[Script]
    ) -> list[PromptOutput]:
        """Scripted answers (RolloutBackend.generate_scripted), split over the ranks like `generate`."""
        if len(scripts) != len(prompts):
            raise ValueError(f"generate_scripted: {len(prompts)} prompts but {len(scripts)} scripts")
        return self._generate(prompts, params, scripts)

    def _generate(self, prompts, params: SamplingParams, scripts) -> list[PromptOutput]:
        w = self.world_size
        per = -(-len(prompts) // w) if prompts else 0
        idx = [list(range(r * per, min((r + 1) * per, len(prompts)))) for r in range(w)]
        real = [len(s) for s in idx]
        if self.info and self.info[0].get("zero_stage") == 3 and w > 1 and prompts:
            # ZeRO-3 generation is collective: every rank must run the same number of batches.
            idx = [s + [0] * (per - len(s)) for s in idx]
        wire = None if scripts is None else [sc.to_dict() for sc in scripts]
        payload = [{"prompts": [prompts[i] for i in s], "params": params.to_dict(),
                    "scripts": None if wire is None else [wire[i] for i in s]} for s in idx]  # fmt: skip
        results = self._request_each("generate", payload, self.trainer_cfg.worker_timeout_s)
        return [PromptOutput.from_dict(d) for r, res in enumerate(results) for d in res[: real[r]]]

    def train_step(self, records: Sequence[SequenceRecord], *, total_tokens: int | None = None) -> dict[str, float]:
        """One optimiser step on all `records` (any mix of groups); returns the step's metrics.

        `total_tokens`: the token count the loss is averaged over (default: the records'); larger when sequences
        that add nothing were left out (azr_core.policy.trainer.schedule). No records still takes the step."""
        shards = shard_records(records, self.world_size)
        mbs = self.trainer_cfg.micro_batch_size
        total = total_tokens if total_tokens is not None else sum(r.n_sampled for r in records)
        n_micro = max(len(split_micro_batches(s, mbs)) for s in shards) or 1  # as each rank splits its shard
        payload = [
            {"records": [r.to_dict() for r in s], "total_tokens": total, "num_micro_batches": n_micro} for s in shards
        ]
        return summarize(self._request_each("train_step", payload, self.trainer_cfg.worker_timeout_s))

    def compute_logprobs(self, records: Sequence[SequenceRecord]) -> list[list[float]]:
        """Current log-probs of each record's completion tokens (computed on rank 0's copy, every rank joins)."""
        payload = [{"records": [r.to_dict() for r in records] if k == 0 else []} for k in range(self.world_size)]
        if self.info and self.info[0].get("zero_stage") == 3:
            payload = [{"records": [r.to_dict() for r in records]}] * self.world_size  # forward is collective
        return self._request_each("logprobs", payload, self.trainer_cfg.worker_timeout_s)[0]

    def save_checkpoint(self, path: str | Path) -> Path:
        """Checkpoint every rank's state into `path` (one folder)."""
        res = self._request_each(
            "save_checkpoint", [{"path": str(path)}] * self.world_size, self.trainer_cfg.worker_timeout_s
        )
        return Path(res[0])

    def load_checkpoint(self, path: str | Path) -> int:
        """Resume every rank from `path`; returns the restored step."""
        res = self._request_each(
            "load_checkpoint", [{"path": str(path)}] * self.world_size, self.trainer_cfg.worker_timeout_s
        )
        return int(res[0])
