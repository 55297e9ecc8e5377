"""Prompts that share a prefix decode against one copy of it: grouping, and the attention that reads a group's copy.

A stage's prompts share long prefixes: cpu-tiny's 18 proposer prompts fall into three groups (one per task type) of
5-6 prompts sharing ~900 of their ~1100 tokens, and the n samples of one prompt share all of it. Padded `generate`,
and the cached loop before this module, kept a copy of every row's whole prompt in the KV cache, so each decode step
read the shared part once per row, and each distinct prompt's prefill recomputed it.

Here the sampler prefills a group's shared prefix once and, where the decode gains by it (DECODE_MIN_SAVING), keeps
it once (per layer (1, H, L, D)); a row's own cache holds only what follows it (the rest of its prompt and its
answer). In a decode step the attention of a grouped row is
the exact softmax over both parts, merged by their log-sum-exp (the "cascade" split of shared-prefix attention):

    out = (exp(m_own - m) * o_own + exp(m_grp - m) * o_grp) / (exp(m_own - m) * l_own + exp(m_grp - m) * l_grp)

with o the unnormalised weighted values, l the sums of weights and m the score maxima of each part (here through the
log-sum-exps the fused kernel returns). A group's prefix is multiplied against the queries of all its rows at once.
The result equals attention over the concatenated cache up to floating-point rounding, and the rows keep their order,
so a seed draws the same samples with groups as without (tested).
"""

from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass

import torch
from transformers import AttentionInterface
from transformers.integrations.sdpa_attention import sdpa_attention_forward

ATTENTION = "azr_prefix_groups"

# Prefill: a group's prefix runs once instead of once per member, for the price of one more batch-1 forward (~10-20 ms
# on SmolLM2-135M, the time of a few dozen prompt tokens), so prompts are grouped once they spare (rows - 1) x length
# above this many tokens.
MIN_SAVING = 64
# Decode: keeping a group's prefix apart costs a few small kernels per layer and step (measured on the 2-core Sapphire
# Rapids VM, 2 threads, 42 rows: ~3 ms a step per group, and ~11 ms for the first, against ~2.8 us a step for each
# cached token a row reads), so a group's prefix stays shared in the decode only where (rows - 1) x length exceeds
# this; a smaller group's prefix is copied into its rows' own caches after the prefill. cpu-tiny: the proposer's
# groups (5-6 prompts sharing ~900 tokens) stay shared; the solver's (8 prompts sharing ~150) are copied.
DECODE_MIN_SAVING = 2048


@dataclass(frozen=True)
class Group:
    """Distinct prompts (indices into the call's distinct prompts) sharing their first `length` tokens."""

    members: tuple[int, ...]
    length: int


def plan_groups(prompts: list[list[int]], rows: list[int], min_saving: int = MIN_SAVING) -> list[Group]:
    """Partition the distinct prompts (each sampled `rows[i]` times) into groups that share a prefix.

    Prompts sorted by their tokens put long common prefixes next to each other; an exact dynamic programme over
    contiguous runs of that order picks the runs that save the most cache reads, (rows - 1) x shared length each,
    counting a group only where that exceeds `min_saving`. A group's length leaves every member at least one token of
    its own (the prefill of that token gives the member's first logits). Prompts in no group are returned in none."""
    order = sorted(range(len(prompts)), key=lambda i: prompts[i])
    n = len(order)
    lcp = [common_prefix([prompts[order[k]], prompts[order[k + 1]]]) for k in range(n - 1)]
    best = [0] * (n + 1)  # best[j]: the largest saving over the first j prompts of the order
    cut: list[tuple[int, int]] = [(0, 0)] * (n + 1)  # (start of the last run, its length; 0: ungrouped)
    for j in range(1, n + 1):
        best[j], cut[j] = best[j - 1], (j - 1, 0)  # prompt j-1 on its own, ungrouped
        shared, shortest, count = 1 << 30, 1 << 30, 0
        for i in range(j - 1, -1, -1):  # the run order[i:j]
            if i < j - 1:
                shared = min(shared, lcp[i])
            shortest = min(shortest, len(prompts[order[i]]))
            count += rows[order[i]]
            length = min(shared, shortest - 1)
            if length <= 0:
                break
            saving = (count - 1) * length
            if saving > min_saving and best[i] + saving > best[j]:
                best[j], cut[j] = best[i] + saving, (i, length)
    groups, j = [], n
    while j > 0:
        i, length = cut[j]
        if length:
            groups.append(Group(tuple(order[i:j]), length))
        j = i
    return groups[::-1]


@dataclass
class GroupedCache:
    """A decode step's shared prefixes: per layer, one (keys, values) per group, and the batch slice of its rows."""

    prefixes: list[list[tuple[torch.Tensor, torch.Tensor]]]  # [layer][group] -> (1, H, L, D) each
    slices: list[tuple[int, slice | torch.Tensor]]  # (group, its batch rows: a slice where they are side by side)
    _mask_of: torch.Tensor | None = None
    _mask: torch.Tensor | None = None

    def additive_mask(self, allowed: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
        """The step's boolean mask as the fused kernel takes it (0 or -inf), made once per step, not per layer."""
        if self._mask_of is not allowed:
            self._mask_of = allowed
            self._mask = torch.zeros(allowed.shape, dtype=dtype, device=allowed.device).masked_fill(~allowed, -math.inf)
        return self._mask

    def select(self, row_groups: list[int | None]) -> None:
        """Recompute the row indices of each group for the rows now in the batch (None: a row in no group)."""
        rows: dict[int, list[int]] = {}
        for b, g in enumerate(row_groups):
            if g is not None:
                rows.setdefault(g, []).append(b)
        device = self.prefixes[0][0][0].device if self.prefixes and self.prefixes[0] else None
        self.slices = [
            (g, slice(r[0], r[-1] + 1) if r[-1] - r[0] + 1 == len(r) else torch.tensor(r, device=device))
            for g, r in sorted(rows.items())
        ]


def attention(module, query, key, value, attention_mask, dropout=0.0, scaling=None, prefix_groups=None, **kwargs):
    """Attention for one decode step with shared prefixes (`prefix_groups`, a GroupedCache); any other call (a
    prefill, the trainer) goes to sdpa.

    query (B, Hq, 1, D); key and value (B, Hkv, T, D), the rows' own caches; attention_mask (B, 1, 1, T) boolean.
    Returns (B, 1, Hq, D) as transformers' attention functions do."""
    groups = prefix_groups
    if groups is None:
        return sdpa_attention_forward(
            module, query, key, value, attention_mask, dropout=dropout, scaling=scaling, **kwargs
        )
    if query.shape[2] != 1 or attention_mask is None or attention_mask.dtype != torch.bool:
        raise ValueError("prefix-group attention serves decode steps: one query token and a boolean mask")
    if any(kwargs.get(k) is not None for k in ("softcap", "sliding_window", "s_aux")):
        raise ValueError("prefix-group attention has no soft-capping, sliding window or attention sinks")
    b, hq, _, d = query.shape
    hkv = key.shape[1]
    scale = d**-0.5 if scaling is None else scaling
    q = query.reshape(b, hkv, hq // hkv, d)  # a key/value head's query heads side by side, as repeat_kv pairs them
    part = _flash_part if query.device.type == "cpu" else _matmul_part
    o, lse = part(q, key, value, groups.additive_mask(attention_mask, q.dtype), scale)  # (B, Hkv, G, D), (B, Hkv, G)
    for g, sel in groups.slices:
        pk, pv = groups.prefixes[module.layer_idx][g]
        qs = q[sel]
        rows = qs.shape[0]
        og, lg = part(qs.transpose(0, 1).reshape(1, hkv, rows * q.shape[2], d), pk, pv, None, scale)  # one product
        og = og[0].reshape(hkv, rows, q.shape[2], d).transpose(0, 1)
        lg = lg[0].reshape(hkv, rows, q.shape[2]).transpose(0, 1)
        # A row is in one group: the two parts' weights are exp(lse_part - lse_both) = sigmoid(lse_own - lse_group)
        # and its complement, and the merged log-sum-exp is not needed again.
        o[sel] = torch.lerp(og, o[sel], torch.sigmoid(lse[sel] - lg)[..., None].to(o.dtype))
    return o.reshape(b, hq, 1, d).transpose(1, 2).contiguous(), None


def _flash_part(q, k, v, mask, scale):
    """Softmax attention of q over one part of the cache and its log-sum-exp, by torch's fused CPU kernel."""
    out, lse = torch.ops.aten._scaled_dot_product_flash_attention_for_cpu(
        q, k, v, 0.0, False, attn_mask=mask, scale=scale
    )
    return out, lse.float()


def _matmul_part(q, k, v, mask, scale):
    """The same as `_flash_part` in plain matmuls (devices without the CPU kernel)."""
    s = torch.matmul(q, k.transpose(-1, -2)).float() * scale
    if mask is not None:
        s = s + mask
    lse = torch.logsumexp(s, dim=-1)
    return torch.matmul(torch.exp(s - lse[..., None]).to(v.dtype), v), lse


AttentionInterface.register(ATTENTION, attention)


@contextlib.contextmanager
def grouped_attention(model):
    """The model's attention reads shared prefixes for the duration (the model may be the trainer's: restored after)."""
    config = model.config
    before = config._attn_implementation
    config._attn_implementation = ATTENTION
    try:
        yield
    finally:
        config._attn_implementation = before


def common_prefix(seqs: list[list[int]]) -> int:
    """Length of the longest prefix every sequence shares."""
    first = seqs[0]
    n = min(len(s) for s in seqs)
    for s in seqs[1:]:
        k = 0
        while k < n and s[k] == first[k]:
            k += 1
        n = k
    return n
