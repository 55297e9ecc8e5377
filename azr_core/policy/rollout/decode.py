"""The hf backend's sampling loop: each prompt prefilled once, an answer's blocks continued from the KV cache.

`model.generate` prefills its whole prompt on every call and keeps finished rows in its padded batch; an answer
written block by block (the answer skeleton) then pays one prefill per block. This loop instead:

- prefills the token prefix common to a call's distinct prompts once, and each distinct prompt's rest once on top of
  it (batch 1, so no work on padding); the n samples of a prompt copy its cache rows;
- decodes one token per row and step, sampled or forced: when a block ends by itself, the text its script opens the
  next block with is fed token by token (forced tokens are never trained on: they appear only as context);
- never feeds a sampled token the parsed text does not hold (an end of sequence that ends a block, a token that runs
  past a stop string), so a block attends to what a re-prefill of the text would give whenever the tokenizer keeps
  the boundary, and always to exactly the ids its `Block.context_ids` records;
- drops rows whose answer ended from the batch once enough of them have.

Each row keeps its own positions (its count of attended tokens) and a boolean mask of the cache slots it attends to,
so rows of different lengths and slots left unused need no re-layout. Log-probs are those of the raw distribution
(before temperature, top-p and the first-token suppression), as the trainer recomputes them.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
from transformers import DynamicCache
from transformers.cache_utils import DynamicLayer

from azr_core.policy.rollout.base import Block, Completion, SamplingParams, Script, cut_text_at_stop
from azr_core.policy.rollout.prefix_groups import (
    DECODE_MIN_SAVING,
    MIN_SAVING,
    Group,
    GroupedCache,
    common_prefix,
    grouped_attention,
    plan_groups,
)
from azr_core.policy.rollout.scripts import join_blocks


class Unsupported(RuntimeError):
    """The model's cache is not made of plain dynamic layers (sliding windows, linear attention): use `generate`."""


class _SlotLayer(DynamicLayer):
    """A cache layer written in place with room to grow, instead of concatenated anew at every step."""

    def __init__(self, keys: torch.Tensor, values: torch.Tensor, capacity: int) -> None:
        super().__init__()
        b, h, t, d = keys.shape
        self._k = keys.new_zeros((b, h, max(capacity, t), d))
        self._v = values.new_zeros((b, values.shape[1], max(capacity, t), values.shape[3]))
        self._k[:, :, :t], self._v[:, :, :t] = keys, values
        self.length, self.device, self.is_initialized = t, keys.device, True
        self._views()

    def _views(self) -> None:
        self.keys, self.values = self._k[:, :, : self.length], self._v[:, :, : self.length]

    def update(self, key_states: torch.Tensor, value_states: torch.Tensor, *args, **kwargs):
        n = key_states.shape[-2]
        if self.length + n > self._k.shape[2]:
            grow = max(n, self._k.shape[2] // 2)
            self._k = torch.cat([self._k, self._k.new_zeros((*self._k.shape[:2], grow, self._k.shape[3]))], dim=2)
            self._v = torch.cat([self._v, self._v.new_zeros((*self._v.shape[:2], grow, self._v.shape[3]))], dim=2)
        self._k[:, :, self.length : self.length + n] = key_states
        self._v[:, :, self.length : self.length + n] = value_states
        self.length += n
        self._views()
        return self.keys, self.values

    def get_seq_length(self) -> int:
        return self.length

    def select(self, rows: torch.Tensor) -> None:
        self._k, self._v = self._k.index_select(0, rows), self._v.index_select(0, rows)
        self._views()


@dataclass
class _Row:
    """One answer being written."""

    prompt: int  # index of its prompt in the call
    script: Script
    visible: list[int]  # every id the model attends to, the prompt's included
    text: str = ""  # the answer so far, as parsed: blocks and the texts forced between them
    blocks: list[Block] = field(default_factory=list)
    ids: list[int] = field(default_factory=list)  # the current block's sampled ids and their log-probs
    lps: list[float] = field(default_factory=list)
    context: list[int] = field(default_factory=list)  # what the current block began from
    prefix: str = ""  # the text forced before the current block
    forced: list[int] = field(default_factory=list)  # ids still to feed before the model samples again
    done: bool = False

    @property
    def budget(self) -> int:
        return self.script.first_max_new_tokens if not self.blocks else self.script.block_max_new_tokens


class CachedSampler:
    """Samples completions for the hf backend; `sample` is one generate call of the backend."""

    def __init__(
        self,
        model,
        tokenizer,
        *,
        eos_ids: set[int],
        empty_starts,
        max_rows: int,
        min_saving: int | None = MIN_SAVING,
        decode_min_saving: int = DECODE_MIN_SAVING,
    ) -> None:
        self.model = model
        self.tok = tokenizer
        self.eos_ids = eos_ids
        self._empty_starts = empty_starts  # a callable: computed only when a call suppresses empty starts
        self.max_rows = max(1, max_rows)
        self.min_saving = min_saving  # prompts sharing a prefix prefill it once (None: never grouped)
        self.decode_min_saving = decode_min_saving  # ... and decode against one copy of it, where that pays
        self.pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
        self.sdpa = getattr(model.config, "_attn_implementation", "sdpa") == "sdpa"

    def sample(
        self, prompts: Sequence[str], params: SamplingParams, scripts: Sequence[Script | None]
    ) -> list[tuple[list[int], list[Completion]]]:
        """(prompt ids, n completions) per prompt. A prompt without a script samples one block of
        `params.max_new_tokens`; its completions carry no `blocks`."""
        if len(scripts) != len(prompts):
            raise ValueError(f"generate_scripted: {len(prompts)} prompts but {len(scripts)} scripts")
        ids = [list(self.tok(p)["input_ids"]) for p in prompts]
        plain = Script(params.max_new_tokens)
        rows = [
            _Row(i, sc or plain, list(ids[i]), context=list(ids[i]))
            for i, sc in enumerate(scripts)
            for _ in range(params.n)
        ]
        per = max(1, self.max_rows // params.n) * params.n  # a prompt's samples stay in one batch
        for at in range(0, len(rows), per):
            self._run(rows[at : at + per], prompts, params)
        out: list[tuple[list[int], list[Completion]]] = [(ids[i], []) for i in range(len(prompts))]
        for r in rows:
            out[r.prompt][1].append(join_blocks(r.blocks) if scripts[r.prompt] else r.blocks[0].completion)
        return out

    # ---- prefill -------------------------------------------------------------------------------------------------

    def _forward(self, input_ids, mask, positions, cache, grouped: GroupedCache | None = None):
        extra = {} if grouped is None else {"prefix_groups": grouped}  # the grouped attention takes a boolean mask
        out = self.model(
            input_ids=input_ids,
            attention_mask=mask if grouped is not None else self._mask(mask),
            position_ids=positions,
            cache=cache,
            use_cache=True,
            logits_to_keep=1,
            **extra,
        )
        return out.logits[:, -1].float()

    def _mask(self, allowed: torch.Tensor) -> torch.Tensor:
        """A (B, 1, q, kv) boolean mask as the attention implementation takes it (eager adds a float mask)."""
        if self.sdpa:
            return allowed
        return torch.zeros(allowed.shape, dtype=self.model.dtype, device=allowed.device).masked_fill(
            ~allowed, torch.finfo(self.model.dtype).min
        )

    def _new_cache(self) -> DynamicCache:
        cache = DynamicCache(config=self.model.config)
        if not cache.layers or any(type(layer) is not DynamicLayer for layer in cache.layers):
            raise Unsupported(f"{type(self.model).__name__}: cache layers other than plain dynamic ones")
        return cache

    def _prefill(
        self, prompt_ids: list[list[int]], groups: list[Group]
    ) -> tuple[
        list[list[tuple[torch.Tensor, torch.Tensor]]],
        list[int],
        list[list[tuple[torch.Tensor, torch.Tensor]]],
        torch.Tensor,
    ]:
        """Each distinct prompt's own cache (per layer (1, H, T - start, D) keys and values: what follows its group's
        prefix, or all of it), its start, each group's prefix cache, and the prompts' last logits. The prefix common
        to every prompt runs once, each group's prefix once on top of it, each prompt's rest once on top of that."""
        if min(len(p) for p in prompt_ids) == 0:
            raise ValueError("a prompt with no tokens: the model has nothing to continue from")
        shared = common_prefix(prompt_ids)
        shared = min(shared, min(len(p) for p in prompt_ids) - 1)  # each prompt needs a token of its own to run
        root = self._extend([], 0, prompt_ids[0][:shared])[0] if shared > 0 else []
        base: list[tuple[list, int]] = [(root, shared)] * len(prompt_ids)
        starts = [0] * len(prompt_ids)
        group_kv = []
        for g in groups:  # a group's length is at least `shared`: the common prefix is common to its members too
            kv = self._extend(root, shared, prompt_ids[g.members[0]][shared : g.length])[0]
            group_kv.append(kv)
            for u in g.members:
                base[u], starts[u] = (kv, g.length), g.length
        kvs, logits = [], []
        for u, p in enumerate(prompt_ids):
            kv, n0 = base[u]
            full, last = self._extend(kv, n0, p[n0:])
            kvs.append([(k[:, :, starts[u] :], v[:, :, starts[u] :]) for k, v in full])
            logits.append(last)
        return kvs, starts, group_kv, torch.stack(logits)

    def _extend(self, kv: list[tuple[torch.Tensor, torch.Tensor]], n0: int, ids: list[int]):
        """Run `ids` (batch 1) on top of a cache of `n0` tokens: the whole cache after them, and their last logits."""
        device = next(self.model.parameters()).device
        cache = self._new_cache()
        for layer, (k, v) in zip(cache.layers, kv, strict=False):
            layer.update(k, v)
        if not ids:
            return kv, None
        n = len(ids)
        allowed = torch.ones(n, n0 + n, dtype=torch.bool, device=device).tril(diagonal=n0)[None, None]
        pos = torch.arange(n0, n0 + n, device=device)[None]
        last = self._forward(torch.tensor([ids], device=device), allowed, pos, cache)[0]
        return [(layer.keys, layer.values) for layer in cache.layers], last

    # ---- decode --------------------------------------------------------------------------------------------------

    @torch.inference_mode()
    def _run(self, rows: list[_Row], prompts: Sequence[str], params: SamplingParams) -> None:
        device = next(self.model.parameters()).device
        distinct: dict[tuple[int, ...], int] = {}
        for r in rows:
            distinct.setdefault(tuple(r.visible), len(distinct))
        prompt_ids = [list(k) for k in distinct]
        counts = [0] * len(prompt_ids)
        for r in rows:
            counts[distinct[tuple(r.visible)]] += 1
        groups = plan_groups(prompt_ids, counts, self.min_saving) if self.min_saving is not None else []
        group_of = {u: g for g, grp in enumerate(groups) for u in grp.members}
        kvs, starts, group_kv, first_logits = self._prefill(prompt_ids, groups)
        for g, grp in enumerate(groups):  # a group too small to pay for its kernels in the decode: copied per row
            if (sum(counts[u] for u in grp.members) - 1) * grp.length <= self.decode_min_saving:
                for u in grp.members:
                    kvs[u] = [
                        (torch.cat([gk, k], 2), torch.cat([gv, v], 2))
                        for (gk, gv), (k, v) in zip(group_kv[g], kvs[u], strict=True)
                    ]
                    starts[u] = 0
                    del group_of[u]
        row_prompt = [distinct[tuple(r.visible)] for r in rows]  # each row's distinct prompt
        which = torch.tensor(row_prompt, device=device)
        lengths = [len(r.visible) - starts[u] for r, u in zip(rows, row_prompt, strict=True)]  # own cache lengths
        width = max(lengths)
        capacity = width + max(r.script.first_max_new_tokens for r in rows) + 16
        layers = []
        for li in range(len(kvs[0])):
            k0, v0 = kvs[0][li]
            keys = k0.new_zeros((len(rows), k0.shape[1], width, k0.shape[3]))
            values = v0.new_zeros((len(rows), v0.shape[1], width, v0.shape[3]))
            for b, (u, n) in enumerate(zip(row_prompt, lengths, strict=True)):
                k, v = kvs[u][li]
                keys[b, :, width - n :], values[b, :, width - n :] = k[0], v[0]
            layers.append(_SlotLayer(keys, values, capacity))
        del kvs
        cache = self._new_cache()
        cache.layers = layers
        grouped = None
        if group_of:
            grouped = GroupedCache([[kv[li] for kv in group_kv] for li in range(len(layers))], [])
            grouped.select([group_of.get(u) for u in row_prompt])
        mask = torch.zeros(len(rows), capacity, dtype=torch.bool, device=device)
        for b, n in enumerate(lengths):
            mask[b, width - n : width] = True
        positions = torch.tensor([len(r.visible) for r in rows], device=device)
        logits = first_logits.index_select(0, which)
        length = width
        stops = tuple(params.stop)
        window = max((len(s) for s in stops), default=0) + 2
        empty = torch.tensor(self._empty_starts() if params.nonempty else [], dtype=torch.long, device=device)
        live = list(rows)
        with grouped_attention(self.model) if grouped else contextlib.nullcontext():
            while True:
                need = [b for b, r in enumerate(live) if not r.done and not r.forced]
                picked: dict[int, tuple[int, float]] = {}
                if need:
                    at_start = torch.tensor([not live[b].ids for b in need], device=device)
                    toks, lps = _pick(logits[need], params, at_start if len(empty) else None, empty)
                    picked = dict(zip(need, zip(toks.tolist(), lps.tolist(), strict=True), strict=True))
                feed = [self._advance(r, picked.get(b), prompts, stops, window) for b, r in enumerate(live)]
                if all(r.done for r in live):
                    break
                if length >= mask.shape[1]:
                    mask = torch.cat([mask, torch.zeros_like(mask)], dim=1)
                fed = torch.tensor([t is not None for t in feed], device=device)
                mask[:, length] = fed
                ids = torch.tensor([[self.pad if t is None else t] for t in feed], device=device)
                logits = self._forward(ids, mask[:, None, None, : length + 1], positions[:, None], cache, grouped)
                positions = positions + fed.long()
                length += 1
                dead = sum(r.done for r in live)
                if dead and dead * 8 >= len(live):  # drop finished rows: each step then costs less
                    keep = torch.tensor([b for b, r in enumerate(live) if not r.done], device=device)
                    for layer in cache.layers:
                        layer.select(keep)
                    mask, positions, logits = mask.index_select(0, keep), positions.index_select(0, keep), logits[keep]
                    row_prompt = [u for u, r in zip(row_prompt, live, strict=True) if not r.done]
                    live = [r for r in live if not r.done]
                    if grouped:
                        grouped.select([group_of.get(u) for u in row_prompt])

    def _advance(self, r: _Row, picked: tuple[int, float] | None, prompts, stops, window) -> int | None:
        """Take this step's token for row `r`: the next forced one, or the sampled one (which may end the block, the
        answer, or open the next block). Returns the id to feed, or None when the row feeds nothing."""
        if r.done:
            return None
        if r.forced:
            t = r.forced.pop(0)
            r.visible.append(t)
            return t
        t, lp = picked  # type: ignore[misc]
        r.ids.append(t)
        r.lps.append(lp)
        if t in self.eos_ids:
            return self._end_block(r, self._decode(r.ids), "stop", None, prompts)
        if stops and any(s in self.tok.decode(r.ids[-window:], skip_special_tokens=True) for s in stops):
            full = self._decode(r.ids)
            if any(s in full for s in stops):
                cut = cut_text_at_stop(full, stops)
                before = self._decode(r.ids[:-1])
                if cut == full or not full.startswith(before) or len(cut) <= len(before):
                    return self._end_block(r, cut, "stop", t, prompts)
                # The last token runs past the stop string: the text keeps what it needs of it, and that part is
                # forced in its place, so what follows sees the text as parsed.
                return self._end_block(r, cut, "stop", None, prompts, carry=cut[len(before) :])
        if len(r.ids) >= r.budget:
            return self._end_block(r, self._decode(r.ids), "length", t, prompts)
        r.visible.append(t)
        return t

    def _end_block(self, r: _Row, text: str, finish: str, last: int | None, prompts, carry: str = "") -> int | None:
        """Close the current block; open the next one if its script has one and the block ended by itself.
        `last`: the sampled id that may be fed (None: the text does not hold it)."""
        r.blocks.append(Block(r.prefix, r.context, Completion(text, r.ids, r.lps, finish)))  # type: ignore[arg-type]
        r.text += text
        r.ids, r.lps = [], []
        if finish != "stop" or len(r.blocks) > len(r.script.openings):
            r.done = True
            return None
        base = r.visible + ([last] if last is not None else [])
        prefix = r.script.prefix(len(r.blocks), text)
        r.text += prefix
        full = list(self.tok(prompts[r.prompt] + r.text)["input_ids"])
        if full[: len(base)] == base and len(full) > len(base):
            forced = full[len(base) :]  # the ids a re-prefill of the text gives
        else:  # the tokenizer merged across the boundary: the forced text on its own
            forced = list(self.tok(carry + prefix, add_special_tokens=False)["input_ids"])
        r.prefix, r.context = prefix, base + forced
        if last is not None:
            r.visible.append(last)
            r.forced = forced
            return last
        r.visible.append(forced[0])
        r.forced = forced[1:]
        return forced[0]

    def _decode(self, ids: list[int]) -> str:
        return self.tok.decode(ids, skip_special_tokens=True)


def _pick(
    logits: torch.Tensor, params: SamplingParams, at_start: torch.Tensor | None, empty: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Sample (or take the argmax of) one token per row; returns ids and their raw log-probs. Rows flagged in
    `at_start` may not begin with a token of `empty`. Temperature, then top-p, as transformers orders them."""
    logp = torch.log_softmax(logits, dim=-1)
    scores = logits
    if at_start is not None and bool(at_start.any()):
        scores = scores.clone()
        rows = at_start.nonzero().squeeze(1)
        scores[rows[:, None], empty[None, :]] = float("-inf")
    if params.temperature <= 0:
        tok = scores.argmax(dim=-1)
    else:
        scores = scores / params.temperature
        if params.top_p < 1.0:
            srt, idx = torch.sort(scores, descending=False, dim=-1)
            drop = srt.softmax(dim=-1).cumsum(dim=-1) <= (1 - params.top_p)
            drop[:, -1] = False
            scores = scores.masked_fill(drop.scatter(1, idx, drop), float("-inf"))
        # Inverse-CDF sampling: the same draw as torch.multinomial, at a twentieth of its cost over a 49k vocabulary.
        cdf = scores.softmax(dim=-1).cumsum(dim=-1)
        u = torch.rand(cdf.shape[0], 1, device=cdf.device, dtype=cdf.dtype) * cdf[:, -1:]
        tok = torch.searchsorted(cdf, u, right=True).squeeze(1).clamp_(max=cdf.shape[1] - 1)
    return tok, logp.gather(1, tok[:, None]).squeeze(1)
