"""vLLM rollout backend: one engine for the whole run, weights replaced in place after every trainer step.

Written against vLLM's documented offline API: `LLM(..., worker_extension_cls=...)` adds our methods to every
vLLM worker and `LLM.collective_rpc(method, args=...)` calls them there; inside, the model runner's
`model.load_weights(weights=[(name, tensor), ...])` takes HF-named tensors, as in vLLM's RLHF examples. Nothing is
reloaded from disk. The prefix cache is reset after a sync: cached KV blocks were computed with the old weights.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import torch

from azr_core.policy.config import RolloutConfig
from azr_core.policy.rollout.base import Completion, PromptOutput, RolloutBackend, SamplingParams

EXTENSION = "azr_core.policy.rollout.vllm.WeightSyncExtension"
_BUCKET_BYTES = 256 << 20  # weights travel in buckets so a large model never needs a second full copy in flight


class WeightSyncExtension:
    """Mixed into vLLM's worker class (by qualified name); runs inside each vLLM worker process."""

    model_runner: Any  # provided by the vLLM worker this class is mixed into

    def azr_load_weights(self, weights: list[list]) -> int:
        """Load HF-named tensors ([name, dtype, shape, bytes] each) into the served model in place."""
        model = self.model_runner.model
        device = next(model.parameters()).device
        model.load_weights(weights=[(name, _unpack(d, s, b).to(device)) for name, d, s, b in weights])
        return len(weights)

    def azr_weight_checksum(self, name: str) -> float:
        """Sum of one served tensor: a cheap probe that a sync really landed (tests use it)."""
        params = dict(self.model_runner.model.named_parameters())
        return float(params[name].float().sum().item()) if name in params else float("nan")


class VLLMBackend(RolloutBackend):
    """Rollouts through a long-lived `vllm.LLM` engine."""

    name = "vllm"

    def __init__(self, model_path: str, cfg: RolloutConfig, *, dtype: str = "auto", seed: int = 0, **engine_kwargs):
        from vllm import LLM

        self.llm = LLM(
            model=model_path,
            dtype=dtype,
            seed=seed,
            gpu_memory_utilization=cfg.gpu_memory_utilization,
            max_model_len=cfg.max_model_len,
            worker_extension_cls=EXTENSION,
            enable_prefix_caching=True,
            **engine_kwargs,
        )

    def generate(self, prompts: Sequence[str], params: SamplingParams) -> list[PromptOutput]:
        """Sample `params.n` completions per prompt in one engine call."""
        from vllm import SamplingParams as VLLMSamplingParams

        sp = VLLMSamplingParams(
            n=params.n,
            temperature=params.temperature,
            top_p=params.top_p,
            max_tokens=params.max_new_tokens,
            stop=list(params.stop) or None,
            include_stop_str_in_output=True,  # the same text the hf backend returns
            logprobs=0,  # the sampled token's log-prob only
            seed=params.seed,
        )
        results = self.llm.generate(list(prompts), sp, use_tqdm=False)
        return [
            PromptOutput(prompt, list(r.prompt_token_ids), [_completion(c) for c in r.outputs])
            for prompt, r in zip(prompts, results, strict=True)
        ]

    def sync_weights(self, named_tensors: Iterable[tuple[str, torch.Tensor]]) -> None:
        """Send the trainer's tensors to every vLLM worker in buckets, then drop KV computed with the old ones."""
        bucket: list[tuple[str, torch.Tensor]] = []
        size = 0
        for name, tensor in named_tensors:
            packed = _pack(tensor)
            bucket.append([name, *packed])
            size += len(packed[2])
            if size >= _BUCKET_BYTES:
                self.llm.collective_rpc("azr_load_weights", args=(bucket,))
                bucket, size = [], 0
        if bucket:
            self.llm.collective_rpc("azr_load_weights", args=(bucket,))
        self.llm.reset_prefix_cache()

    def weight_checksum(self, name: str) -> float:
        """Sum of a served tensor as the engine holds it (first worker)."""
        return float(self.llm.collective_rpc("azr_weight_checksum", args=(name,))[0])

    def close(self) -> None:
        """Drop the engine (vLLM frees its workers when the LLM object goes)."""
        llm = getattr(self, "llm", None)
        self.llm = None
        del llm


def _pack(t: torch.Tensor) -> tuple[str, list[int], bytes]:
    # collective_rpc serialises its arguments with msgpack, which rebuilds a nested tensor as a plain list: send
    # (dtype, shape, raw bytes) instead, which every transport carries unchanged.
    t = t.detach().to("cpu").contiguous()
    return str(t.dtype).removeprefix("torch."), list(t.shape), t.reshape(-1).view(torch.uint8).numpy().tobytes()


def _unpack(dtype: str, shape: list[int], data: bytes) -> torch.Tensor:
    raw = torch.frombuffer(bytearray(data), dtype=torch.uint8)
    return raw.view(getattr(torch, dtype)).reshape(shape)


def _completion(out: Any) -> Completion:
    ids = list(out.token_ids)
    # logprobs=0: each position holds a dict with at least the sampled token's Logprob.
    lps = [float(step[tok].logprob) for step, tok in zip(out.logprobs or [], ids, strict=False)]
    return Completion(
        text=out.text,
        token_ids=ids,
        logprobs=lps,
        finish_reason="stop" if out.finish_reason == "stop" else "length",
    )
