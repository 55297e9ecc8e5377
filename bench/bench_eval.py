"""Evaluation benchmark on CPU: the default model's greedy scores on stated subsets, and CRUXEval-O throughput
(generation and grading separately) against a plain `model.generate` loop over the same prompts, with the
executor's share of grading time.

    PYTHONPATH=. nice -n 10 python -m bench.bench_eval --limit 8 --crux-limit 16 --max-new-tokens 160
"""

from __future__ import annotations

import argparse
import json
import time

import torch

from azr_core.eval import benchmarks
from azr_core.eval.config import EvalConfig
from azr_core.eval.prompts import build_prompt
from azr_core.eval.run import evaluate
from azr_core.eval.scoring import Graders
from azr_core.policy.config import ModelConfig, RolloutConfig
from azr_core.policy.rollout import make_backend


def loadavg() -> str:
    return open("/proc/loadavg").read().split(" ", 3)[:3].__str__()


def plain_generate(model, tok, prompts: list[str], max_new_tokens: int, batch: int) -> tuple[float, int]:
    """The baseline: tokenizer + model.generate, greedy, left-padded batches, nothing else."""
    tok.padding_side = "left"
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    t0, tokens = time.perf_counter(), 0
    with torch.inference_mode():
        for i in range(0, len(prompts), batch):
            enc = tok(prompts[i : i + batch], return_tensors="pt", padding=True)
            out = model.generate(**enc, max_new_tokens=max_new_tokens, do_sample=False, pad_token_id=tok.pad_token_id)
            new = out[:, enc["input_ids"].shape[1] :]
            tokens += int((new != tok.pad_token_id).sum())
    return time.perf_counter() - t0, tokens


def throughput(backend, graders, n: int, max_new_tokens: int, batch: int, repeats: int) -> dict:
    """CRUXEval-O, same prompts: plain generate loop vs the eval pipeline's generation (without and with the raw
    template's stop strings), interleaved `repeats` times so load drifts hit all alike; then grading alone."""
    import statistics

    from azr_core.eval.prompts import stop_strings
    from azr_core.eval.scoring import score
    from azr_core.policy.rollout.base import SamplingParams

    items = benchmarks.load("cruxeval-o", limit=n)
    prompts = [build_prompt("cruxeval-o", it) for it in items]
    runs: dict[str, list[float]] = {"plain": [], "pipeline_nostop": [], "pipeline_stop": []}
    loads, texts = [], []
    for _ in range(repeats):
        loads.append(loadavg())
        runs["plain"].append(plain_generate(backend.model, backend.tokenizer, prompts, max_new_tokens, batch)[0])
        for key, stop in (("pipeline_nostop", ()), ("pipeline_stop", stop_strings("cruxeval-o", "raw"))):
            params = SamplingParams(temperature=0.0, max_new_tokens=max_new_tokens, stop=stop)
            t0 = time.perf_counter()
            outs = backend.generate(prompts, params)
            runs[key].append(time.perf_counter() - t0)
            texts = [o.completions[0].text for o in outs]
        print({k: v[-1] for k, v in runs.items()}, loads[-1], flush=True)
    grade = []
    for _ in range(repeats):
        before = graders.executor_seconds()
        t0 = time.perf_counter()
        score("cruxeval-o", items, texts, graders)
        grade.append((time.perf_counter() - t0, graders.executor_seconds() - before))
    med = {k: statistics.median(v) for k, v in runs.items()}
    return {
        "items": n, "max_new_tokens": max_new_tokens, "repeats": repeats, "loads": loads,
        "median_s": med, "items_per_s": {k: n / v for k, v in med.items()},
        "ratio_pipeline_nostop_vs_plain": med["pipeline_nostop"] / med["plain"],
        "ratio_pipeline_stop_vs_plain": med["pipeline_stop"] / med["plain"],
        "grade_median_s": statistics.median(g[0] for g in grade),
        "grade_items_per_s": n / statistics.median(g[0] for g in grade),
        "executor_share_of_grading": statistics.median(g[1] / g[0] for g in grade),
    }  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--limit", type=int, default=8)
    ap.add_argument("--crux-limit", type=int, default=16)
    ap.add_argument("--max-new-tokens", type=int, default=160)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--suite", default="all")
    ap.add_argument("--throughput-only", action="store_true", help="Only the CRUXEval-O throughput comparison.")
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    torch.set_num_threads(2)
    backend = make_backend(ModelConfig(), RolloutConfig(backend="hf", temperature=0.0, batch_size=args.batch))
    report = {"max_new_tokens": args.max_new_tokens, "batch": args.batch, "benches": {}}
    with Graders() as graders:
        if args.throughput_only:
            res = throughput(backend, graders, args.crux_limit, args.max_new_tokens, args.batch, args.repeats)
            print(json.dumps(res))
            return
        # Throughput on CRUXEval-O: the pipeline's generation vs a plain generate loop, same prompts, same process.
        items = benchmarks.load("cruxeval-o", limit=args.crux_limit)
        prompts = [build_prompt("cruxeval-o", it) for it in items]
        print("load", loadavg(), flush=True)
        base_s, base_tok = plain_generate(backend.model, backend.tokenizer, prompts, args.max_new_tokens, args.batch)
        print(f"plain generate: {len(items)} items in {base_s:.1f}s ({len(items) / base_s:.3f} items/s, "
              f"{base_tok / base_s:.1f} tok/s) load {loadavg()}", flush=True)  # fmt: skip
        report["plain_generate"] = {"items": len(items), "s": base_s, "tokens": base_tok, "load": loadavg()}
        for bench in benchmarks.resolve_suite(args.suite):
            limit = args.crux_limit if bench.startswith("cruxeval") else args.limit
            cfg = EvalConfig(suite=bench, limit=limit, max_new_tokens=args.max_new_tokens, batch_size=args.batch,
                             backend="hf")  # fmt: skip
            res = evaluate("smollm2-135m-instruct", cfg, backend=backend, graders=graders, log_mlflow=False,
                           progress=lambda m: None)  # fmt: skip
            r = res.benches[bench]
            row = {"n": r.n, "correct": r.correct, "score": r.scores["pass@1"], "gen_s": r.gen_s,
                   "grade_s": r.grade_s, "executor_s": r.executor_s, "tokens": r.completion_tokens,
                   "gen_items_per_s": r.n / r.gen_s, "grade_items_per_s": r.n / max(r.grade_s, 1e-9),
                   "load": loadavg()}  # fmt: skip
            report["benches"][bench] = row
            print(bench, json.dumps(row), flush=True)
    print(json.dumps(report))


if __name__ == "__main__":
    main()
