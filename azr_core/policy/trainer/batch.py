"""An update batch as tensors: right-padded sequences and the positions whose next token is a completion token."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import torch

from azr_core.policy.trainer.prefix import shared_prefix_length

if TYPE_CHECKING:
    from azr_core.policy.trainer.records import SequenceRecord


def collate(
    records: Sequence[SequenceRecord], pad_id: int, device: torch.device | str, *, share_prefix: bool = False
) -> dict[str, torch.Tensor]:
    """Right-padded prompt+completion ids, and the positions whose next token is a completion token.

    `keep` (K,) lists those positions (position t predicts token t + 1), the same for every row: any row's completion
    position is kept. `targets`, `mask` and `old_logprobs` are (B, K) over them. The model computes logits only
    there: over a prompt the vocabulary projection and its softmax are pure waste, and with a 49k vocabulary they
    are a large share of a small model's step. `shared` (a 0-d tensor) is the prompt prefix all rows share, with
    `share_prefix` (else 0): the forward may run it once (azr_core.policy.trainer.prefix).
    """
    for r in records:
        n = len(r.completion_token_ids)
        if not r.prompt_token_ids or len(r.old_logprobs) != n or (r.sampled is not None and len(r.sampled) != n):
            raise ValueError(
                f"bad record: {len(r.prompt_token_ids)} prompt tokens (need >= 1), {n} completion tokens but "
                f"{len(r.old_logprobs)} old log-probs and {n if r.sampled is None else len(r.sampled)} sampled flags"
            )
    seqs = [r.prompt_token_ids + r.completion_token_ids for r in records]
    width = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), width), pad_id, dtype=torch.long)
    attn = torch.zeros_like(ids)
    span = torch.zeros((len(seqs), max(width - 1, 1)), dtype=torch.bool)
    mask = torch.zeros(span.shape)
    old = torch.zeros(span.shape)
    for i, (r, s) in enumerate(zip(records, seqs, strict=True)):
        ids[i, : len(s)] = torch.tensor(s)
        attn[i, : len(s)] = 1
        start, n = len(r.prompt_token_ids) - 1, len(r.completion_token_ids)  # position t predicts token t+1
        span[i, start : start + n] = True
        mask[i, start : start + n] = 1.0 if r.sampled is None else torch.tensor(r.sampled, dtype=torch.float32)
        old[i, start : start + n] = torch.tensor(r.old_logprobs, dtype=torch.float32)
    keep = span.any(0).nonzero().squeeze(1)
    if keep.numel() == 0:  # no completion token anywhere: one masked position keeps the shapes (and the graph) whole
        keep = torch.zeros(1, dtype=torch.long)
    targets = torch.cat([ids[:, 1:], torch.full((len(seqs), 1), pad_id)], 1)[:, keep]
    adv = torch.tensor([r.advantage for r in records], dtype=torch.float32)
    shared = shared_prefix_length([r.prompt_token_ids for r in records]) if share_prefix and len(records) > 1 else 0
    batch = dict(input_ids=ids, attention_mask=attn, keep=keep, targets=targets, mask=mask[:, keep],
                 old_logprobs=old[:, keep], advantages=adv, shared=torch.tensor(shared))  # fmt: skip
    return {k: v.to(device) for k, v in batch.items()}


def spread(values: torch.Tensor, keep: torch.Tensor, width: int) -> torch.Tensor:
    """(B, K) values at the kept positions back to (B, width), zero elsewhere."""
    full = values.new_zeros((values.shape[0], width))
    full[:, keep] = values
    return full
