"""The update schedule of one self-play iteration: old log-probs recomputed, then one optimiser step per mini-batch.

As in the reference (veRL's actor under AZR's `coder7b.sh`): the iteration's sequences, concatenated group by group,
are split in order into mini-batches of `mini_batch_size`, one pass over them; by default one mini-batch, the whole
batch (the script's `ppo_mini_batch_size=128` is overridden to 384 by `main_azr_ppo.py`: one step per iteration).
The old log-probs are recomputed by the trainer's model before the first step, so that the ratio clip measures how
far the policy moved within the iteration, not how the sampler's numerics differ from the trainer's.

A sequence whose advantage is 0 adds nothing to a pure policy-gradient loss, so with no entropy bonus and no KL term
it is left out of the forward and backward passes; the mini-batch's token count still includes it, so the token-mean
loss and its gradient are exactly those of the whole mini-batch. A mini-batch left empty still takes its optimiser
step (on zero gradients: AdamW's moments keep moving the weights, as they would in the reference).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, replace

from azr_core.policy.config import TrainerConfig
from azr_core.policy.interface import Trainable
from azr_core.policy.trainer.records import SequenceRecord


@dataclass(frozen=True)
class MiniBatch:
    """One optimiser step: the sequences that run forward/backward, and the token count the loss is averaged over."""

    records: list[SequenceRecord]
    total_tokens: int
    sequences: int  # in the mini-batch, skipped ones included


def exact_skip(cfg: TrainerConfig) -> bool:
    """Whether zero-advantage sequences can be left out without changing the update."""
    return cfg.skip_zero_advantage and cfg.entropy_coef == 0 and cfg.kl_coef == 0


def plan_update(records: Sequence[SequenceRecord], cfg: TrainerConfig) -> list[MiniBatch]:
    """Split `records` (in order) into the iteration's mini-batches; drop zero-advantage sequences where exact.

    >>> from azr_core.policy.config import TrainerConfig
    >>> recs = [SequenceRecord([1], [2, 3], [0.0, 0.0], a) for a in (1.0, 0.0, -1.0)]
    >>> cfg = TrainerConfig(mini_batch_size=2, entropy_coef=0.0)
    >>> [(len(m.records), m.total_tokens, m.sequences) for m in plan_update(recs, cfg)]
    [(1, 4, 2), (1, 2, 1)]
    """
    size = cfg.mini_batch_size or max(1, len(records))
    skip = exact_skip(cfg)
    plan = []
    for start in range(0, len(records), size):
        chunk = list(records[start : start + size])
        tokens = sum(r.n_sampled for r in chunk)
        run = [r for r in chunk if not (skip and r.advantage == 0.0)]
        plan.append(MiniBatch(run, tokens, len(chunk)))
    return plan


class LogprobGapError(RuntimeError):
    """The sampler's log-probs are too far from the trainer's: the rollouts did not come from the trained weights."""


def run_update(policy: Trainable, records: Sequence[SequenceRecord], cfg: TrainerConfig) -> dict[str, float]:
    """Recompute old log-probs (when configured), then one `train_step` per mini-batch; merged metrics.

    The metrics hold `optimizer_steps`, the trainer's `step` after the last one, `skipped_sequences`, the seconds
    spent recomputing log-probs and stepping, and `logprob_gap`: the mean |sampler - trainer| log-prob over the
    sampled tokens, measured on the weights that sampled (by the recomputation, or else by the first step's forward);
    past `cfg.max_logprob_gap` it raises LogprobGapError (with no recomputation, after that first step: the caller
    commits nothing, so the step is never kept).
    """
    plan = plan_update(records, cfg)
    t0 = time.perf_counter()
    gap = None
    if cfg.recompute_old_logprobs:
        todo = [r for m in plan for r in m.records]
        fresh = policy.compute_logprobs(todo) if todo else []
        gap = sampler_gap(todo, fresh)
        _check_gap(gap, cfg)
        swap = {id(r): replace(r, old_logprobs=lp) for r, lp in zip(todo, fresh, strict=True)}
        plan = [replace(m, records=[swap[id(r)] for r in m.records]) for m in plan]
    t1 = time.perf_counter()
    steps = []
    for m in plan:
        if m.total_tokens > 0:
            steps.append(policy.train_step(m.records, total_tokens=m.total_tokens))
            if gap is None and "logprob_gap" in steps[-1]:  # this step's forward ran on the sampling weights
                gap = steps[-1]["logprob_gap"]
                _check_gap(gap, cfg)
    out = merge_step_metrics(steps)
    out.pop("logprob_gap", None)  # later steps measure the iteration's own policy change, not the sampler
    if gap is not None:
        out["logprob_gap"] = gap
    out["seconds_recompute"], out["seconds_steps"] = t1 - t0, time.perf_counter() - t1
    out["optimizer_steps"] = float(len(steps))
    out["skipped_sequences"] = float(sum(m.sequences - len(m.records) for m in plan))
    return out


def sampler_gap(records: Sequence[SequenceRecord], fresh: Sequence[Sequence[float]]) -> float | None:
    """Mean |sampler - trainer| log-prob over the sampled tokens of `records` (None when there are none).

    >>> sampler_gap([SequenceRecord([1], [2, 3], [-1.0, -2.0], 1.0, sampled=[True, False])], [[-1.5, 0.0]])
    0.5
    """
    total, n = 0.0, 0
    for r, lps in zip(records, fresh, strict=True):
        for k, (old, new) in enumerate(zip(r.old_logprobs, lps, strict=True)):
            if r.sampled is None or r.sampled[k]:
                total += abs(old - new)
                n += 1
    return total / n if n else None


def _check_gap(gap: float | None, cfg: TrainerConfig) -> None:
    if gap is not None and cfg.max_logprob_gap is not None and gap > cfg.max_logprob_gap:
        raise LogprobGapError(
            f"the sampler's log-probs differ from the trainer's by {gap:.4f} nats per sampled token (more than "
            f"trainer.max_logprob_gap={cfg.max_logprob_gap}): the rollouts did not come from the weights being "
            "trained (a stale or failed weight sync, another model or dtype). This iteration is not committed. Check "
            "the rollout backend's sync_weights; raise trainer.max_logprob_gap only for a known numerical difference "
            "between the engines."
        )


_SUMMED = ("tokens", "sequences")


def merge_step_metrics(steps: Sequence[dict[str, float]]) -> dict[str, float]:
    """One iteration's metrics from its steps: counts summed, `step`/`lr` from the last, the rest averaged."""
    if not steps:
        return {}
    out: dict[str, float] = {}
    keys = {k for s in steps for k in s}
    for k in sorted(keys):
        values = [s[k] for s in steps if k in s]
        if k in ("step", "lr"):
            out[k] = values[-1]
        elif k in _SUMMED or k.endswith("/sequences") or k.endswith("/tokens"):
            out[k] = sum(values)
        else:
            out[k] = sum(values) / len(values)
    return out
