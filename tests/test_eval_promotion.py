"""The promotion gate against a real MLflow registry (SQLite store): win, loss, tie, missing evaluation, rollback,
and one real evaluation of a registered version (a tiny random model) feeding the gate."""

from __future__ import annotations

import json

import pytest

from azr_core.eval import benchmarks
from azr_core.eval.config import EvalConfig, PromotionConfig
from azr_core.eval.promotion import (
    CHALLENGER,
    CHAMPION,
    PromotionError,
    mcnemar_exact,
    paired_bootstrap,
    promote,
    rollback,
)
from azr_core.eval.run import BenchResult, EvalResult, ModelRef, evaluate, log_scores
from azr_core.policy.tiny import make_tiny_model_dir
from azr_core.tracking.runs import Tracker, TrackingConfig, mlflow_client

BENCH, LIMIT = "cruxeval-o", 40
IDS = [it.id for it in benchmarks.load(BENCH, limit=LIMIT)]
CFG = PromotionConfig(suite=BENCH, limit=LIMIT, bootstrap_samples=2000)


@pytest.fixture(scope="module")
def uri(tmp_path_factory) -> str:
    return f"sqlite:///{tmp_path_factory.mktemp('mlflow') / 'mlflow.db'}"


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tiny")
    make_tiny_model_dir(folder, hidden=16, layers=1)
    return folder


def register(uri: str, name: str, model_dir, tmp_path, iteration: int) -> int:
    tracker = Tracker(tmp_path / f"run-{iteration}", TrackingConfig(tracking_uri=uri, registered_model=name))
    return int(tracker.register_checkpoint(model_dir, iteration=iteration).version)


def log_verdicts(uri: str, name: str, version: int, correct: list[bool], ids: list[str] = IDS) -> None:
    """What `azr eval run` logs for a version, with chosen verdicts."""
    mv = mlflow_client(uri).get_model_version(name, str(version))
    items = {i: [c] for i, c in zip(ids, correct, strict=True)}
    res = EvalResult("e" + str(version), f"models:/{name}/{version}", version, 0, LIMIT)
    res.benches[BENCH] = BenchResult(BENCH, len(ids), sum(correct), {"pass@1": sum(correct) / len(ids)}, items,
                                     0, 0, 0, 0)  # fmt: skip
    ref = ModelRef(spec=res.model, path="", version=version, iteration=0, run_id=mv.run_id, registered_model=name)
    log_scores(res, ref, EvalConfig(suite=BENCH, limit=LIMIT), tracking_uri=uri)


def alias(uri: str, name: str, which: str) -> int:
    return int(mlflow_client(uri).get_model_version_by_alias(name, which).version)


def test_paired_tests_on_known_cases():
    same = [1.0, 0.0] * 20
    assert paired_bootstrap(same, same, margin=0.0, samples=500, seed=0) == 1.0  # no gap: never significant
    better = [1.0] * 40
    assert paired_bootstrap(better, same, margin=0.0, samples=500, seed=0) < 0.01
    assert paired_bootstrap(better, same, margin=0.6, samples=500, seed=0) > 0.5  # gap 0.5 does not beat 0.6
    # McNemar: 10 items only the candidate solves, 0 the other way: p = 2^-10.
    assert mcnemar_exact([1.0] * 10 + [0.0] * 5, [0.0] * 15) == pytest.approx(2**-10)
    assert mcnemar_exact([1.0, 0.0], [0.0, 1.0]) == 0.75


def test_win_loss_tie_missing_and_rollback(uri, model_dir, tmp_path):
    name = "gate"
    v1, v2, v3, v4 = (register(uri, name, model_dir, tmp_path, it) for it in (1, 2, 3, 4))
    half = [i % 2 == 0 for i in range(LIMIT)]
    log_verdicts(uri, name, v1, half)

    first = promote(v1, CFG, name=name, tracking_uri=uri, flow_run_id="flow-1")
    assert first.promoted and first.outcome == "first-champion" and alias(uri, name, CHAMPION) == v1

    log_verdicts(uri, name, v2, [True] * LIMIT)  # win: 40/40 against 20/40
    win = promote(v2, CFG, name=name, tracking_uri=uri, flow_run_id="flow-2")
    assert win.promoted and win.champion == v1 and win.delta == pytest.approx(0.5) and win.p_value < 0.05
    assert alias(uri, name, CHAMPION) == v2 and alias(uri, name, CHALLENGER) == v2
    tags = mlflow_client(uri).get_model_version(name, str(v2)).tags
    assert tags["azr.promotion.decision"] == "promoted" and tags["azr.promotion.flow_run_id"] == "flow-2"
    assert float(tags["azr.promotion.p_value"]) == pytest.approx(win.p_value, rel=1e-4)
    assert json.loads(tags["azr.promotion.scores"]) == {str(v2): {BENCH: 1.0}, str(v1): {BENCH: 0.5}}
    defended = json.loads(mlflow_client(uri).get_model_version(name, str(v1)).tags[f"azr.promotion.challenge.{v2}"])
    assert defended["decision"] == "promoted" and defended["flow_run_id"] == "flow-2"

    log_verdicts(uri, name, v3, half)  # loss
    loss = promote(v3, CFG, name=name, tracking_uri=uri)
    assert not loss.promoted and loss.outcome == "rejected" and loss.delta == pytest.approx(-0.5)
    assert alias(uri, name, CHAMPION) == v2 and alias(uri, name, CHALLENGER) == v3

    log_verdicts(uri, name, v4, [True] * LIMIT)  # tie: same answers as the champion
    tie = promote(v4, CFG.model_copy(update={"test": "mcnemar"}), name=name, tracking_uri=uri)
    assert not tie.promoted and tie.delta == 0 and tie.p_value == 1.0 and alias(uri, name, CHAMPION) == v2

    v5 = register(uri, name, model_dir, tmp_path, 5)  # never evaluated
    missing = promote(v5, CFG, name=name, tracking_uri=uri)
    assert not missing.promoted and missing.outcome == "incomplete" and alias(uri, name, CHAMPION) == v2
    log_verdicts(uri, name, v5, [True] * (LIMIT - 1), IDS[:-1])  # an evaluation of fewer items is incomplete too
    assert promote(v5, CFG, name=name, tracking_uri=uri).outcome == "incomplete"

    assert rollback(name=name, tracking_uri=uri) == (v2, v1)
    assert alias(uri, name, CHAMPION) == v1
    with pytest.raises(PromotionError, match="nothing to roll back"):
        rollback(name=name, tracking_uri=uri)


def test_a_real_evaluation_of_a_registered_version_feeds_the_gate(uri, model_dir, tmp_path):
    name = "gate-real"
    v1 = register(uri, name, model_dir, tmp_path, 1)
    # Two samples at temperature 1 with pass@1 and pass@2, on a benchmark whose name MLflow would refuse as is.
    cfg = EvalConfig(suite="cruxeval-o,humaneval+", limit=2, max_new_tokens=4, batch_size=4, backend="hf",
                     samples=2, temperature=1.0, pass_k=[1, 2])  # fmt: skip
    result = evaluate(f"models:/{name}/{v1}", cfg, run_dir=tmp_path / "evals-run", tracking_uri=uri,
                      progress=lambda m: None)  # fmt: skip
    assert result.version == v1 and result.iteration == 1 and result.benches["cruxeval-o"].n == 2
    client = mlflow_client(uri)
    mv = client.get_model_version(name, str(v1))
    score = result.score("cruxeval-o")
    assert float(mv.tags["azr.eval.cruxeval-o"]) == score and mv.tags["azr.eval.cruxeval-o.n"] == "2"
    assert "azr.eval.humanevalplus.pass_at_2" in mv.tags
    history = client.get_metric_history(mv.run_id, "eval/cruxeval-o")
    assert [(m.step, m.value) for m in history] == [(1, score)]
    assert [m.step for m in client.get_metric_history(mv.run_id, "eval/humanevalplus/pass_at_2")] == [1]
    decision = promote(v1, PromotionConfig(suite="cruxeval-o,humaneval+", limit=2), name=name, tracking_uri=uri)
    assert decision.outcome == "first-champion" and alias(uri, name, CHAMPION) == v1
    assert set(decision.scores[str(v1)]) == {"cruxeval-o", "humaneval+"}
