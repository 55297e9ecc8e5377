"""The DeepSpeed policy trainer: one REINFORCE++ update over the six groups' sequences.

One optimiser step per call, over any number of micro-batches: DeepSpeed runs in unmanaged gradient-accumulation
mode (each backward accumulates, `step()` is the boundary), so the update batch size may change every iteration.
Each rank's micro-batch loss is sum(token losses) / tokens of the whole batch * world size, which undoes the
data-parallel gradient averaging: the update is the same token-mean whatever the number of ranks or micro-batches.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import torch

from azr_core.policy.config import ModelConfig, TrainerConfig
from azr_core.policy.model import load_policy
from azr_core.policy.trainer.batch import collate, spread
from azr_core.policy.trainer.loss import combine_loss, entropy_from_logits, policy_loss_terms, token_logprobs
from azr_core.policy.trainer.prefix import forward_shared, supports_prefix
from azr_core.policy.trainer.records import SequenceRecord, free_port, split_micro_batches
from azr_core.policy.trainer.shm import release_workspace


def ensure_distributed_env(master_port: int | None = None) -> None:
    """Single-process case: set the variables the launcher would, else DeepSpeed goes looking for mpi4py."""
    if "RANK" in os.environ and "WORLD_SIZE" in os.environ:
        return
    os.environ.update(RANK="0", LOCAL_RANK="0", WORLD_SIZE="1", LOCAL_SIZE="1", MASTER_ADDR="127.0.0.1")
    os.environ["MASTER_PORT"] = str(master_port or free_port())


def build_ds_config(cfg: TrainerConfig, *, cuda: bool) -> dict[str, Any]:
    """The JSON config of `cfg.deepspeed_config`, with the settings this trainer owns filled in."""
    ds = json.loads(Path(cfg.deepspeed_config).read_text())
    ds.pop("train_batch_size", None)
    ds["train_micro_batch_size_per_gpu"] = cfg.micro_batch_size
    ds["gradient_accumulation_steps"] = 1
    ds["managed_gradient_accumulation"] = False
    ds["gradient_clipping"] = cfg.grad_clip
    ds["zero_allow_untested_optimizer"] = True  # torch's AdamW: DeepSpeed's own compiles for ~45 s on CPU
    zero = ds.setdefault("zero_optimization", {})
    if cfg.zero_stage is not None:
        zero["stage"] = cfg.zero_stage
    ds["bf16"] = {"enabled": bool(cuda)}
    ds.pop("fp16", None)
    ds.setdefault("steps_per_print", 10**9)
    return ds


def make_lr_lambda(cfg: TrainerConfig):
    """Multiplier of the base lr at step s: linear warm-up, then constant, linear or cosine decay."""

    def factor(step: int) -> float:
        if step < cfg.warmup_steps:
            return (step + 1) / (cfg.warmup_steps + 1)
        progress = min(1.0, (step - cfg.warmup_steps) / max(1, cfg.total_steps - cfg.warmup_steps))
        if cfg.lr_schedule == "linear":
            return 1.0 - progress
        if cfg.lr_schedule == "cosine":
            return 0.5 * (1.0 + math.cos(math.pi * progress))
        return 1.0

    return factor


class PolicyTrainer:
    """A DeepSpeed engine around the policy model; one instance per rank."""

    def __init__(
        self,
        model_cfg: ModelConfig,
        cfg: TrainerConfig,
        *,
        model: torch.nn.Module | None = None,
        tokenizer=None,
        progress=print,
    ) -> None:
        import deepspeed

        ensure_distributed_env(cfg.master_port if "MASTER_PORT" not in os.environ else None)
        self.cfg, self.model_cfg = cfg, model_cfg
        cuda = torch.cuda.is_available()
        self.local_rank = int(os.environ.get("LOCAL_RANK", "0"))
        self.device = torch.device("cuda", self.local_rank) if cuda else torch.device("cpu")
        if cuda:
            torch.cuda.set_device(self.device)
        deepspeed.init_distributed(dist_backend="nccl" if cuda else "gloo")
        release_workspace()  # else its /dev/shm file (RAM) outlives the process
        torch.manual_seed(cfg.seed + int(os.environ.get("RANK", "0")))  # ranks must not sample alike
        if model is None:
            model, tokenizer = load_policy(model_cfg, device=self.device, progress=progress)
        self.tokenizer = tokenizer
        model = model.to(self.device)
        if cfg.gradient_checkpointing:
            model.gradient_checkpointing_enable()
        model.train()
        self.ref_model = self._reference_copy(model) if cfg.kl_coef > 0 else None
        params = [p for p in model.parameters() if p.requires_grad]
        optimizer = torch.optim.AdamW(
            params, lr=cfg.lr, betas=cfg.betas, eps=cfg.eps, weight_decay=cfg.weight_decay, fused=cuda or None
        )
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, make_lr_lambda(cfg))
        self.ds_config = build_ds_config(cfg, cuda=cuda)
        self.engine, self.optimizer, _, self.scheduler = deepspeed.initialize(
            model=model, optimizer=optimizer, lr_scheduler=scheduler, config=self.ds_config
        )
        self.rank = self.engine.global_rank
        self.world_size = self.engine.world_size
        self.zero_stage = self.engine.zero_optimization_stage()
        self._fp32_grad_norm: float | None = None
        if self.zero_stage == 0 and not cuda:
            self._record_fp32_clip_norm()
        self.pad_id = self._pad_id()
        self._share_prefix = cfg.shared_prefix_min_tokens > 0 and supports_prefix(self.module)

    def _record_fp32_clip_norm(self) -> None:
        # ZeRO-0 in fp32 (one CPU rank: the cpu-tiny profile) clips through the engine's clip_fp32_gradients, which
        # drops the norm it computes, so get_global_grad_norm() stays None. Same call, with the norm kept.
        from deepspeed.runtime.utils import clip_grad_norm_

        engine = self.engine

        def clip_and_record() -> None:
            norm = clip_grad_norm_(engine.module.parameters(), max_norm=engine.gradient_clipping(), mpu=engine.mpu)
            self._fp32_grad_norm = float(norm)

        engine.clip_fp32_gradients = clip_and_record

    @property
    def module(self) -> torch.nn.Module:
        """The HF model inside the engine (what generation and export use)."""
        return self.engine.module

    @property
    def step(self) -> int:
        """Optimiser steps taken so far (restored by `load_checkpoint`)."""
        return int(self.engine.global_steps)

    def _pad_id(self) -> int:
        pad = getattr(self.tokenizer, "pad_token_id", None) if self.tokenizer is not None else None
        if pad is None:
            pad = getattr(self.module.config, "pad_token_id", None) or getattr(self.module.config, "eos_token_id", 0)
        return int(pad[0] if isinstance(pad, list) else pad or 0)

    @staticmethod
    def _reference_copy(model: torch.nn.Module) -> torch.nn.Module:
        import copy

        ref = copy.deepcopy(model).eval()
        for p in ref.parameters():
            p.requires_grad_(False)
        return ref

    # ---- batches -------------------------------------------------------------------------------------------------

    def _collate(self, records: Sequence[SequenceRecord]) -> dict[str, torch.Tensor]:
        return collate(records, self.pad_id, self.device, share_prefix=self._share_prefix)

    def _forward(self, model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        shared = int(batch["shared"])
        if shared and shared >= self.cfg.shared_prefix_min_tokens:  # the rows' common prompt prefix once, then each row
            return forward_shared(model, self.module.config, batch["input_ids"], batch["attention_mask"],
                                  batch["keep"], shared)  # fmt: skip
        out = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], logits_to_keep=batch["keep"])
        return out.logits  # (B, K, V): the kept positions only

    def micro_batches(self, records: Sequence[SequenceRecord], count: int | None = None) -> list[list[SequenceRecord]]:
        """Split into micro-batches, each within one run of consecutive records of one group (a group's prompts share
        their opening, which the forward then runs once); `count` pads with empty ones so every rank runs the same
        number of backwards. The loss is a token mean over the whole batch, so the split does not change the update."""
        chunks = split_micro_batches(records, self.cfg.micro_batch_size)
        while count is not None and len(chunks) < count:
            chunks.append([])
        return chunks

    def _dummy(self) -> list[SequenceRecord]:
        return [SequenceRecord([self.pad_id], [self.pad_id], [0.0], 0.0, "")]

    # ---- the update ----------------------------------------------------------------------------------------------

    def train_step(
        self,
        records: Sequence[SequenceRecord],
        *,
        total_tokens: int | None = None,
        num_micro_batches: int | None = None,
    ) -> dict[str, float]:
        """One optimiser step on this rank's share of the batch; returns this rank's metric sums.

        `total_tokens` is the completion-token count of the whole batch over all ranks (default: this shard's, which
        is right for one rank); `num_micro_batches` is the most micro-batches any rank has. Merge the sums of all
        ranks with `summarize`.
        """
        total = total_tokens if total_tokens is not None else sum(r.n_sampled for r in records)
        if total == 0:  # nothing to learn from (every rank sees the same global total, so all skip together)
            return {"skipped": 1.0, "sequences": float(len(records)), "tokens": 0.0}
        sums: dict[str, float] = {}
        # At least one (maybe dummy) micro-batch: a step on no records still needs gradients, zero ones, so AdamW
        # moves on its moments as it would after a zero-loss backward.
        for chunk in self.micro_batches(records, max(1, num_micro_batches or 0)):
            weight = float(self.world_size) if chunk else 0.0  # an empty micro-batch still joins the collectives
            batch = self._collate(chunk or self._dummy())
            logits = self._forward(self.engine, batch)
            logprobs = token_logprobs(logits, batch["targets"])
            # The entropy pass costs a full softmax over the vocabulary: only paid when the bonus is on.
            entropy = entropy_from_logits(logits) if self.cfg.entropy_coef else None
            ref = None
            if self.ref_model is not None:
                with torch.no_grad():
                    ref = token_logprobs(self._forward(self.ref_model, batch), batch["targets"])
            terms = policy_loss_terms(
                logprobs,
                batch["old_logprobs"],
                batch["advantages"],
                batch["mask"],
                clip_ratio=self.cfg.clip_ratio,
                entropy=entropy,
                ref_logprobs=ref,
            )
            loss = combine_loss(terms, total, entropy_coef=self.cfg.entropy_coef, kl_coef=self.cfg.kl_coef)
            self.engine.backward(loss * weight, scale_wrt_gas=False)
            if chunk:
                _accumulate(sums, chunk, terms, loss.item() if total else 0.0)
                # How far the sampler's log-probs (the old ones) are from this model's: before the iteration's first
                # step, the sampler/trainer gap that run_update checks.
                gap = (logprobs.detach() - batch["old_logprobs"]).abs() * batch["mask"]
                sums["logprob_gap_sum"] = sums.get("logprob_gap_sum", 0.0) + float(gap.sum().item())
            del logits, logprobs, entropy, terms, loss
        self._fp32_grad_norm = None
        self.engine.step()
        norm = self.engine.get_global_grad_norm()
        norm = self._fp32_grad_norm if norm is None else norm
        sums["grad_norm"] = float(norm) if norm is not None else float("nan")
        sums["step"] = float(self.step)
        sums["lr"] = float(self.scheduler.get_last_lr()[0]) if self.scheduler is not None else self.cfg.lr
        return sums

    @torch.no_grad()
    def compute_logprobs(self, records: Sequence[SequenceRecord]) -> list[list[float]]:
        """Current log-probs of each record's completion tokens (same order), in eval mode."""
        was_training = self.module.training
        self.module.eval()
        out: list[list[float]] = []
        try:
            for chunk in self.micro_batches(records):
                batch = self._collate(chunk)
                lp = token_logprobs(self._forward(self.engine, batch), batch["targets"])
                lp = spread(lp, batch["keep"], batch["input_ids"].shape[1] - 1).cpu()
                for i, r in enumerate(chunk):
                    start = len(r.prompt_token_ids) - 1
                    out.append(lp[i, start : start + len(r.completion_token_ids)].tolist())
        finally:
            self.module.train(was_training)
        return out

    def named_weights(self) -> Iterator[tuple[str, torch.Tensor]]:
        """Full, unsharded parameters and buffers by HF name (ZeRO-3 gathers each one in turn)."""
        if self.zero_stage == 3:
            import deepspeed

            for name, p in self.module.named_parameters():
                with deepspeed.zero.GatheredParameters([p]):
                    yield name, p.detach().clone()
        else:
            for name, p in self.module.named_parameters():
                yield name, p.detach()
        for name, b in self.module.named_buffers():
            yield name, b.detach()

    def save_checkpoint(self, path: str | Path) -> Path:
        """HF weights + optimiser + scheduler + RNG state into `path` (every rank must call)."""
        from azr_core.policy.trainer.checkpoint import save_checkpoint

        return save_checkpoint(self, Path(path))

    def load_checkpoint(self, path: str | Path) -> None:
        """Restore everything `save_checkpoint` wrote (every rank must call)."""
        from azr_core.policy.trainer.checkpoint import load_checkpoint

        load_checkpoint(self, Path(path))


def _accumulate(sums: dict[str, float], chunk: list[SequenceRecord], terms, loss: float) -> None:
    def add(key: str, value: float) -> None:
        sums[key] = sums.get(key, 0.0) + value

    add("loss", loss)
    add("tokens", float(sum(r.n_sampled for r in chunk)))
    add("sequences", float(len(chunk)))
    add("pg_loss_sum", float(terms.pg.sum().item()))
    add("ratio_sum", float(terms.ratio.sum().item()))
    add("clipped_sum", float(terms.clipped.sum().item()))
    if terms.entropy is not None:
        add("entropy_sum", float(terms.entropy.sum().item()))
    if terms.kl is not None:
        add("kl_sum", float(terms.kl.sum().item()))
    per_seq_tokens = terms.pg.new_tensor([r.n_sampled for r in chunk])
    clipped_per_seq = terms.clipped.sum(1)
    for i, r in enumerate(chunk):
        g = r.group or "all"
        add(f"group/{g}/sequences", 1.0)
        add(f"group/{g}/tokens", float(per_seq_tokens[i].item()))
        add(f"group/{g}/advantage_sum", float(r.advantage))
        add(f"group/{g}/clipped_sum", float(clipped_per_seq[i].item()))
