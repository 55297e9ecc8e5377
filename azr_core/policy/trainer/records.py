"""What crosses from the self-play loop to the trainer and its worker processes: plain data, no torch, so the loop and
the client need not import the DeepSpeed engine to build a batch."""

from __future__ import annotations

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
