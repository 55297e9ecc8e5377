"""`azr eval run`: generate answers with a model, grade them, write the `evals` table and log the scores.

    evaluate("models:/azr-policy@champion", EvalConfig(suite="cruxeval-o", limit=50), run_dir="runs/azr")

MODEL is a folder, an HF id, `models:/azr-policy/N` or `models:/azr-policy@alias`; a registered version's scores go
to MLflow on the training run that made it (metric `eval/<bench>` at its iteration's step) and on the version
itself (tags `azr.eval.<bench>`; MLflow names allow no `+` or `@`: `humanevalplus`, `pass_at_k`), with the per-item
verdicts as a run artifact the promotion gate reads.
"""

from __future__ import annotations

import shutil
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from azr_core.eval import benchmarks
from azr_core.eval.codetests import CodeLimits
from azr_core.eval.config import EvalConfig
from azr_core.eval.prompts import build_prompt, stop_strings
from azr_core.eval.scoring import Graders, bench_score, score


@dataclass
class ModelRef:
    """What `--model` named, resolved: a local folder or HF id to load, and its registry identity if any."""

    spec: str
    path: str
    version: int | None = None
    iteration: int | None = None
    run_id: str | None = None
    registered_model: str | None = None
    tmp: Path | None = None

    def cleanup(self) -> None:
        if self.tmp is not None:
            shutil.rmtree(self.tmp, ignore_errors=True)


@dataclass
class BenchResult:
    bench: str
    n: int
    correct: int
    scores: dict[str, float]  # pass@k -> value
    items: dict[str, list[bool]]  # item id -> verdict per sample
    gen_s: float
    grade_s: float
    executor_s: float
    completion_tokens: int


@dataclass
class EvalResult:
    eval_id: str
    model: str
    version: int | None
    iteration: int | None
    limit: int | None
    benches: dict[str, BenchResult] = field(default_factory=dict)
    registered_model: str | None = None  # the registry name of a models:/ URI; None for a folder or an HF id

    def score(self, bench: str) -> float:
        return self.benches[bench].scores["pass@1"]

    def summary(self) -> dict[str, Any]:
        return {
            "eval_id": self.eval_id,
            "model": self.model,
            "version": self.version,
            "registered_model": self.registered_model,
            "iteration": self.iteration,
            "scores": {b: r.scores for b, r in self.benches.items()},
            "n": {b: r.n for b, r in self.benches.items()},
        }


def resolve_model(spec: str, *, tracking_uri: str | None = None) -> ModelRef:
    """A folder or HF id is used as is; a `models:/` URI is downloaded from the registry (the caller cleans up)."""
    if not spec.startswith("models:/"):
        return ModelRef(spec=spec, path=spec)
    from azr_core.tracking.registry import load_model_folder
    from azr_core.tracking.runs import TAG_ITERATION
    from azr_core.tracking.store import mlflow_client, resolve_tracking_uri

    uri = resolve_tracking_uri(tracking_uri)
    client = mlflow_client(uri)
    head = spec.removeprefix("models:/").strip("/").split("/")
    if "@" in head[0]:
        name, alias = head[0].split("@", 1)
        mv = client.get_model_version_by_alias(name, alias)
    elif len(head) >= 2:
        name = head[0]
        mv = client.get_model_version(name, head[1])
    else:
        raise ValueError(f"{spec}: expected models:/<name>/<version> or models:/<name>@<alias>")
    tmp = Path(tempfile.mkdtemp(prefix="azr-eval-model-"))
    path = load_model_folder(f"models:/{name}/{mv.version}", tmp, tracking_uri=uri)
    iteration = mv.tags.get(TAG_ITERATION)
    return ModelRef(spec=spec, path=str(path), version=int(mv.version), run_id=mv.run_id, registered_model=name,
                    iteration=int(iteration) if iteration is not None else None, tmp=tmp)  # fmt: skip


def evaluate(
    model: str,
    cfg: EvalConfig,
    *,
    run_dir: str | Path | None = None,
    tracking_uri: str | None = None,
    log_mlflow: bool = True,
    backend: Any = None,
    graders: Graders | None = None,
    progress=print,
) -> EvalResult:
    """Evaluate `model` on `cfg.suite`: generate, grade, write rows under `run_dir` (if given), log to MLflow.

    `backend` (a RolloutBackend) and `graders` may be passed in to reuse them across calls; otherwise they are made
    here and closed at the end.
    """
    names = benchmarks.resolve_suite(cfg.suite)
    bad_k = [k for k in cfg.pass_k if k > cfg.samples]
    if bad_k:
        raise ValueError(f"pass@{bad_k[0]} needs samples >= {bad_k[0]} (samples = {cfg.samples})")
    ref = resolve_model(model, tracking_uri=tracking_uri)
    own_backend, own_graders = backend is None, graders is None
    try:
        if backend is None:
            backend = _make_backend(ref.path, cfg, progress)
        if graders is None:
            limits = CodeLimits(cfg.gt_time_limit_factor, cfg.min_time_limit_s, cfg.task_timeout_s)
            graders = Graders(limits, cfg.executor_workers)
        tokenizer = getattr(backend, "tokenizer", None)
        if cfg.template == "chat" and tokenizer is None:
            from azr_core.policy.config import ModelConfig
            from azr_core.policy.model import load_tokenizer

            tokenizer = load_tokenizer(ModelConfig(name_or_path=ref.path), path=ref.path)
        result = EvalResult(uuid.uuid4().hex[:12], model, ref.version, ref.iteration, cfg.limit,
                            registered_model=ref.registered_model)  # fmt: skip
        for bench in names:
            items = benchmarks.load(bench, cfg.data_dir, limit=cfg.limit)
            result.benches[bench] = _evaluate_bench(bench, items, cfg, backend, tokenizer, graders, result, run_dir)
            r = result.benches[bench]
            progress(f"{bench}: {r.scores['pass@1']:.3f} ({r.correct}/{r.n * cfg.samples}); "
                     f"generation {r.gen_s:.1f}s, grading {r.grade_s:.1f}s")  # fmt: skip
        if log_mlflow and ref.version is not None:
            log_scores(result, ref, cfg, tracking_uri=tracking_uri)
        return result
    finally:
        if own_graders and graders is not None:
            graders.close()
        if own_backend and backend is not None:
            backend.close()
        ref.cleanup()


def _make_backend(path: str, cfg: EvalConfig, progress):
    from azr_core.policy.config import ModelConfig, RolloutConfig
    from azr_core.policy.rollout import make_backend

    rollout = RolloutConfig(backend=cfg.backend, temperature=cfg.temperature, top_p=cfg.top_p,
                            max_new_tokens=cfg.max_new_tokens, batch_size=cfg.batch_size, n=cfg.samples,
                            seed=cfg.seed)  # fmt: skip
    return make_backend(ModelConfig(name_or_path=path), rollout, progress=progress)


def _evaluate_bench(bench, items, cfg: EvalConfig, backend, tokenizer, graders: Graders, result: EvalResult,
                    run_dir) -> BenchResult:  # fmt: skip
    from azr_core.policy.rollout.base import SamplingParams

    prompts = [build_prompt(bench, it, cfg.template, tokenizer) for it in items]
    params = SamplingParams(n=cfg.samples, temperature=cfg.temperature, top_p=cfg.top_p,
                            max_new_tokens=cfg.max_new_tokens, stop=stop_strings(bench, cfg.template),
                            seed=cfg.seed if cfg.temperature > 0 else None)  # fmt: skip
    t0 = time.perf_counter()
    outputs = backend.generate(prompts, params)
    gen_s = time.perf_counter() - t0
    flat_items, flat_prompts, texts, tokens, sample = [], [], [], [], []
    for it, prompt, out in zip(items, prompts, outputs, strict=True):
        for j, comp in enumerate(out.completions):
            flat_items.append(it)
            flat_prompts.append(prompt)
            texts.append(comp.text)
            tokens.append(len(comp.token_ids))
            sample.append(j)
    exec_before = graders.executor_seconds()
    t1 = time.perf_counter()
    grades = score(bench, flat_items, texts, graders)
    grade_s = time.perf_counter() - t1
    per_item: dict[str, list[bool]] = {}
    for g in grades:
        per_item.setdefault(g.id, []).append(g.correct)
    scores = {f"pass@{k}": bench_score(grades, k) for k in cfg.pass_k}
    scores.setdefault("pass@1", bench_score(grades, 1))
    if run_dir is not None:
        from azr_core.eval.store import write_evals

        now = datetime.now(UTC)
        rows = [
            {
                "eval_id": result.eval_id,
                "model": result.model,
                "model_version": result.version,
                "iteration": result.iteration,
                "bench": bench,
                "item_id": g.id,
                "sample": s,
                "template": cfg.template,
                "prompt": p,
                "completion": c,
                "answer": g.answer,
                "correct": g.correct,
                "reason": g.reason,
                "completion_tokens": n,
                "created_at": now,
            }  # fmt: skip
            for g, s, p, c, n in zip(grades, sample, flat_prompts, texts, tokens, strict=True)
        ]
        write_evals(run_dir, result.eval_id, bench, rows)
    return BenchResult(bench, len(items), sum(g.correct for g in grades), scores, per_item, gen_s, grade_s,
                       graders.executor_seconds() - exec_before, sum(tokens))  # fmt: skip


def mlflow_bench_name(bench: str) -> str:
    """A benchmark's name as MLflow metric and tag names allow it: `humaneval+` is `humanevalplus`."""
    return bench.replace("+", "plus")


def items_artifact(version: int, bench: str) -> str:
    """Where a version's per-item verdicts on `bench` live among its training run's artifacts."""
    return f"evals/version-{version}/{mlflow_bench_name(bench)}.json"


def log_scores(result: EvalResult, ref: ModelRef, cfg: EvalConfig, *, tracking_uri: str | None = None) -> None:
    """Scores to MLflow: metrics `eval/<bench>[/pass@k]` on the version's training run at its iteration, tags
    `azr.eval.<bench>` on the version, and the per-item verdicts as a run artifact (read by the promotion gate)."""
    import json

    from mlflow.entities import Metric

    from azr_core.tracking.store import mlflow_client, resolve_tracking_uri

    client = mlflow_client(resolve_tracking_uri(tracking_uri))
    step = ref.iteration or 0
    ts = int(time.time() * 1000)
    metrics, tags = [], {}
    for bench, r in result.benches.items():
        safe = mlflow_bench_name(bench)
        for key, value in r.scores.items():
            k = key.replace("pass@", "pass_at_")  # MLflow names allow no '@' (nor '+')
            metrics.append(Metric(f"eval/{safe}" if key == "pass@1" else f"eval/{safe}/{k}", value, ts, step))
            tags[f"azr.eval.{safe}" + ("" if key == "pass@1" else f".{k}")] = f"{value:.6f}"
        tags[f"azr.eval.{safe}.n"] = str(r.n)
        if ref.run_id:
            payload = {"version": ref.version, "bench": bench, "limit": cfg.limit, "n": r.n, "eval_id": result.eval_id,
                       "template": cfg.template, "samples": cfg.samples, "items": r.items}  # fmt: skip
            client.log_text(ref.run_id, json.dumps(payload), items_artifact(ref.version, bench))
    tags["azr.eval.last_eval_id"] = result.eval_id
    if ref.run_id:
        client.log_batch(ref.run_id, metrics=metrics, synchronous=True)
    for key, value in tags.items():
        client.set_model_version_tag(ref.registered_model, str(ref.version), key, value)
