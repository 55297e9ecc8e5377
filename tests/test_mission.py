"""The main job's whole mission on the real local stack (Prefect server and worker, MLflow UI, `prefect deploy`) with
the tiny random model: each `azr/self-play` flow run ends with a registered model version (here not due by
`tracking.register_every`), the event-triggered `azr-eval/evaluate` flow run evaluates it, the first version becomes
`champion`, the next flow run's version is judged by the paired gate; `azr status --run --wait-eval` waits for the
evaluation and prints the version, its scores, its alias and the direct URLs."""

from __future__ import annotations

import json
import os
import re
import urllib.request
from pathlib import Path

import pytest
from stackutil import BIN, run, stack_up_and_deploy

from azr_core.policy.tiny import make_tiny_model_dir
from azr_core.store import read_commit

pytestmark = [pytest.mark.slow, pytest.mark.sandbox]


def _overrides(tiny: Path) -> list[str]:
    return [
        f"model.name_or_path={tiny}",
        "selfplay.prompt_template=raw",
        "selfplay.batch_per_group=1",
        "selfplay.references_k=1",
        "selfplay.induction_inputs=2",
        "selfplay.learnability_rollouts=1",
        "rollout.max_new_tokens=8",
        "buffers.seed_max_rounds=0",
        "store.fsync=false",
        "evaluation.suite=cruxeval-o",
        "evaluation.limit=4",
        "evaluation.max_new_tokens=4",
        "evaluation.template=raw",
    ]  # fmt: skip  (register_every stays 10: the flow run's end registers)


def _get(url: str) -> tuple[int, str]:
    # As a browser asks: Prefect's server answers a UI route with its page only to a request that accepts HTML.
    req = urllib.request.Request(url, headers={"Accept": "text/html,application/json"})
    with urllib.request.urlopen(req, timeout=30) as resp:  # noqa: S310 - the test's own loopback stack
        return resp.status, resp.read().decode("utf-8", "replace")


def test_each_flow_run_leaves_an_evaluated_version_and_the_gate_judges_the_next(tmp_path):
    tiny = make_tiny_model_dir(tmp_path / "tiny", hidden=16, layers=1)
    state, run_dir = tmp_path / "stack", tmp_path / "run"
    env = {**os.environ, "AZR_STATE_DIR": str(state)}
    env.pop("MLFLOW_TRACKING_URI", None)
    cmd = [str(BIN / "prefect"), "deployment", "run", "azr/self-play", "-p", "iterations=1", "-p", f"run_dir={run_dir}",
           "-p", f"overrides={json.dumps(_overrides(tiny))}", "--watch", "--watch-timeout", "900"]  # fmt: skip
    status = [str(BIN / "azr"), "status", "--run", str(run_dir), "--wait-eval", "600"]
    try:
        stack_up_and_deploy(env)
        stack = json.loads((state / "stack.json").read_text())
        mlflow_ui, prefect_ui = f"http://127.0.0.1:{stack['mlflow_port']}", f"http://127.0.0.1:{stack['prefect_port']}"

        first = run(cmd, env, 1000)
        assert first.returncode == 0 and "Completed" in first.stdout, first.stdout[-3000:] + first.stderr[-3000:]
        assert read_commit(run_dir).iteration == 1
        out1 = run(status, env, 700)
        assert out1.returncode == 0, out1.stdout + out1.stderr
        text1 = out1.stdout
        # The version the flow run registered at its end, its evaluation flow run, its scores, its alias.
        assert "waiting up to 600 s for the azr-eval/evaluate flow run of models:/azr-policy/1" in text1, text1
        assert "model: models:/azr-policy/1 (iteration 1)" in text1, text1
        assert "evaluation flow run: Completed" in text1, text1
        assert re.search(r"quick-suite scores \(pass@1\): cruxeval-o \d\.\d{3} \(4 items\)", text1), text1
        assert re.search(r"aliases: .*\bchampion\b", text1) and "promotion: first-champion" in text1, text1
        assert "FROM evals" in text1 and "report" in text1 and "promote --rollback" in text1, text1
        # Direct URLs: the MLflow run page and the Prefect flow run page, both served.
        run_url = re.search(r"MLflow run \(FINISHED; [^)]*\): (\S+)", text1).group(1)
        flow_url = re.search(r"Prefect flow run that trained it last [^:]*: (\S+)", text1).group(1)
        assert run_url.startswith(f"{mlflow_ui}/#/experiments/") and "/runs/" in run_url, run_url
        assert flow_url.startswith(f"{prefect_ui}/runs/flow-run/"), flow_url
        assert _get(flow_url)[0] == 200 and _get(run_url.split("#")[0])[0] == 200
        # The flow run's closing message (its log) names the version and links to the MLflow run and to itself.
        log = (state / "logs" / "prefect-worker.log").read_text(errors="replace")
        assert "model version 1 (iteration 1): announced for evaluation" in log
        assert f"MLflow run: {run_url}" in log and f"this flow run: {flow_url}" in log
        # The MLflow UI is told that usage-data collection is off.
        code, body = _get(f"{mlflow_ui}/ajax-api/3.0/mlflow/ui-telemetry")
        assert code == 200 and json.loads(body)["disable_ui_telemetry"] is True, body

        import mlflow

        client = mlflow.MlflowClient(f"sqlite:///{state / 'mlflow.db'}")
        v1 = client.get_model_version("azr-policy", "1")
        assert v1.tags["azr.iteration"] == "1" and v1.tags["azr.prefect_flow_run_id"] in flow_url
        assert "champion" in v1.aliases and v1.tags["azr.promotion.decision"] == "first-champion"
        assert client.get_run(v1.run_id).info.status == "FINISHED"

        second = run(cmd, env, 1000)
        assert second.returncode == 0 and "Completed" in second.stdout, second.stdout[-3000:] + second.stderr[-3000:]
        assert read_commit(run_dir).iteration == 2
        out2 = run(status, env, 700)
        assert out2.returncode == 0, out2.stdout + out2.stderr
        text2 = out2.stdout
        assert "model: models:/azr-policy/2 (iteration 2)" in text2 and "evaluation flow run: Completed" in text2
        v2 = client.get_model_version("azr-policy", "2")
        # The gate judged it against version 1 with a paired test: a decision and a p-value, either way.
        assert v2.tags["azr.promotion.decision"] in ("promoted", "rejected"), v2.tags
        assert v2.tags["azr.promotion.against"] == "1" and 0 < float(v2.tags["azr.promotion.p_value"]) <= 1
        assert re.search(r"promotion: (promoted|rejected) against version 1, p = [\d.e-]+", text2), text2
        champion = "2" if v2.tags["azr.promotion.decision"] == "promoted" else "1"
        assert str(client.get_model_version_by_alias("azr-policy", "champion").version) == champion
        # Two flow runs, two versions: none registered twice, none by register_every.
        assert sorted(int(v.version) for v in client.search_model_versions("name='azr-policy'")) == [1, 2]
    finally:
        run([str(BIN / "azr"), "down"], env, 300)
