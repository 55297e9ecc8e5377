"""The update's forward with the prompt prefix its sequences share run once per micro-batch.

A micro-batch of one group's sequences shares most of its prompt: every proposer prompt of a type opens with the same
instructions (with the banned list, ~800 tokens of a ~1100-token cpu-tiny proposer sequence). Running that prefix
once and continuing every row from its keys and values gives each row exactly the activations of its own full
forward (causal attention: a prefix position never sees what follows it), and autograd sums the rows' gradients into
the one prefix computation, so loss and gradient are the same up to float rounding (tests/test_policy_trainer.py)
while the prefix's compute and activation memory are paid once instead of once per row.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch


def shared_prefix_length(prompts: Sequence[Sequence[int]]) -> int:
    """Tokens all prompts share at their start, leaving every prompt at least one token of its own (its last prompt
    token predicts its first completion token, so the kept positions all lie after the prefix).

    >>> shared_prefix_length([[1, 2, 3, 4], [1, 2, 3, 5, 6], [1, 2, 9]])
    2
    """
    if not prompts:
        return 0
    n = min(len(p) for p in prompts) - 1
    first = prompts[0]
    for i in range(max(n, 0)):
        if any(p[i] != first[i] for p in prompts[1:]):
            return i
    return max(n, 0)


def supports_prefix(model: torch.nn.Module) -> bool:
    """Whether the model's cache is the plain dynamic one this forward builds on (decoder-only HF models)."""
    from transformers import DynamicCache
    from transformers.cache_utils import DynamicLayer

    config = getattr(model, "config", None)
    if config is None or getattr(
        model, "is_activation_checkpointing", getattr(model, "is_gradient_checkpointing", False)
    ):
        return False  # checkpointing turns the cache off in training
    try:
        cache = DynamicCache(config=config)
    except Exception:  # noqa: BLE001 - a config DynamicCache cannot read: no prefix sharing, the plain forward
        return False
    return bool(cache.layers) and all(type(layer) is DynamicLayer for layer in cache.layers)


def _mask(allowed: torch.Tensor, config, dtype: torch.dtype) -> torch.Tensor:
    """A (B, 1, q, kv) boolean mask as the attention implementation takes it (eager adds a float mask)."""
    if getattr(config, "_attn_implementation", "sdpa") == "sdpa":
        return allowed
    return torch.zeros(allowed.shape, dtype=dtype, device=allowed.device).masked_fill(~allowed, torch.finfo(dtype).min)


def forward_shared(
    model: torch.nn.Module,
    config,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    keep: torch.Tensor,
    shared: int,
) -> torch.Tensor:
    """Logits (B, K, V) at the `keep` positions of right-padded rows whose first `shared` tokens are the same: the
    prefix runs once (batch 1), each row continues from its keys and values."""
    from transformers import DynamicCache

    rows, width = input_ids.shape
    device = input_ids.device
    dtype = next(model.parameters()).dtype
    cache = DynamicCache(config=config)
    causal = torch.ones(shared, shared, dtype=torch.bool, device=device).tril()[None, None]
    model(
        input_ids=input_ids[:1, :shared],
        attention_mask=_mask(causal, config, dtype),
        position_ids=torch.arange(shared, device=device)[None],
        cache=cache,
        use_cache=True,
        logits_to_keep=1,
    )
    for layer in cache.layers:  # one prefix for every row: a view, whose gradients autograd sums
        layer.keys = layer.keys.expand(rows, -1, -1, -1)
        layer.values = layer.values.expand(rows, -1, -1, -1)
    n = width - shared
    own = torch.ones(n, n, dtype=torch.bool, device=device).tril()[None, None].expand(rows, 1, n, n)
    own = own & attention_mask[:, None, None, shared:].bool()  # right padding: no row attends to its pad keys
    allowed = torch.cat([torch.ones(rows, 1, n, shared, dtype=torch.bool, device=device), own], dim=-1)
    out = model(
        input_ids=input_ids[:, shared:],
        attention_mask=_mask(allowed, config, dtype),
        position_ids=torch.arange(shared, width, device=device)[None].expand(rows, -1),
        cache=cache,
        use_cache=True,
        logits_to_keep=keep - shared,
    )
    return out.logits
