"""One home for the evaluation defaults: the run's `evaluation` section, the `azr-eval` flow, its deployment and the
`azr eval run` / `azr promote` commands all take theirs from azr_core/eval/config.py (they used to disagree)."""

from __future__ import annotations

import inspect

import yaml
from stackutil import REPO

from azr_core.commands.eval import run as eval_run_cmd
from azr_core.commands.promote import promote_cmd
from azr_core.config import EvaluationConfig
from azr_core.eval.config import PROMOTION_SUITE, QUICK_SUITE, EvalConfig, PromotionConfig
from azr_core.tracking.store import DEFAULT_REGISTERED_MODEL, TrackingConfig
from flows.eval import evaluate


def _defaults(fn) -> dict:
    return {k: p.default for k, p in inspect.signature(inspect.unwrap(fn)).parameters.items()}


def test_flow_commands_and_run_section_share_the_eval_defaults():
    ev, run = EvalConfig(), EvaluationConfig()
    flow = _defaults(evaluate.fn)
    cli = _defaults(eval_run_cmd)
    assert flow["suite"] == run.suite == QUICK_SUITE
    for key in ("max_new_tokens", "template"):
        assert flow[key] == cli[key] == getattr(run, key) == getattr(ev, key), key
    for key in ("suite", "batch_size", "backend", "samples", "temperature"):
        assert cli[key] == getattr(ev, key), key
    assert _defaults(promote_cmd)["max_new_tokens"] == ev.max_new_tokens
    assert PromotionConfig().suite == PROMOTION_SUITE
    assert _defaults(promote_cmd)["name"] == TrackingConfig().registered_model == DEFAULT_REGISTERED_MODEL
    assert flow["model"] == f"models:/{DEFAULT_REGISTERED_MODEL}@champion"


def test_the_evaluate_deployment_sets_only_the_model_and_the_runs_limit():
    spec = yaml.safe_load((REPO / "prefect.yaml").read_text())
    (dep,) = [d for d in spec["deployments"] if d["name"] == "evaluate"]
    assert dep["parameters"] == {"model": f"models:/{DEFAULT_REGISTERED_MODEL}@champion",
                                 "limit": EvaluationConfig().limit}  # fmt: skip
