"""Continuous batching through transformers (`model.generate_batch`'s engine): the GPU backend where vLLM is absent.

transformers' continuous batching keeps a paged KV cache and a scheduler: a sequence that finishes frees its slot at
once and a waiting one takes it, so a call's time is not that of its longest sequence times the batch count, as with
padded `generate`, and the n samples of a prompt are forked from one prefill. This backend drives its manager
directly (`init_continuous_batching`, `add_requests`, `start`), every request queued before the loop starts, so a
fixed seed replays a call (`generate_batch` starts the loop first and the first batch then depends on timing).

What transformers does not do, and how it is made up for:

- Stop strings: the engine stops only at end-of-sequence ids. Every vocabulary token whose own text holds a stop
  string is passed as an extra end-of-sequence id, so the common case (a stop string inside one token) ends the
  sequence at once; each completion is then cut after the first token whose decoded text completes a stop string,
  exactly as the hf backend cuts (`HFBackend._completion`). A stop string spread over several tokens is found by that
  cut too, but the engine decodes on to end of sequence or `max_new_tokens` first (wasted steps, the same result).
- Log-probs: the engine returns log(softmax(processed scores))[token], the temperature- and top-p-processed
  distribution. At temperature 1 without top-p that is the raw distribution the trainer recomputes, and it is used
  as is. Otherwise (and for any non-finite value) the completions are rescored by one teacher-forced forward of the
  same model in batches of about `rescore_tokens` tokens: exact, at the cost of a prefill of every sequence.
- `SamplingParams.nonempty` (no per-request first-token suppression here): such calls go to the hf backend's own
  KV-cached loop on the same model (this class extends HFBackend), with a warning the first time.

On CPU the engine runs too (tests/test_rollout_batching.py), with a small cache sized to each call: left to itself it
sizes its static tensors from the free memory, which on a CPU host takes many seconds to fill.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from typing import Any

import torch

from azr_core.policy.rollout.base import Completion, PromptOutput, RolloutBackend, SamplingParams, Script, call_seed
from azr_core.policy.rollout.hf import HFBackend

#: The ContinuousBatchingConfig fields set on CPU unless overridden: small pages, a cache sized to the call.
CPU_PAGE_SIZE = 64
CPU_MAX_BATCH_TOKENS = 512


class BatchingBackend(HFBackend):
    """Rollouts through transformers' continuous batching engine (`rollout.backend=hf-batching`).

    `cb_config`: ContinuousBatchingConfig fields that override this backend's choices (on a GPU, transformers sizes
    the cache from free memory by default). `rescore_tokens`: tokens per teacher-forced batch when log-probs must be
    recomputed. `batch_size` only serves the hf fallback (`nonempty` calls).
    """

    name = "hf-batching"

    def __init__(
        self,
        model: torch.nn.Module,
        tokenizer,
        *,
        batch_size: int = 16,
        shares_trainer_weights: bool = False,
        cb_config: dict[str, Any] | None = None,
        rescore_tokens: int = 8192,
    ) -> None:
        super().__init__(model, tokenizer, batch_size=batch_size, shares_trainer_weights=shares_trainer_weights)
        self.cb_config = dict(cb_config or {})
        self.rescore_tokens = max(1, rescore_tokens)
        self._vocab_texts: list[str] | None = None
        self._stop_ids: dict[tuple[str, ...], set[int]] = {}
        self._warned_nonempty = False
        #: Of the last call: sequences rescored by a teacher-forced forward (0 when the engine's log-probs served).
        self.last_rescored = 0

    def generate(self, prompts: Sequence[str], params: SamplingParams) -> list[PromptOutput]:
        """Sample `params.n` completions per prompt, all of the call's sequences in one continuous batch."""
        if params.nonempty:
            self._warn_nonempty()
            return super().generate(prompts, params)
        enc = [list(self.tokenizer(p)["input_ids"]) for p in prompts]
        if any(not ids for ids in enc):
            raise ValueError("a prompt with no tokens: the model has nothing to continue from")
        sampled = self._run(enc, params)
        outputs = []
        for prompt, ids, samples in zip(prompts, enc, sampled, strict=True):
            outputs.append(
                PromptOutput(prompt, ids, [self._completion(list(t), list(lp), params) for t, lp in samples])
            )
        rescore = params.temperature > 0 and (params.temperature != 1.0 or params.top_p < 1.0)
        todo = [
            (o.prompt_token_ids, c)
            for o in outputs
            for c in o.completions
            if rescore or not all(math.isfinite(x) for x in c.logprobs)
        ]
        self.last_rescored = len(todo)
        if todo:
            self._rescore(todo)
        return outputs

    def generate_scripted(
        self, prompts: Sequence[str], params: SamplingParams, scripts: Sequence[Script]
    ) -> list[PromptOutput]:
        """Scripted answers by re-prefilling each block (one continuous batch per round of blocks), as vLLM does; with
        `nonempty`, the hf backend's KV-cached blocks."""
        if params.nonempty:
            self._warn_nonempty()
            return super().generate_scripted(prompts, params, scripts)
        return RolloutBackend.generate_scripted(self, prompts, params, scripts)

    # ---- the engine ----------------------------------------------------------------------------------------------

    def _run(self, enc: list[list[int]], params: SamplingParams) -> list[list[tuple[list[int], list[float]]]]:
        """(token ids, engine log-probs) of the n samples of each prompt, in the prompts' order."""
        from transformers import GenerationConfig
        from transformers.generation.continuous_batching.utils import WorkloadHints

        sample = params.temperature > 0
        warp = dict(temperature=params.temperature, top_p=params.top_p) if sample else {}
        n = params.n if sample else 1  # greedy samples are all the same sequence: decoded once, copied
        gen_cfg = GenerationConfig(
            do_sample=sample,
            num_return_sequences=n,
            max_new_tokens=params.max_new_tokens,
            eos_token_id=sorted(self.eos_ids | self.stop_token_ids(params.stop)),
            pad_token_id=self.tokenizer.pad_token_id,
            **warp,
        )
        seed = None if params.seed is None else call_seed(params.seed, self._calls)
        self._calls += 1
        hints = WorkloadHints(max(map(len, enc)), params.max_new_tokens, len(enc) * n)
        model = self.model
        was_training = model.training
        manager = model.init_continuous_batching(
            generation_config=gen_cfg,
            continuous_batching_config=self._cb_config(enc, params, n, seed),
            workload_hints=hints,
        )
        results: dict[str, Any] = {}
        try:
            with torch.inference_mode():
                if not manager.warmed_up:
                    manager.warmup()  # CUDA graph capture where the engine uses them (a no-op otherwise)
                # Queued before the loop starts: the first batch (and so the random stream) does not depend on timing.
                request_ids = manager.add_requests(inputs=enc, max_new_tokens=params.max_new_tokens)
                manager.start()
                want = len(enc) * n
                while len(results) < want:
                    out = manager.get_result(timeout=1)
                    if out is None:
                        if not manager.is_running():
                            break
                        continue
                    if out.is_finished():
                        results[out.request_id] = out
        finally:
            manager.stop(block=True)  # also restores the attention implementation it switched from
            manager.destroy()
            model.train(was_training)  # the manager leaves the model in eval mode
        return [self._collect(rid, n, results) * (params.n // n) for rid in request_ids]

    def _cb_config(self, enc: list[list[int]], params: SamplingParams, n: int, seed: int | None):
        from transformers.generation.configuration_utils import ContinuousBatchingConfig

        # Log-probs of the processed distribution are only worth copying out when they are the raw ones.
        raw = params.temperature <= 0 or (params.temperature == 1.0 and params.top_p >= 1.0)
        fields: dict[str, Any] = {"return_logprobs": raw, "seed": seed}
        if next(self.model.parameters()).device.type == "cpu":
            page = self.cb_config.get("page_size", CPU_PAGE_SIZE)
            per_seq = [math.ceil((len(ids) + params.max_new_tokens) / page) + 1 for ids in enc]
            fields.update(page_size=page, num_blocks=sum(per_seq) * n + 2, max_batch_tokens=CPU_MAX_BATCH_TOKENS)
        fields.update(self.cb_config)
        return ContinuousBatchingConfig(**fields)

    @staticmethod
    def _collect(request_id: str, n: int, results: dict[str, Any]) -> list[tuple[list[int], list[float]]]:
        # The engine forks the n - 1 other samples of a prompt as `<id>__child#<i>` after prefilling it once.
        ids = [f"{request_id}__child#{i}" for i in range(n - 1)] + [request_id]
        out = []
        for rid in ids:
            r = results.get(rid)
            if r is None or r.error is not None:
                why = "no result" if r is None else r.error
                raise RuntimeError(f"continuous batching: request {rid} failed ({why})")
            out.append((list(r.generated_tokens), [float(x) for x in r.logprobs]))
        return out

    def _completion(self, ids: list[int], lps: list[float], params: SamplingParams) -> Completion:
        # Without engine log-probs (rescored below), placeholders keep the lengths aligned while the cut runs.
        lps = lps if len(lps) == len(ids) else [math.nan] * len(ids)
        comp = super()._completion(ids, lps, params)
        if comp.finish_reason == "length" and ids and ids[-1] in self.stop_token_ids(params.stop):
            comp.finish_reason = "stop"  # a stop token whose text the cut's decoding did not keep (never seen)
        return comp

    # ---- stop tokens and rescoring -------------------------------------------------------------------------------

    def stop_token_ids(self, stop: Sequence[str]) -> set[int]:
        """Vocabulary ids whose own decoded text holds one of `stop` (extra end-of-sequence ids for the engine)."""
        key = tuple(stop)
        if not key:
            return set()
        if key not in self._stop_ids:
            if self._vocab_texts is None:
                ids = [[i] for i in range(len(self.tokenizer))]
                self._vocab_texts = self.tokenizer.batch_decode(ids, skip_special_tokens=True)
            self._stop_ids[key] = {i for i, t in enumerate(self._vocab_texts) if any(s in t for s in key)}
        return self._stop_ids[key]

    @torch.inference_mode()
    def _rescore(self, todo: list[tuple[list[int], Completion]]) -> None:
        """Replace each completion's log-probs by a teacher-forced forward's (raw distribution, float32)."""
        model = self.model
        device = next(model.parameters()).device
        pad = self.tokenizer.pad_token_id or 0
        was_training = model.training
        model.eval()
        try:
            order = sorted(range(len(todo)), key=lambda k: len(todo[k][0]) + len(todo[k][1].token_ids))
            at = 0
            while at < len(order):
                width = len(todo[order[at]][0]) + len(todo[order[at]][1].token_ids)
                rows = [order[at]]
                at += 1
                while at < len(order):  # sorted by length: the next row is the widest so far
                    nxt = len(todo[order[at]][0]) + len(todo[order[at]][1].token_ids)
                    if (len(rows) + 1) * nxt > self.rescore_tokens:
                        break
                    rows.append(order[at])
                    width = nxt
                    at += 1
                self._rescore_batch([todo[k] for k in rows], width, pad, device)
        finally:
            model.train(was_training)

    def _rescore_batch(self, batch: list[tuple[list[int], Completion]], width: int, pad: int, device) -> None:
        ids = torch.full((len(batch), width), pad, dtype=torch.long)
        attn = torch.zeros_like(ids)
        span = torch.zeros((len(batch), max(width - 1, 1)), dtype=torch.bool)
        for i, (prompt, comp) in enumerate(batch):  # right padding; position t predicts token t + 1
            seq = prompt + comp.token_ids
            ids[i, : len(seq)] = torch.tensor(seq)
            attn[i, : len(seq)] = 1
            span[i, len(prompt) - 1 : len(seq) - 1] = True
        keep = span.any(0).nonzero().squeeze(1)
        if keep.numel() == 0:
            return
        # Only the positions that predict a completion token get logits (as the trainer's forward does).
        logits = self.model(input_ids=ids.to(device), attention_mask=attn.to(device), logits_to_keep=keep.to(device))
        targets = ids[:, 1:][:, keep].to(device)
        lp = torch.gather(logits.logits.float().log_softmax(-1), -1, targets.unsqueeze(-1)).squeeze(-1).cpu()
        at = {int(p): j for j, p in enumerate(keep.tolist())}
        for i, (prompt, comp) in enumerate(batch):
            start = len(prompt) - 1
            comp.logprobs = [float(lp[i, at[start + t]]) for t in range(len(comp.token_ids))]

    def _warn_nonempty(self) -> None:
        if not self._warned_nonempty:
            warnings.warn(
                "rollout backend 'hf-batching' cannot suppress a block's first token per request: calls with "
                "skeleton_nonempty_blocks run through the hf backend's KV-cached loop on the same model",
                stacklevel=3,
            )
            self._warned_nonempty = True
