"""Prefect tasks of evaluation and promotion. Thin: validate the config, call `azr_core.eval`, log a summary.

No retries: a model or sandbox failure is not transient, and a rerun of the flow redoes the work.
"""

from __future__ import annotations

import json
from typing import Any

from prefect import get_run_logger, task

from azr_core.eval.config import EvalConfig, PromotionConfig
from azr_core.tracking.store import DEFAULT_REGISTERED_MODEL


@task(name="evaluate-model", task_run_name="evaluate {model}")
def evaluate_model(
    model: str, config: dict[str, Any], run_dir: str | None = None, tracking_uri: str | None = None
) -> dict[str, Any]:
    """Generate and grade `model` on the config's suite; rows to run_dir's evals table, scores to MLflow."""
    from azr_core.eval.run import evaluate

    log = get_run_logger()
    result = evaluate(model, EvalConfig.model_validate(config), run_dir=run_dir, progress=log.info,
                      tracking_uri=tracking_uri)  # fmt: skip
    summary = result.summary()
    log.info("evaluate %s", json.dumps(summary))
    return summary


@task(name="promote-version", task_run_name="promote version {version}")
def promote_version(version: int | None, config: dict[str, Any], eval_config: dict[str, Any],
                    flow_run_id: str | None = None, tracking_uri: str | None = None,
                    name: str = DEFAULT_REGISTERED_MODEL) -> dict[str, Any]:  # fmt: skip
    """The promotion gate on registered model `name`; versions lacking a complete evaluation on the promotion suite
    are evaluated first."""
    from azr_core.eval.promotion import promote
    from azr_core.eval.run import evaluate

    log = get_run_logger()
    pcfg = PromotionConfig.model_validate(config)
    base = EvalConfig.model_validate(eval_config)

    def evaluate_missing(v: int, benches: list[str]) -> None:
        cfg = base.model_copy(update={"suite": ",".join(benches), "limit": pcfg.limit})
        evaluate(f"models:/{name}/{v}", cfg, progress=log.info, tracking_uri=tracking_uri)

    decision = promote(version, pcfg, name=name, flow_run_id=flow_run_id, evaluate_missing=evaluate_missing,
                       tracking_uri=tracking_uri)  # fmt: skip
    log.info("promotion %s", json.dumps(decision.to_dict()))
    return decision.to_dict()
