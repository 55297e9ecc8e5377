"""The promotion gate on MLflow's model registry: aliases `challenger` and `champion`, never the deprecated stages.

A candidate version gets `challenger`, is judged on the promotion suite against the version `champion` points at,
and takes `champion` only when it beats it by more than the margin with a paired test over items (the same items,
graded for both): a paired bootstrap of the accuracy gap, or an exact McNemar test on the discordant items. No
complete evaluation of both, no promotion. The decision, both scores, the gap and the p-value become tags on both
versions, with the Prefect flow run id. The versions that held `champion` are kept, oldest first, in the registered
model's tag `azr.champion.history`, so `rollback` can re-point `champion` at the previous one.

Per-item verdicts come from the artifacts `azr eval run` logs on each version's training run (see `eval.run`).
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

from azr_core.eval import benchmarks
from azr_core.eval.config import PromotionConfig
from azr_core.eval.run import items_artifact
from azr_core.tracking.store import DEFAULT_REGISTERED_MODEL

CHAMPION, CHALLENGER = "champion", "challenger"
HISTORY_TAG = "azr.champion.history"
DEFAULT_MODEL_NAME = DEFAULT_REGISTERED_MODEL


class PromotionError(RuntimeError):
    """Promotion cannot proceed as asked (no such version, nothing to roll back to)."""


@dataclass
class Decision:
    """What the gate decided, and on what evidence."""

    candidate: int
    champion: int | None
    promoted: bool
    outcome: str  # promoted | first-champion | rejected | incomplete
    reason: str
    test: str
    delta: float | None = None
    p_value: float | None = None
    n_items: int = 0
    scores: dict[str, dict[str, float]] = field(default_factory=dict)  # version -> bench -> accuracy
    flow_run_id: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


# ---- the paired tests ---------------------------------------------------------------------------------------------


def paired_bootstrap(candidate: list[float], champion: list[float], *, margin: float, samples: int, seed: int) -> float:
    """One-sided p-value of H0 "gap <= margin" by resampling items with their pairs kept: the share of resampled
    mean gaps that are <= margin (add-one smoothed, so never exactly 0)."""
    import numpy as np

    d = np.asarray(candidate, dtype=float) - np.asarray(champion, dtype=float)
    if d.size == 0:
        return 1.0
    rng = np.random.default_rng(seed)
    below, done = 0, 0
    while done < samples:  # in chunks: samples x items indices at once would be large
        m = min(1000, samples - done)
        means = d[rng.integers(0, d.size, size=(m, d.size))].mean(axis=1)
        below += int((means <= margin).sum())
        done += m
    return (below + 1) / (samples + 1)


def mcnemar_exact(candidate: list[float], champion: list[float]) -> float:
    """One-sided exact McNemar p-value that the candidate is right more often on the items where the two differ:
    P(X >= b) for X ~ Binomial(b + c, 1/2), b = candidate-only correct, c = champion-only correct."""
    b = sum(1 for x, y in zip(candidate, champion, strict=True) if x > y)
    c = sum(1 for x, y in zip(candidate, champion, strict=True) if x < y)
    n = b + c
    if n == 0:
        return 1.0
    return sum(math.comb(n, k) for k in range(b, n + 1)) / 2**n


# ---- evidence -----------------------------------------------------------------------------------------------------


def load_verdicts(client, name: str, version: int, bench: str, cfg: PromotionConfig) -> dict[str, float] | None:
    """A version's per-item accuracy on `bench` (mean over its samples), or None unless its logged evaluation
    covers exactly the items the promotion suite asks for."""
    mv = client.get_model_version(name, str(version))
    if not mv.run_id:
        return None
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        try:
            path = client.download_artifacts(mv.run_id, items_artifact(version, bench), tmp)
        except Exception:  # noqa: BLE001 - MLflow raises several kinds for a missing artifact
            return None
        with open(path, encoding="utf-8") as fh:
            payload = json.load(fh)
    expected = {it.id for it in benchmarks.load(bench, limit=cfg.limit)}
    items = payload.get("items", {})
    if set(items) != expected or any(not v for v in items.values()):
        return None
    return {k: sum(v) / len(v) for k, v in items.items()}


def _evidence(client, name, version, names, cfg) -> tuple[dict[str, dict[str, float]], list[str]]:
    found, missing = {}, []
    for bench in names:
        v = load_verdicts(client, name, version, bench, cfg)
        if v is None:
            missing.append(bench)
        else:
            found[bench] = v
    return found, missing


# ---- the gate -----------------------------------------------------------------------------------------------------


def promote(
    version: int | None = None,
    cfg: PromotionConfig | None = None,
    *,
    name: str = DEFAULT_MODEL_NAME,
    tracking_uri: str | None = None,
    flow_run_id: str | None = None,
    evaluate_missing: Callable[[int, list[str]], None] | None = None,
) -> Decision:
    """Judge `version` (default: the newest) against the champion; move the aliases; record the decision.

    `evaluate_missing(version, benches)` is called for each version lacking a complete evaluation on some of the
    suite (it should run `eval.run.evaluate` with the suite's limit); without it, a missing evaluation means no
    promotion.
    """
    from azr_core.tracking.store import mlflow_client, resolve_tracking_uri

    cfg = cfg or PromotionConfig()
    client = mlflow_client(resolve_tracking_uri(tracking_uri))
    flow_run_id = flow_run_id or os.environ.get("PREFECT__FLOW_RUN_ID")
    if version is None:
        versions = client.search_model_versions(f"name = '{name}'")
        if not versions:
            raise PromotionError(f"registered model {name!r} has no versions to promote")
        version = max(int(v.version) for v in versions)
    client.get_model_version(name, str(version))  # raises for an unknown version
    champion = _alias_version(client, name, CHAMPION)
    client.set_registered_model_alias(name, CHALLENGER, str(version))
    names = benchmarks.resolve_suite(cfg.suite)

    contenders = [version] + ([champion] if champion is not None and champion != version else [])
    evidence: dict[int, dict[str, dict[str, float]]] = {}
    missing: dict[int, list[str]] = {}
    for v in contenders:
        evidence[v], missing[v] = _evidence(client, name, v, names, cfg)
        if missing[v] and evaluate_missing is not None:
            evaluate_missing(v, missing[v])
            evidence[v], missing[v] = _evidence(client, name, v, names, cfg)
    scores = {str(v): {b: sum(x.values()) / len(x) for b, x in evidence[v].items()} for v in contenders}
    base = dict(candidate=version, champion=champion, test=cfg.test, scores=scores, flow_run_id=flow_run_id)

    incomplete = {v: m for v, m in missing.items() if m}
    if champion == version:
        decision = Decision(promoted=False, outcome="rejected", reason=f"version {version} is already champion", **base)
    elif incomplete:
        what = "; ".join(f"version {v}: {', '.join(m)}" for v, m in incomplete.items())
        why = f"no complete evaluation on the promotion suite ({what}): no promotion"
        decision = Decision(promoted=False, outcome="incomplete", reason=why, **base)
    elif champion is None:
        n = sum(len(x) for x in evidence[version].values())
        decision = Decision(promoted=True, outcome="first-champion", reason="no champion yet: the first complete "
                            "candidate becomes champion", n_items=n, **base)  # fmt: skip
    else:
        cand, champ = [], []
        for bench in names:
            for item in sorted(evidence[version][bench]):
                cand.append(evidence[version][bench][item])
                champ.append(evidence[champion][bench][item])
        delta = (sum(cand) - sum(champ)) / len(cand)
        if cfg.test == "bootstrap":
            p = paired_bootstrap(cand, champ, margin=cfg.margin, samples=cfg.bootstrap_samples, seed=cfg.seed)
        else:
            p = mcnemar_exact(cand, champ)
        alpha = 1 - cfg.confidence
        won = delta > cfg.margin and p < alpha
        why = (f"gap {delta:+.4f} over {len(cand)} paired items, {cfg.test} p = {p:.4g} "
               f"({'<' if p < alpha else '>='} {alpha:.3g}), margin {cfg.margin}")  # fmt: skip
        decision = Decision(promoted=won, outcome="promoted" if won else "rejected", reason=why, delta=delta,
                            p_value=p, n_items=len(cand), **base)  # fmt: skip
    if decision.promoted:
        client.set_registered_model_alias(name, CHAMPION, str(version))
        history = _history(client, name)
        client.set_registered_model_tag(name, HISTORY_TAG, ",".join(map(str, [*history, version])))
    _record(client, name, decision)
    return decision


def rollback(*, name: str = DEFAULT_MODEL_NAME, tracking_uri: str | None = None) -> tuple[int, int]:
    """Point `champion` back at the version that held it before; returns (from, to)."""
    from azr_core.tracking.store import mlflow_client, resolve_tracking_uri

    client = mlflow_client(resolve_tracking_uri(tracking_uri))
    current = _alias_version(client, name, CHAMPION)
    history = _history(client, name)
    if current is None or len(history) < 2 or history[-1] != current:
        raise PromotionError(
            f"nothing to roll back to: champion is {current}, champion history {history or 'empty'} "
            f"(tag {HISTORY_TAG} on {name!r}); set the alias by hand with `mlflow` if needed"
        )
    previous = history[-2]
    client.set_registered_model_alias(name, CHAMPION, str(previous))
    client.set_registered_model_tag(name, HISTORY_TAG, ",".join(map(str, history[:-1])))
    now = datetime.now(UTC).isoformat(timespec="seconds")
    client.set_model_version_tag(name, str(current), "azr.promotion.rolled_back_at", now)
    client.set_model_version_tag(name, str(previous), "azr.promotion.restored_at", now)
    return current, previous


def _alias_version(client, name: str, alias: str) -> int | None:
    from mlflow.exceptions import MlflowException

    try:
        return int(client.get_model_version_by_alias(name, alias).version)
    except MlflowException:
        return None


def _history(client, name: str) -> list[int]:
    text = client.get_registered_model(name).tags.get(HISTORY_TAG, "")
    return [int(x) for x in text.split(",") if x.strip()]


def _record(client, name: str, d: Decision) -> None:
    now = datetime.now(UTC).isoformat(timespec="seconds")
    common = {
        "decision": d.outcome,
        "reason": d.reason,
        "test": d.test,
        "p_value": "" if d.p_value is None else f"{d.p_value:.6g}",
        "delta": "" if d.delta is None else f"{d.delta:.6f}",
        "scores": json.dumps(d.scores, sort_keys=True),
        "flow_run_id": d.flow_run_id or "",
        "at": now,
    }
    for key, value in common.items():
        client.set_model_version_tag(name, str(d.candidate), f"azr.promotion.{key}", value)
        client.set_model_version_tag(name, str(d.candidate), "azr.promotion.against", str(d.champion or ""))
    if d.champion is not None and d.champion != d.candidate:
        summary = json.dumps({**common, "role": "champion", "candidate": d.candidate}, sort_keys=True)
        client.set_model_version_tag(name, str(d.champion), f"azr.promotion.challenge.{d.candidate}", summary[:5000])
