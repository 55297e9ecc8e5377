"""What crosses from the self-play loop to the trainer and its worker processes: plain data, no torch, so the loop and
the client need not import the DeepSpeed engine to build a batch, split it as each rank will, or merge the ranks'
metrics."""

from __future__ import annotations

import itertools
import socket
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any


@dataclass
class SequenceRecord:
    """One sampled sequence to learn from: what the rollout produced plus its TRR++ advantage."""

    prompt_token_ids: list[int]
    completion_token_ids: list[int]
    old_logprobs: list[float]
    advantage: float
    group: str = ""
    # Which completion tokens the model sampled (None: all). The others are context written for it (the blocks an
    # answer skeleton opens): they condition the sampled tokens but take no loss, and their old log-probs are unused.
    sampled: list[bool] | None = None

    @property
    def n_sampled(self) -> int:
        """Completion tokens that take the loss (and count in the token mean)."""
        return len(self.completion_token_ids) if self.sampled is None else sum(self.sampled)

    def to_dict(self) -> dict[str, Any]:
        """Plain data, for the worker protocol."""
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> SequenceRecord:
        """Inverse of `to_dict`."""
        return cls(**d)


def split_micro_batches(records: Sequence[SequenceRecord], size: int) -> list[list[SequenceRecord]]:
    """Micro-batches of at most `size` records, each within one run of consecutive records of one group."""
    chunks: list[list[SequenceRecord]] = []
    for _, run in itertools.groupby(records, key=lambda r: r.group):
        same = list(run)
        chunks += [same[i : i + size] for i in range(0, len(same), size)]
    return chunks


def summarize(rank_sums: Sequence[dict[str, float]]) -> dict[str, float]:
    """Merge the per-rank sums of one step into the step's metrics (means per token or per sequence)."""
    total: dict[str, float] = {}
    for sums in rank_sums:
        for k, v in sums.items():
            if k in ("grad_norm", "lr", "step"):
                total[k] = v  # the same on every rank
            else:
                total[k] = total.get(k, 0.0) + v
    tokens = max(total.get("tokens", 0.0), 1.0)
    out = {k: total[k] for k in ("loss", "tokens", "sequences", "grad_norm", "lr", "step", "skipped") if k in total}
    if "skipped" in out:
        out["skipped"] = 1.0  # every rank skipped the same step
    for key, name in (
        ("pg_loss_sum", "pg_loss"),
        ("ratio_sum", "ratio_mean"),
        ("logprob_gap_sum", "logprob_gap"),
        ("clipped_sum", "clip_frac"),
        ("entropy_sum", "entropy"),
        ("kl_sum", "kl"),
    ):
        if key in total:
            out[name] = total[key] / tokens
    for k, v in total.items():
        if k.startswith("group/") and k.endswith("/sequences"):
            g = k[len("group/") : -len("/sequences")]
            out[f"group/{g}/sequences"] = v
            out[f"group/{g}/tokens"] = total[f"group/{g}/tokens"]
            out[f"group/{g}/advantage_mean"] = total[f"group/{g}/advantage_sum"] / max(v, 1.0)
            out[f"group/{g}/clip_frac"] = total[f"group/{g}/clipped_sum"] / max(total[f"group/{g}/tokens"], 1.0)
    return out


def free_port() -> int:
    """A TCP port free on loopback now (for the ranks' rendezvous)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def shard_records(records: Sequence[SequenceRecord], world: int) -> list[list[SequenceRecord]]:
    """Balance sequences over ranks by token count (longest first, each to the lightest rank)."""
    shards: list[list[SequenceRecord]] = [[] for _ in range(world)]
    load = [0] * world
    for r in sorted(records, key=lambda r: -(len(r.prompt_token_ids) + len(r.completion_token_ids))):
        k = load.index(min(load))
        shards[k].append(r)
        load[k] += len(r.prompt_token_ids) + len(r.completion_token_ids)
    return shards
