"""The `azr-eval` flow as a user runs it: the real local stack (Prefect server, process worker), `prefect deploy`,
`prefect deployment run azr-eval/evaluate`, on a tiny random model; the evals rows land in the run folder."""

from __future__ import annotations

import json
import os

import pytest
from stackutil import BIN, REPO, run, stack_up_and_deploy

from azr_core.policy.tiny import make_tiny_model_dir
from azr_core.store import connect

pytestmark = [pytest.mark.slow, pytest.mark.sandbox]


def test_evaluate_deployment_on_the_real_server(tmp_path):
    state = tmp_path / "stack"
    model = make_tiny_model_dir(tmp_path / "tiny", hidden=16, layers=1)
    run_dir = tmp_path / "run"
    env = {**os.environ, "AZR_STATE_DIR": str(state), "PYTHONPATH": str(REPO)}
    env.pop("MLFLOW_TRACKING_URI", None)
    try:
        stack_up_and_deploy(env, "--name", "evaluate")
        flow_run = run([str(BIN / "prefect"), "deployment", "run", "azr-eval/evaluate", "-p", f"model={model}",
                        "-p", "suite=cruxeval-o,cruxeval-i", "-p", "limit=2", "-p", f"run_dir={run_dir}",
                        "-p", "max_new_tokens=4", "--watch", "--watch-timeout", "900"], env, 1000)  # fmt: skip
        assert flow_run.returncode == 0 and "Completed" in flow_run.stdout, (
            flow_run.stdout[-3000:] + flow_run.stderr[-3000:]
        )
    finally:
        run([str(BIN / "azr"), "down"], env, 300)
    rows = connect(run_dir).execute("SELECT bench, item_id, correct, model FROM evals ORDER BY ALL").fetchall()
    assert [(b, i) for b, i, _, _ in rows] == [("cruxeval-i", "sample_0"), ("cruxeval-i", "sample_1"),
                                               ("cruxeval-o", "sample_0"), ("cruxeval-o", "sample_1")]  # fmt: skip
    assert all(m == str(model) and isinstance(c, bool) for _, _, c, m in rows)


def test_the_flow_runs_without_a_server(tmp_path, monkeypatch):
    """The same flow called in-process (ephemeral Prefect API): the flow's result is the evaluation summary."""
    monkeypatch.delenv("PREFECT_API_URL", raising=False)
    from flows.eval import evaluate

    model = make_tiny_model_dir(tmp_path / "tiny", hidden=16, layers=1)
    out = evaluate(model=str(model), suite="cruxeval-o", limit=2, run_dir=str(tmp_path / "run"), max_new_tokens=4,
                   eval_overrides={"backend": "hf"})  # fmt: skip
    assert (
        out["evaluation"]["n"] == {"cruxeval-o": 2}
        and 0.0 <= out["evaluation"]["scores"]["cruxeval-o"]["pass@1"] <= 1.0
    )
    assert connect(tmp_path / "run").execute("SELECT count(*) FROM evals").fetchone()[0] == 2
    json.dumps(out)  # the flow's result is plain data


def test_a_renamed_model_is_evaluated_and_judged_under_its_own_name(tmp_path, monkeypatch):
    """The trigger's payload names `models:/<tracking.registered_model>/N`: the gate judges that model's version N
    (it used to judge `azr-policy` version N whatever the run's name), and the report reads the run's name."""
    monkeypatch.delenv("PREFECT_API_URL", raising=False)
    from azr_core.config import AZRConfig
    from azr_core.report.registry import read_registry, registered_name
    from azr_core.store.run import save_session_config
    from azr_core.tracking.runs import Tracker, TrackingConfig, mlflow_client
    from flows.eval import evaluate

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    model = make_tiny_model_dir(tmp_path / "tiny", hidden=16, layers=1)
    run_dir = tmp_path / "run"
    tracking = TrackingConfig(tracking_uri=uri, registered_model="my-policy")
    version = int(Tracker(run_dir, tracking).register_checkpoint(model, iteration=1).version)
    out = evaluate(model=f"models:/my-policy/{version}", suite="cruxeval-o", limit=2, run_dir=str(run_dir),
                   max_new_tokens=4, eval_overrides={"backend": "hf"}, promote=True, tracking_uri=uri)  # fmt: skip
    assert out["evaluation"]["registered_model"] == "my-policy"
    assert out["promotion"]["outcome"] == "first-champion", out["promotion"]
    assert int(mlflow_client(uri).get_model_version_by_alias("my-policy", "champion").version) == version
    save_session_config(AZRConfig.model_validate({"tracking": tracking.model_dump()}), run_dir)
    assert registered_name(run_dir) == "my-policy" and registered_name(tmp_path / "nowhere") == "azr-policy"
    assert read_registry(run_dir, uri).champion == version
