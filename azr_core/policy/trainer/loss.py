"""The REINFORCE++ policy-gradient loss of TRR++, with PPO-style ratio clipping.

Advantages arrive already normalised per (role, task type) group; every completion token of a sequence shares its
sequence's advantage. The loss is a token mean over the whole update batch: each micro-batch contributes
sum(token losses) / total_tokens, so splitting the batch into micro-batches or ranks does not change it.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class LossTerms:
    """Per-token quantities of one micro-batch, each (B, T), zero where `mask` is 0."""

    pg: torch.Tensor  # clipped surrogate loss
    ratio: torch.Tensor  # pi / pi_old
    clipped: torch.Tensor  # 1 where the clipped branch was taken
    entropy: torch.Tensor | None
    kl: torch.Tensor | None


def token_logprobs(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Log-prob of each target token: logits (B, T, V) predict targets (B, T) -> (B, T), in float32."""
    logits = logits.float()
    return torch.gather(logits.log_softmax(-1), -1, targets.unsqueeze(-1)).squeeze(-1)


def entropy_from_logits(logits: torch.Tensor) -> torch.Tensor:
    """Entropy of each position's distribution: (B, T, V) -> (B, T)."""
    logp = logits.float().log_softmax(-1)
    return -(logp.exp() * logp).sum(-1)


def policy_loss_terms(
    logprobs: torch.Tensor,
    old_logprobs: torch.Tensor,
    advantages: torch.Tensor,
    mask: torch.Tensor,
    *,
    clip_ratio: float,
    entropy: torch.Tensor | None = None,
    ref_logprobs: torch.Tensor | None = None,
) -> LossTerms:
    """PPO-clip surrogate per token: -min(r A, clip(r, 1-c, 1+c) A), with r = exp(logp - old_logp).

    logprobs, old_logprobs, mask: (B, T); advantages: (B,) broadcast over tokens. The KL term, when a reference
    is given, is the non-negative k3 estimator exp(ref - logp) - (ref - logp) - 1.
    """
    adv = advantages.unsqueeze(1).to(logprobs.dtype)
    ratio = torch.exp(logprobs - old_logprobs)
    unclipped = ratio * adv
    clipped_ratio = torch.clamp(ratio, 1.0 - clip_ratio, 1.0 + clip_ratio)
    clipped = clipped_ratio * adv
    pg = -torch.minimum(unclipped, clipped)
    kl = None
    if ref_logprobs is not None:
        log_r = ref_logprobs - logprobs
        kl = (torch.exp(log_r) - log_r - 1.0) * mask
    return LossTerms(
        pg=pg * mask,
        ratio=ratio.detach() * mask,
        clipped=(clipped < unclipped).float() * mask,
        entropy=entropy * mask if entropy is not None else None,
        kl=kl,
    )


def combine_loss(terms: LossTerms, total_tokens: int, *, entropy_coef: float, kl_coef: float) -> torch.Tensor:
    """Scalar loss of one micro-batch, normalised by the token count of the whole update batch."""
    loss = terms.pg.sum()
    if entropy_coef and terms.entropy is not None:
        loss = loss - entropy_coef * terms.entropy.sum()
    if kl_coef and terms.kl is not None:
        loss = loss + kl_coef * terms.kl.sum()
    return loss / max(total_tokens, 1)
