"""Settings of evaluation and promotion, with their defaults visible in one place: the run's `evaluation` section,
the `azr-eval` flow and the `azr eval run` / `azr promote` commands take theirs from here."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

#: The quick suite: what each registered version is evaluated on (the run's `evaluation` section, the `azr-eval`
#: flow's default), cheap enough to run after every registration.
QUICK_SUITE = "cruxeval-o,cruxeval-i"
#: The promotion gate's suite unless the caller says otherwise.
PROMOTION_SUITE = "cruxeval-o,cruxeval-i,humaneval+,mbpp+"


class EvalConfig(BaseModel):
    """How a model is evaluated: which benchmarks, how it generates, how code is timed."""

    model_config = ConfigDict(extra="forbid")

    suite: str = Field("paper", description="Benchmarks: a suite (paper, code, math, all) or a comma list of names.")
    limit: int | None = Field(None, ge=1, description="Evaluate only the first N items of each benchmark.")
    data_dir: Path | None = Field(None, description="Folder with the benchmark files; None: the ones shipped.")
    template: Literal["raw", "chat"] = Field(
        "raw", description="'raw': the paper's User/Assistant <think> template; 'chat': the model's chat template."
    )
    max_new_tokens: int = Field(1024, ge=1, description="Most tokens generated per answer.")
    batch_size: int = Field(16, ge=1, description="Sequences generated together (hf backend).")
    backend: Literal["auto", "hf", "hf-batching", "vllm"] = Field(
        "auto", description="Rollout backend, as in self-play."
    )
    samples: int = Field(1, ge=1, description="Completions per item; 1 with temperature 0 is greedy pass@1.")
    temperature: float = Field(0.0, ge=0.0, description="0 = greedy (the default, as the field reports).")
    top_p: float = Field(1.0, gt=0.0, le=1.0, description="Nucleus mass when sampling.")
    pass_k: list[int] = Field(default_factory=lambda: [1], description="pass@k reported (k <= samples).")
    seed: int = Field(0, description="Sampling seed (ignored when greedy).")
    gt_time_limit_factor: float = Field(4.0, gt=0, description="evalplus: a test may take this x the canonical time.")
    min_time_limit_s: float = Field(1.0, gt=0, description="evalplus: ... but at least this long, seconds.")
    task_timeout_s: float = Field(60.0, gt=0, description="Most seconds one program may take over all its tests.")
    executor_workers: int = Field(0, ge=0, description="Sandbox workers per executor; 0 = auto.")


class PromotionConfig(BaseModel):
    """When a candidate version replaces the champion."""

    model_config = ConfigDict(extra="forbid")

    suite: str = Field(PROMOTION_SUITE, description="Benchmarks the decision rests on.")
    limit: int | None = Field(None, ge=1, description="First N items of each promotion benchmark.")
    test: Literal["bootstrap", "mcnemar"] = Field(
        "bootstrap", description="Paired test over items: paired bootstrap of the accuracy gap, or exact McNemar."
    )
    confidence: float = Field(0.95, gt=0.5, lt=1.0, description="Promote only when p-value < 1 - confidence.")
    margin: float = Field(0.0, ge=0.0, lt=1.0, description="The candidate must beat the champion by more than this.")
    bootstrap_samples: int = Field(10_000, ge=100, description="Resamples of the paired bootstrap.")
    seed: int = Field(0, description="Seed of the bootstrap resampling (decisions are reproducible).")


def eval_default(name: str):
    """The default of EvalConfig field `name`, for the flows' and commands' own parameters."""
    return EvalConfig.model_fields[name].default
