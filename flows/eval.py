"""Flow `azr-eval` (deployment `evaluate`): evaluate a model on a suite, and optionally run the promotion gate.

prefect deployment run azr-eval/evaluate -p model=models:/azr-policy/7 -p suite=cruxeval-o -p limit=100
"""

from __future__ import annotations

from typing import Any

from prefect import flow, runtime

from azr_core.eval.config import QUICK_SUITE, eval_default
from azr_core.stack.join import check_run_folder_shared
from azr_core.tracking.store import DEFAULT_REGISTERED_MODEL
from tasks import eval as t


@flow(name="azr-eval", log_prints=True)
def evaluate(
    model: str = f"models:/{DEFAULT_REGISTERED_MODEL}@champion",
    suite: str = QUICK_SUITE,
    limit: int | None = None,
    run_dir: str | None = None,
    max_new_tokens: int = eval_default("max_new_tokens"),
    template: str = eval_default("template"),
    eval_overrides: dict[str, Any] | None = None,
    promote: bool = False,
    promotion: dict[str, Any] | None = None,
    tracking_uri: str | None = None,
) -> dict[str, Any]:
    """Evaluate `model` (folder, HF id or models:/ URI); with `promote`, judge its registered version as well: on
    the suite and limit just evaluated (`promotion` overrides them and sets the test, confidence, margin), so the
    first version evaluated becomes champion and each later one faces the paired gate.

    Also run by the deployment's trigger on each `azr.model.registered` event of a self-play run (prefect.yaml).
    tracking_uri: the MLflow store (None: $MLFLOW_TRACKING_URI, else the local default)."""
    if run_dir:
        check_run_folder_shared(run_dir)  # on a worker joined from another host: the run folder is shared
    config = {"suite": suite, "limit": limit, "max_new_tokens": max_new_tokens, "template": template,
              **(eval_overrides or {})}  # fmt: skip
    summary = t.evaluate_model(model, config, run_dir, tracking_uri=tracking_uri)
    result: dict[str, Any] = {"evaluation": summary}
    if promote:
        if summary.get("version") is None:
            raise ValueError(f"promote=True needs a registered model (models:/...), not {model!r}")
        # Judged on what was just evaluated unless `promotion` says otherwise: no second round of generation.
        judged_on = {"suite": suite, "limit": limit, **(promotion or {})}
        result["promotion"] = t.promote_version(summary["version"], judged_on, config,
                                                flow_run_id=runtime.flow_run.id, tracking_uri=tracking_uri,
                                                name=summary["registered_model"])  # fmt: skip
    return result


if __name__ == "__main__":
    evaluate()
