"""Rollout backends and the `auto` choice between them.

`auto` is vLLM where both a CUDA GPU and the vllm package exist; on a CUDA GPU without vllm, transformers' continuous
batching (`hf-batching`); on CPU the Hugging Face backend's own KV-cached loop (`hf`).
"""

from __future__ import annotations

import importlib.util

from azr_core.policy.config import ModelConfig, RolloutConfig
from azr_core.policy.rollout.base import Completion, PromptOutput, RolloutBackend, SamplingParams

__all__ = [
    "Completion",
    "PromptOutput",
    "RolloutBackend",
    "SamplingParams",
    "make_backend",
    "resolve_backend_name",
    "vllm_available",
]


def vllm_available() -> bool:
    """True when the vllm package is importable (looked up, not imported: importing it is slow)."""
    return importlib.util.find_spec("vllm") is not None


def resolve_backend_name(cfg: RolloutConfig, *, cuda: bool | None = None) -> str:
    """'hf', 'hf-batching' or 'vllm' for `cfg.backend` (`cuda`: a test hook, else whether torch sees a CUDA GPU); an
    explicit 'vllm' without the package is an error, not a fallback."""
    if cuda is None:
        import torch  # here, not at the top: the package's wire types (base.py) stay importable without torch

        cuda = torch.cuda.is_available()
    if cfg.backend == "auto":
        if not cuda:
            return "hf"
        return "vllm" if vllm_available() else "hf-batching"
    if cfg.backend == "vllm" and not vllm_available():
        raise RuntimeError("rollout backend 'vllm' needs the vllm package: pip install 'azr[gpu]' (CUDA GPU only)")
    return cfg.backend


def make_backend(model_cfg: ModelConfig, cfg: RolloutConfig, *, device: str | None = None, progress=print):
    """A standalone backend (its own copy of the weights) for `model_cfg`, chosen by `cfg.backend`."""
    from azr_core.policy.model import load_policy, resolve_dtype, resolve_model_path

    name = resolve_backend_name(cfg)
    if name == "vllm":
        from azr_core.policy.rollout.vllm import VLLMBackend

        dtype = str(resolve_dtype(model_cfg.dtype, "cuda")).removeprefix("torch.")  # vLLM: bf16 unless told
        return VLLMBackend(resolve_model_path(model_cfg, progress=progress), cfg, dtype=dtype, seed=cfg.seed or 0)
    import torch

    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    model, tokenizer = load_policy(model_cfg, device=device, progress=progress)
    if name == "hf-batching":
        from azr_core.policy.rollout.batching import BatchingBackend

        return BatchingBackend(model, tokenizer, batch_size=cfg.batch_size)
    from azr_core.policy.rollout.hf import HFBackend

    return HFBackend(model, tokenizer, batch_size=cfg.batch_size, engine=cfg.hf_engine)
