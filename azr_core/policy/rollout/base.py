"""The rollout backend interface: batched sampling of n completions per prompt.

Every backend returns the same plain records, so the stages after generation never know which backend ran. The
log-probs are those of the sampled tokens under the model's unmodified distribution (temperature 1, no top-p), the
quantity the trainer recomputes for the policy-gradient ratio; vLLM's default `raw_logprobs` mode is the same.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from azr_core.policy.config import RolloutConfig

if TYPE_CHECKING:
    import torch  # typing only: the wire types here cross to the workers and the loop without torch

FinishReason = Literal["stop", "length"]


@dataclass(frozen=True)
class SamplingParams:
    """How to sample one batch; `from_config` takes the defaults of a RolloutConfig."""

    n: int = 1
    temperature: float = 1.0
    top_p: float = 1.0
    max_new_tokens: int = 512
    stop: tuple[str, ...] = ()
    seed: int | None = None
    #: The first token may not end or blank the completion: no end of sequence, no whitespace-only token, no token
    #: opening a code fence. A skeleton block must get content (a small model otherwise closes it at once).
    nonempty: bool = False

    @classmethod
    def from_config(cls, cfg: RolloutConfig, **overrides: Any) -> SamplingParams:
        """Sampling parameters from a RolloutConfig, with keyword overrides."""
        base = dict(
            n=cfg.n,
            temperature=cfg.temperature,
            top_p=cfg.top_p,
            max_new_tokens=cfg.max_new_tokens,
            stop=tuple(cfg.stop),
            seed=cfg.seed,
        )
        base.update(overrides)
        base["stop"] = tuple(base["stop"])
        return cls(**base)

    def to_dict(self) -> dict[str, Any]:
        """Plain data, for the worker protocol."""
        d = asdict(self)
        d["stop"] = list(self.stop)
        return d


@dataclass
class Completion:
    """One sampled completion: its text, token ids (eos included when emitted) and their log-probs.

    A scripted completion (`generate_scripted`) also lists its `blocks`: each block the model wrote, with the text
    forced before it and the ids the model attended to when it began; `text`, `token_ids` and `logprobs` then join
    them (the forced texts in `text`, only sampled tokens in the ids)."""

    text: str
    token_ids: list[int]
    logprobs: list[float]
    finish_reason: FinishReason
    blocks: list[Block] | None = None

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Completion:
        """Inverse of `dataclasses.asdict` (the worker protocol)."""
        blocks = d.get("blocks")
        if blocks is not None:
            blocks = [Block(b["prefix"], list(b["context_ids"]), cls.from_dict(b["completion"])) for b in blocks]
        return cls(d["text"], list(d["token_ids"]), list(d["logprobs"]), d["finish_reason"], blocks)


@dataclass
class Block:
    """One block of a scripted completion: `prefix`, the text forced before it ('' for the first block);
    `context_ids`, every id the model attended to before its first sampled token (the prompt's included); and what it
    sampled. (prefix, context) is what a training record conditions the block on."""

    prefix: str
    context_ids: list[int]
    completion: Completion


@dataclass(frozen=True)
class Script:
    """How one prompt's answer goes on after its first block: when a block ends by itself (a stop string or end of
    sequence), `openings[k]` is forced after block k and the model writes block k + 1, up to `block_max_new_tokens`.
    A block that ended without `closer` (end of sequence) gets `unclosed` forced first. A block cut at its token
    budget ends the answer. The first block may use `first_max_new_tokens`."""

    first_max_new_tokens: int
    openings: tuple[str, ...] = ()
    block_max_new_tokens: int = 1
    closer: str = ""
    unclosed: str = ""

    def prefix(self, k: int, previous_text: str) -> str:
        """The text forced before block k >= 1, given the text of block k - 1."""
        closed = not self.unclosed or (self.closer and previous_text.endswith(self.closer))
        return ("" if closed else self.unclosed) + self.openings[k - 1]

    def to_dict(self) -> dict[str, Any]:
        """Plain data, for the worker protocol."""
        d = asdict(self)
        d["openings"] = list(self.openings)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Script:
        """Inverse of `to_dict`."""
        return cls(**{**d, "openings": tuple(d["openings"])})


@dataclass
class PromptOutput:
    """All completions of one prompt, with the prompt's token ids as the model saw them."""

    prompt: str
    prompt_token_ids: list[int]
    completions: list[Completion] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """Plain data, for the worker protocol and tables."""
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> PromptOutput:
        """Inverse of `to_dict`."""
        return cls(d["prompt"], list(d["prompt_token_ids"]), [Completion.from_dict(c) for c in d["completions"]])


class RolloutBackend(ABC):
    """Generates completions for a batch of prompts with the current policy weights."""

    name: str = "abstract"

    @abstractmethod
    def generate(self, prompts: Sequence[str], params: SamplingParams) -> list[PromptOutput]:
        """Sample `params.n` completions for each prompt; outputs come back in the prompts' order."""

    def generate_scripted(
        self, prompts: Sequence[str], params: SamplingParams, scripts: Sequence[Script]
    ) -> list[PromptOutput]:
        """Like `generate`, each answer written block by block as its prompt's script says (`Completion.blocks`).

        This default re-prefills: one `generate` call per block, whose prompt is everything so far. A backend that
        can continue from its KV cache overrides it."""
        from azr_core.policy.rollout.scripts import generate_by_reprefill

        return generate_by_reprefill(self.generate, prompts, params, scripts)

    @abstractmethod
    def sync_weights(self, named_tensors: Iterable[tuple[str, torch.Tensor]]) -> None:
        """Replace the backend's weights in place with the trainer's (HF names, full unsharded tensors)."""

    def close(self) -> None:  # noqa: B027 - optional hook: most backends hold nothing to release
        """Release the engine's resources; the backend is unusable afterwards."""


def call_seed(seed: int, call: int) -> int:
    """The seed of generate call number `call` of a backend seeded with `seed`: distinct per call, reproducible.

    >>> call_seed(0, 0) != call_seed(0, 1), call_seed(7, 3) == call_seed(7, 3)
    (True, True)
    """
    import hashlib

    return int.from_bytes(hashlib.sha256(f"{seed}:{call}".encode()).digest()[:7], "big")


def truncate_at_stop(text_of, token_ids: list[int], stop: Sequence[str]) -> tuple[int, bool]:
    """Number of leading tokens to keep so the completion ends with its first stop string (kept, like vLLM).

    `text_of(ids)` decodes a token list. Returns (kept token count, whether a stop string was found). The prefix
    search is a bisection on "decoded prefix contains a stop string", which is monotone in the prefix length.
    """
    if not stop or not any(s in text_of(token_ids) for s in stop):
        return len(token_ids), False
    lo, hi = 1, len(token_ids)
    while lo < hi:
        mid = (lo + hi) // 2
        if any(s in text_of(token_ids[:mid]) for s in stop):
            hi = mid
        else:
            lo = mid + 1
    return lo, True


def cut_text_at_stop(text: str, stop: Sequence[str]) -> str:
    """Text up to and including its earliest stop string (tokens may run a few characters past it)."""
    ends = [text.find(s) + len(s) for s in stop if s in text]
    return text[: min(ends)] if ends else text
