"""The sandbox on every host of a worker group (executor.placement=hosts): the first rank of each node runs an
executor pool there, and each validation or grading batch is split among the nodes in order, over the group's
authenticated channel. `HostSandboxes` gives the loop the executor's interface."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict
from typing import Any

from azr_core.executor.executor import GradeRequest, GradeResult, ValidationResult
from azr_core.policy.trainer.client import PolicyWorkers


class HostSandboxes:
    """The executor interface the loop uses (`validate_many`, `grade_many`, `stats`, `worker_restarts`, `close`) over
    the sandbox of every host of a worker group. The group owns the pools: they stop with it."""

    def __init__(self, workers: PolicyWorkers) -> None:
        self.workers = workers
        self.per_host: dict[int, tuple[dict[str, float], int]] = {}  # serving rank -> its pool's stats, restarts

    def sandbox_ranks(self) -> list[int]:
        """The rank that runs each host's sandbox: the first rank of every node, in node order."""
        first: dict[int, int] = {}
        for info in sorted(self.workers.info, key=lambda i: i["rank"]):
            first.setdefault(int(info.get("node", 0)), int(info["rank"]))
        return [first[n] for n in sorted(first)]

    def validate_many(self, items: Sequence[tuple[str, str]]) -> list[ValidationResult]:
        """`Executor.validate_many` over every host's sandbox: the batch split in order, the results rejoined."""
        return [ValidationResult(**r) for r in self._on_hosts("validate_many", "items", [list(x) for x in items])]

    def grade_many(self, requests: Sequence[GradeRequest]) -> list[GradeResult]:
        """`Executor.grade_many` over every host's sandbox: the batch split in order, the results rejoined."""
        return [GradeResult(**r) for r in self._on_hosts("grade_many", "requests", [asdict(r) for r in requests])]

    def _on_hosts(self, cmd: str, key: str, payload: list) -> list[dict[str, Any]]:
        hosts = self.sandbox_ranks()
        size, extra = divmod(len(payload), len(hosts))
        chunks, at = {}, 0
        for k, rank in enumerate(hosts):  # contiguous shares, so that the results come back in order
            n = size + (k < extra)
            chunks[rank], at = payload[at : at + n], at + n
        args = [{key: chunks.get(rank, [])} for rank in range(self.workers.world_size)]
        replies = self.workers.request_each(cmd, args, self.workers.trainer_cfg.worker_timeout_s)
        rows: list[dict[str, Any]] = []
        for rank in hosts:
            rows += replies[rank]["results"]
            if replies[rank]["stats"]:
                self.per_host[rank] = (replies[rank]["stats"], replies[rank]["restarts"])
        return rows

    @property
    def stats(self) -> dict[str, float]:
        """Executions, timeouts, crashes and seconds, summed over the hosts."""
        out = {"executions": 0, "timeouts": 0, "crashes": 0, "exec_wall_s": 0.0}
        for stats, _ in self.per_host.values():
            for k in out:
                out[k] += stats.get(k, 0)
        return out

    @property
    def worker_restarts(self) -> int:
        return sum(restarts for _, restarts in self.per_host.values())

    def close(self) -> None:
        pass  # the pools stop with their ranks (PolicyWorkers.close)
