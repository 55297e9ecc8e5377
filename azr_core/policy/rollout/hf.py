"""Hugging Face backend on CPU or GPU: the KV-cached sampling loop of decode.py by default (each prompt prefilled
once, an answer's blocks continued from the cache), or batched, left-padded `model.generate` (engine "generate", and
always under ZeRO-3, whose ranks must run every forward together).

With `generate`, sampling log-probs are recorded by a logits processor that runs before temperature and top-p
(transformers applies custom processors first), so it sees the raw logits and keeps only one (batch, vocab) step at a
time instead of the whole (steps, batch, vocab) history that `output_logits=True` would hold.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable, Sequence

import torch

from azr_core.policy.rollout.base import (
    Completion,
    PromptOutput,
    RolloutBackend,
    SamplingParams,
    Script,
    call_seed,
    cut_text_at_stop,
    truncate_at_stop,
)


class _LogprobRecorder:
    """Logits processor: log-prob of each sampled token under the raw distribution, one step late."""

    def __init__(self) -> None:
        self.prev: torch.Tensor | None = None  # (B, vocab) log-softmax of the last step
        self.steps: list[torch.Tensor] = []  # each (B,)

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        if self.prev is not None:  # the token sampled from `prev` is now the last input id
            self.steps.append(self.prev.gather(1, input_ids[:, -1:]).squeeze(1))
        self.prev = torch.log_softmax(scores.float(), dim=-1)
        return scores

    def finish(self, sequences: torch.Tensor) -> torch.Tensor:
        """(B, new_tokens) log-probs, given the final sequences."""
        if self.prev is not None:
            self.steps.append(self.prev.gather(1, sequences[:, -1:]).squeeze(1))
            self.prev = None
        return torch.stack(self.steps, dim=1) if self.steps else sequences.new_zeros((sequences.shape[0], 0)).float()


class _SuppressFirst:
    """Logits processor: the first new token may not be one of `ids`. Placed after the recorder, so the recorded
    log-probs stay the model's own distribution, which is what the trainer recomputes."""

    def __init__(self, ids: list[int], prompt_width: int) -> None:
        self.ids = torch.tensor(ids, dtype=torch.long)
        self.width = prompt_width

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        if input_ids.shape[1] == self.width:
            scores = scores.clone()
            scores[:, self.ids.to(scores.device)] = float("-inf")
        return scores


class HFBackend(RolloutBackend):
    """Rollouts through `model.generate`.

    `shares_trainer_weights=True` when the model object is the trainer's own module (inside a worker): weight sync
    is then a no-op, since generation already reads the updated parameters.
    """

    name = "hf"

    def __init__(
        self,
        model: torch.nn.Module,
        tokenizer,
        *,
        batch_size: int = 16,
        shares_trainer_weights: bool = False,
        synced_gpus: bool = False,
        engine: str = "cached",
        prefix_groups: bool = True,
    ) -> None:
        if engine not in ("cached", "generate"):
            raise ValueError(f"hf rollout engine {engine!r}: 'cached' or 'generate'")
        self.model = model
        self.tokenizer = tokenizer
        self.batch_size = batch_size
        self.shares_trainer_weights = shares_trainer_weights
        self.synced_gpus = synced_gpus  # ZeRO-3: every rank must run forward until all are done
        if tokenizer.pad_token_id is None:
            tokenizer.pad_token = tokenizer.eos_token
        self.eos_ids = _eos_ids(model, tokenizer)
        self._calls = 0  # generate calls so far: with a fixed seed, each call samples its own stream
        self._empty_starts: list[int] | None = None  # token ids a `nonempty` completion may not start with
        # ZeRO-3 generation is collective (every rank runs each forward until all are done): `generate` does that.
        self.engine = "generate" if synced_gpus else engine
        self._sampler = None
        self.prefix_groups = prefix_groups  # cached engine: prompts sharing a prefix decode against one copy of it

    def generate(self, prompts: Sequence[str], params: SamplingParams) -> list[PromptOutput]:
        """Sample `params.n` completions per prompt (`batch_size` sequences decoded together)."""
        if self.engine == "cached":
            return self._generate_cached(prompts, params, [None] * len(prompts))
        return self._generate_padded(prompts, params)

    def generate_scripted(
        self, prompts: Sequence[str], params: SamplingParams, scripts: Sequence[Script]
    ) -> list[PromptOutput]:
        """Scripted answers continued from the KV cache (engine 'generate': one re-prefilled call per block)."""
        if self.engine == "cached":
            return self._generate_cached(prompts, params, list(scripts))
        return super().generate_scripted(prompts, params, scripts)

    def _generate_cached(self, prompts, params: SamplingParams, scripts) -> list[PromptOutput]:
        from azr_core.policy.rollout.decode import Unsupported

        try:
            return self._sample_cached(prompts, params, scripts)
        except Unsupported as exc:  # e.g. sliding-window layers: the padded path serves every model
            warnings.warn(f"hf rollout engine 'cached' cannot serve this model ({exc}): using 'generate'", stacklevel=2)
            self.engine = "generate"
            if any(sc is not None for sc in scripts):
                return super().generate_scripted(prompts, params, scripts)
            return self._generate_padded(prompts, params)

    def _sample_cached(self, prompts, params: SamplingParams, scripts) -> list[PromptOutput]:
        from azr_core.policy.rollout.decode import CachedSampler
        from azr_core.policy.rollout.prefix_groups import MIN_SAVING

        if self._sampler is None:
            self._sampler = CachedSampler(
                self.model, self.tokenizer, eos_ids=self.eos_ids, empty_starts=self.empty_starts,
                max_rows=self.batch_size, min_saving=MIN_SAVING if self.prefix_groups else None,
            )  # fmt: skip
        self._seed(params)
        was_training = self.model.training
        self.model.eval()
        try:
            sampled = self._sampler.sample(prompts, params, scripts)
        finally:
            self.model.train(was_training)
        return [PromptOutput(p, ids, comps) for p, (ids, comps) in zip(prompts, sampled, strict=True)]

    def _seed(self, params: SamplingParams) -> None:
        if params.seed is not None:
            # A fresh stream per call, derived from the seed: reseeding every call with the seed itself replays the
            # same random numbers, so repeated rounds of one prompt gave identical completions.
            torch.manual_seed(call_seed(params.seed, self._calls))
        self._calls += 1

    def _generate_padded(self, prompts: Sequence[str], params: SamplingParams) -> list[PromptOutput]:
        """`model.generate` on left-padded batches of `batch_size` sequences."""
        self._seed(params)
        enc = [self.tokenizer(p)["input_ids"] for p in prompts]
        outputs = [PromptOutput(p, list(ids)) for p, ids in zip(prompts, enc, strict=True)]
        # One row per (prompt, sample); longest prompts first so each batch pads little.
        rows = sorted(((i, j) for i in range(len(prompts)) for j in range(params.n)), key=lambda r: -len(enc[r[0]]))
        results: dict[tuple[int, int], Completion] = {}
        was_training = self.model.training
        self.model.eval()
        try:
            for start in range(0, len(rows), self.batch_size):
                chunk = rows[start : start + self.batch_size]
                for row, comp in zip(chunk, self._generate_batch([enc[i] for i, _ in chunk], params), strict=True):
                    results[row] = comp
        finally:
            self.model.train(was_training)
        for (i, _j), comp in sorted(results.items()):
            outputs[i].completions.append(comp)
        return outputs

    @torch.inference_mode()
    def _generate_batch(self, prompt_ids: list[list[int]], params: SamplingParams) -> list[Completion]:
        pad = self.tokenizer.pad_token_id
        width = max(len(p) for p in prompt_ids)
        device = next(self.model.parameters()).device
        input_ids = torch.full((len(prompt_ids), width), pad, dtype=torch.long)
        attention = torch.zeros_like(input_ids)
        for r, ids in enumerate(prompt_ids):  # left padding: the new tokens line up at the right edge
            input_ids[r, width - len(ids) :] = torch.tensor(ids)
            attention[r, width - len(ids) :] = 1
        recorder = _LogprobRecorder()
        sample = params.temperature > 0
        kwargs = dict(temperature=params.temperature, top_p=params.top_p, top_k=0) if sample else {}
        processors: list = [recorder]
        if params.nonempty:  # after the recorder (transformers' own begin_suppress_tokens runs before it)
            processors.append(_SuppressFirst(self.empty_starts(), width))
        sequences = self.model.generate(
            input_ids=input_ids.to(device),
            attention_mask=attention.to(device),
            max_new_tokens=params.max_new_tokens,
            do_sample=sample,
            logits_processor=processors,
            stop_strings=list(params.stop) or None,
            tokenizer=self.tokenizer if params.stop else None,
            pad_token_id=pad,
            eos_token_id=sorted(self.eos_ids),
            synced_gpus=self.synced_gpus,
            **kwargs,
        )
        new = sequences[:, width:].cpu()
        logprobs = recorder.finish(sequences).cpu()
        return [self._completion(new[r].tolist(), logprobs[r].tolist(), params) for r in range(len(prompt_ids))]

    def _completion(self, ids: list[int], lps: list[float], params: SamplingParams) -> Completion:
        cut = next((k + 1 for k, t in enumerate(ids) if t in self.eos_ids), None)
        finish = "stop" if cut is not None else "length"
        ids = ids[:cut] if cut is not None else ids
        keep, hit = truncate_at_stop(self._decode, ids, params.stop)
        if hit:
            ids, finish = ids[:keep], "stop"
        text = cut_text_at_stop(self._decode(ids), params.stop) if hit else self._decode(ids)
        return Completion(text=text, token_ids=ids, logprobs=lps[: len(ids)], finish_reason=finish)

    def empty_starts(self) -> list[int]:
        """Token ids that would leave a block empty if sampled first: end of sequence, whitespace only, or a
        backtick after optional whitespace (the start of a closing fence). Computed once from the vocabulary."""
        if self._empty_starts is None:
            vocab = len(self.tokenizer)
            texts = self.tokenizer.batch_decode([[i] for i in range(vocab)], skip_special_tokens=False)
            self._empty_starts = sorted(
                {i for i, t in enumerate(texts) if not t.strip() or t.lstrip().startswith("`")} | self.eos_ids
            )
        return self._empty_starts

    def _decode(self, ids: list[int]) -> str:
        return self.tokenizer.decode(ids, skip_special_tokens=True)

    @torch.no_grad()
    def sync_weights(self, named_tensors: Iterable[tuple[str, torch.Tensor]]) -> None:
        """Copy the trainer's tensors into the model in place (a no-op when the weights are shared)."""
        if self.shares_trainer_weights:
            return
        params = dict(self.model.named_parameters())
        params.update(dict(self.model.named_buffers()))
        for name, tensor in named_tensors:
            if name not in params:
                raise KeyError(f"sync_weights: the rollout model has no tensor named {name!r}")
            params[name].copy_(tensor.to(params[name].device, params[name].dtype))


def _eos_ids(model: torch.nn.Module, tokenizer) -> set[int]:
    ids = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    ids = set(ids if isinstance(ids, list) else [ids] if ids is not None else [])
    if tokenizer.eos_token_id is not None:
        ids.add(tokenizer.eos_token_id)
    return ids
