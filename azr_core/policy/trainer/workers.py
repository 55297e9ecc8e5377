"""The worker process: one rank of the policy, started by the `deepspeed` launcher, alive across iterations.

It connects back to the orchestrator's command channel, receives its configuration, builds the DeepSpeed trainer
(and, on a GPU with vllm, a vLLM engine fed from it), then serves commands until told to stop. Any exception is
sent back with its traceback and rank before the process exits: after a failed collective the group's state is
unknown, so the orchestrator restarts the group rather than reuse it.

Run by the launcher as:
    deepspeed [launcher options] --module azr_core.policy.trainer.workers --connect HOST:PORT --token-file PATH

The channel's token comes from a 0600 file (or $AZR_WORKER_TOKEN), never the command line, which any user can read.
"""

from __future__ import annotations

import argparse
import os
import socket
import sys
import time
import traceback
from dataclasses import asdict
from typing import Any


def _connect(address: str, timeout_s: float) -> socket.socket:
    host, port = address.rsplit(":", 1)
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            return socket.create_connection((host, int(port)), timeout=30)
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)


def _share_cpu_threads() -> None:
    # CPU ranks on one node would each start one thread per core and fight over them: split the cores instead.
    import torch

    local = int(os.environ.get("LOCAL_SIZE", os.environ.get("LOCAL_WORLD_SIZE", "1")))
    if not torch.cuda.is_available() and local > 1 and "OMP_NUM_THREADS" not in os.environ:
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // local))


class Worker:
    """Holds the trainer and the rollout backend of one rank, and executes commands on them."""

    def __init__(self, init: dict[str, Any]) -> None:
        from azr_core.policy.config import ModelConfig, RolloutConfig, TrainerConfig
        from azr_core.policy.rollout import resolve_backend_name
        from azr_core.policy.trainer.build_locks import clear_stale_build_locks
        from azr_core.policy.trainer.engine import PolicyTrainer

        self.executor_cfg = init.get("executor")  # this host's sandbox, when the run places it on the hosts
        self._sandbox = None
        self.model_cfg = ModelConfig.model_validate(init["model"])
        self.rollout_cfg = RolloutConfig.model_validate(init["rollout"])
        self.trainer_cfg = TrainerConfig.model_validate(init["trainer"])
        # On every node: a build lock left by a rank killed mid-start would make DeepSpeed's init wait forever.
        for path in clear_stale_build_locks():
            self._progress(f"removed a stale torch extension build lock {path} (its owner was killed)")
        _share_cpu_threads()
        self.trainer = PolicyTrainer(self.model_cfg, self.trainer_cfg, progress=self._progress)
        self.backend_name = resolve_backend_name(self.rollout_cfg)
        self.backend = self._make_backend()

    def _progress(self, msg: str) -> None:
        print(f"[rank {os.environ.get('RANK', '?')}] {msg}", flush=True)

    def _make_backend(self):
        if self.backend_name == "vllm":
            from azr_core.policy.model import resolve_dtype, resolve_model_path
            from azr_core.policy.rollout.vllm import VLLMBackend

            path = resolve_model_path(self.model_cfg, progress=self._progress)
            dtype = str(resolve_dtype(self.model_cfg.dtype, self.trainer.device)).removeprefix("torch.")
            # external_launcher: the engine lives in this rank's process and reuses the launcher's torch.distributed
            # world (vLLM's documented way to colocate with torchrun-style training); each rank samples its shard.
            backend = VLLMBackend(
                path,
                self.rollout_cfg,
                dtype=dtype,
                seed=self.trainer_cfg.seed + self.trainer.rank,
                distributed_executor_backend="external_launcher",
            )
            backend.sync_weights(self.trainer.named_weights())  # serve exactly the trainer's weights from step 0
            return backend
        synced = self.trainer.zero_stage == 3 and self.trainer.world_size > 1
        if self.backend_name == "hf-batching" and not synced:
            from azr_core.policy.rollout.batching import BatchingBackend

            # The trainer's own module, as for hf: no copy, no sync.
            return BatchingBackend(
                self.trainer.module,
                self.trainer.tokenizer,
                batch_size=self.rollout_cfg.batch_size,
                shares_trainer_weights=True,
            )
        from azr_core.policy.rollout.hf import HFBackend

        if self.backend_name == "hf-batching":  # ZeRO-3 shards the weights: only the collective `generate` serves
            self._progress("rollout backend hf-batching cannot run on ZeRO-3 sharded weights: using hf (generate)")
            self.backend_name = "hf"
        # The trainer's own module: generation always reads the latest weights, no copy, no sync.
        return HFBackend(
            self.trainer.module,
            self.trainer.tokenizer,
            batch_size=self.rollout_cfg.batch_size,
            shares_trainer_weights=True,
            synced_gpus=synced,
            engine=self.rollout_cfg.hf_engine,
        )

    def info(self) -> dict[str, Any]:
        """Who this rank is: the orchestrator logs it and tests use the pid."""
        return {
            "rank": self.trainer.rank,
            "world_size": self.trainer.world_size,
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "node": int(os.environ.get("CROSS_RANK", "0")),  # the node rank under the launcher (0: one node)
            "device": str(self.trainer.device),
            "zero_stage": self.trainer.zero_stage,
            "backend": self.backend_name,
            "step": self.trainer.step,
        }

    def sandbox(self):
        """This host's executor pool, started on first use (only the rank that serves its host's share starts one)."""
        if self._sandbox is None:
            from azr_core.executor import Executor, ExecutorConfig

            self._sandbox = Executor(ExecutorConfig.model_validate(self.executor_cfg or {})).start()
        return self._sandbox

    def close(self) -> None:
        if self._sandbox is not None:
            self._sandbox.close()
            self._sandbox = None

    def _sandbox_reply(self, results: list) -> dict[str, Any]:
        ex = self._sandbox
        stats = dict(ex.stats) if ex else {}
        return {"results": [asdict(r) for r in results], "stats": stats, "restarts": ex.worker_restarts if ex else 0}

    def handle(self, cmd: str, args: dict[str, Any]) -> Any:
        """Execute one command; the result is plain data."""
        if cmd == "validate_many":
            items = [(p, i) for p, i in args["items"]]
            return self._sandbox_reply(self.sandbox().validate_many(items) if items else [])
        if cmd == "grade_many":
            from azr_core.executor.executor import GradeRequest

            reqs = [GradeRequest(**{**r, "tests": [tuple(t) for t in r.get("tests") or []]}) for r in args["requests"]]
            return self._sandbox_reply(self.sandbox().grade_many(reqs) if reqs else [])
        from azr_core.policy.rollout.base import SamplingParams, Script
        from azr_core.policy.trainer.records import SequenceRecord

        if cmd == "ping":
            return self.info()
        if cmd == "generate":
            p = args["params"]
            seed = None if p["seed"] is None else p["seed"] + 1_000_003 * self.trainer.rank  # distinct per rank
            params = SamplingParams(**{**p, "stop": tuple(p["stop"]), "seed": seed})
            if args.get("scripts") is not None:
                scripts = [Script.from_dict(sc) for sc in args["scripts"]]
                return [o.to_dict() for o in self.backend.generate_scripted(args["prompts"], params, scripts)]
            return [o.to_dict() for o in self.backend.generate(args["prompts"], params)]
        if cmd == "train_step":
            records = [SequenceRecord.from_dict(r) for r in args["records"]]
            sums = self.trainer.train_step(
                records, total_tokens=args["total_tokens"], num_micro_batches=args["num_micro_batches"]
            )
            self.backend.sync_weights(self.trainer.named_weights())
            return sums
        if cmd == "logprobs":
            return self.trainer.compute_logprobs([SequenceRecord.from_dict(r) for r in args["records"]])
        if cmd == "save_checkpoint":
            return str(self.trainer.save_checkpoint(args["path"]))
        if cmd == "load_checkpoint":
            self.trainer.load_checkpoint(args["path"])
            self.backend.sync_weights(self.trainer.named_weights())
            return self.trainer.step
        raise ValueError(f"unknown command {cmd!r}")


def serve(address: str, token: str, connect_timeout_s: float = 600.0) -> int:
    """Connect, build the worker, serve commands; returns the process exit code."""
    from azr_core.policy.trainer.protocol import ChannelClosed, recv_msg, send_msg

    rank = int(os.environ.get("RANK", "0"))
    sock = _connect(address, connect_timeout_s)
    sock.settimeout(None)
    send_msg(sock, {"hello": rank, "token": token, "pid": os.getpid(), "host": socket.gethostname()})
    try:
        worker = Worker(recv_msg(sock)["init"])
        send_msg(sock, {"ok": True, "result": worker.info()})
    except Exception:
        send_msg(sock, {"ok": False, "rank": rank, "error": traceback.format_exc()})
        return 1
    while True:
        try:
            msg = recv_msg(sock)
        except ChannelClosed:
            worker.close()
            return 0  # the orchestrator went away: nothing left to serve
        if msg.get("cmd") == "shutdown":
            worker.close()
            send_msg(sock, {"ok": True, "result": None})
            return 0
        try:
            result = worker.handle(msg["cmd"], msg.get("args", {}))
        except Exception:
            send_msg(sock, {"ok": False, "rank": rank, "error": traceback.format_exc()})
            worker.close()
            return 1
        send_msg(sock, {"ok": True, "result": result})


def main(argv: list[str] | None = None) -> None:
    """Entry point under the launcher (which appends --local_rank)."""
    parser = argparse.ArgumentParser(description="AZR policy worker (one rank)")
    parser.add_argument("--connect", required=True, help="HOST:PORT of the orchestrator's command channel")
    parser.add_argument("--token-file", default=None, help="file holding the secret that proves the worker")
    parser.add_argument("--local_rank", type=int, default=None, help="set by the deepspeed launcher")
    args, _unknown = parser.parse_known_args(argv)
    token = os.environ.get("AZR_WORKER_TOKEN", "")
    if args.token_file:
        with open(args.token_file, encoding="utf-8") as fh:
            token = fh.read().strip()
    code = serve(args.connect, token)
    sys.stdout.flush()
    # Skip interpreter teardown: torch.distributed / DeepSpeed atexit hooks can block on a peer that already left.
    os._exit(code)


if __name__ == "__main__":
    main()
