"""The one policy object's interface, as the self-play loop sees it (`PolicyWorkers` implements it; tests script it).

`Trainable` is the part the update schedule needs; `Policy` adds generation and checkpoints for the stages.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

from azr_core.policy.rollout.base import PromptOutput, SamplingParams, Script
from azr_core.policy.trainer.records import SequenceRecord


class Trainable(Protocol):
    """What the update schedule needs from the policy."""

    def train_step(self, records: Sequence[SequenceRecord], *, total_tokens: int | None = None) -> dict[str, float]: ...
    def compute_logprobs(self, records: Sequence[SequenceRecord]) -> list[list[float]]: ...


class Policy(Trainable, Protocol):
    """What the stages need from the model side."""

    def generate(self, prompts: list[str], params: SamplingParams) -> list[PromptOutput]: ...
    def generate_scripted(
        self, prompts: list[str], params: SamplingParams, scripts: list[Script]
    ) -> list[PromptOutput]: ...
    def save_checkpoint(self, path: str | Path) -> Path: ...
    def load_checkpoint(self, path: str | Path) -> int: ...
    def close(self) -> None: ...
