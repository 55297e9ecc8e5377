"""Rollout speed on the `cpu-tiny` shapes: the propose and solve stages' generation through each hf engine.

The prompts are a real iteration's: the stages' own prompt builders and sampling (azr_core.selfplay.stages) with
cpu-tiny's settings, over buffers holding CRUXEval programs (the first items of the half that ships in
azr_core/eval/data) as references. Per stage and engine, interleaved and repeated (medians of --runs):

- seconds, new (sampled) tokens/s, and the stage's prompt tokens/s (the prompts' own length over the stage's time);
- tokens the model actually ran (padding and re-prefilled prompts included) and the share of the machine's measured
  fp32 matmul FLOP/s that generation reached (FLOPs counted per forward: 2 x parameters x tokens run, the vocabulary
  projection only where logits are kept, attention 4 x layers x width x tokens x context).

Paths: `generate` is the path before (transformers' padded `model.generate`, one call per skeleton block, 24
sequences a call, the solves and the learnability rollouts in separate calls); `cached` is the stages as they run now
(azr_core/policy/rollout/decode.py, the cpu-tiny profile's 48 sequences a call, one call for both solver rounds,
prompts sharing a prefix decoded against one copy of it); `cached-flat` is `cached` with a copy of the whole prompt
in every row's cache (as before prefix groups, azr_core/policy/rollout/prefix_groups.py).
Both sample the same distribution; the seeds differ in how they draw, so the texts (and lengths) differ run to run:
compare the tokens/s and the medians.

    .venv/bin/python bench/bench_rollout.py               # 3 interleaved runs of both engines
    .venv/bin/python bench/bench_rollout.py --runs 1 --engines cached
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import sys
import time
import types
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

DATA = Path(__file__).resolve().parents[1] / "azr_core" / "eval" / "data" / "cruxeval_dev.jsonl"


def matmul_flops(size: int = 1024, reps: int = 20) -> float:
    """The machine's fp32 matmul FLOP/s with torch's threads (median of `reps` products of size x size)."""
    import torch

    a, b = torch.randn(size, size), torch.randn(size, size)
    a @ b
    times = []
    for _ in range(reps):
        t = time.perf_counter()
        a @ b
        times.append(time.perf_counter() - t)
    return 2 * size**3 / statistics.median(times)


class FlopCounter:
    """Counts the tokens each forward of the model runs and an estimate of its FLOPs."""

    def __init__(self, model) -> None:
        cfg = model.config
        self.hidden, self.layers, self.vocab = cfg.hidden_size, cfg.num_hidden_layers, cfg.vocab_size
        emb = model.get_input_embeddings().weight.numel()
        self.body = sum(p.numel() for p in model.parameters()) - emb  # the vocabulary projection is counted apart
        self.tokens = self.flops = 0
        self.handle = model.register_forward_pre_hook(self._hook, with_kwargs=True)

    def _hook(self, module, args, kwargs) -> None:
        ids = kwargs.get("input_ids")
        if ids is None:
            return
        b, q = ids.shape
        cache = kwargs.get("cache") or kwargs.get("past_key_values")
        past = cache.get_seq_length() if cache is not None and hasattr(cache, "get_seq_length") else 0
        keep = kwargs.get("logits_to_keep") or q
        keep = keep if isinstance(keep, int) and keep > 0 else q
        self.tokens += b * q
        self.flops += 2 * self.body * b * q + 2 * self.vocab * self.hidden * b * keep
        self.flops += 4 * self.layers * self.hidden * b * q * (past + (q + 1) / 2)

    def reset(self) -> tuple[int, float]:
        out = (self.tokens, self.flops)
        self.tokens = self.flops = 0
        return out


def buffers_and_tasks(n_items: int):
    """Buffers of CRUXEval programs (deduction and abduction tasks) and the solver tasks of one iteration."""
    from azr_core.algo.buffers import TaskBuffers
    from azr_core.algo.tasks import Task, TaskType

    items = [json.loads(line) for line in DATA.read_text().splitlines() if line.strip()][:n_items]
    ded = [Task(TaskType.DEDUCTION, it["code"], it["input"], it["output"]) for it in items]
    abd = [Task(TaskType.ABDUCTION, it["code"], it["input"], it["output"]) for it in items]
    ind = [
        Task(TaskType.INDUCTION, it["code"], shown_inputs=(it["input"],) * 2, shown_outputs=(it["output"],) * 2,
             held_inputs=(it["input"],) * 2, held_outputs=(it["output"],) * 2, message="Transforms its input.")
        for it in items
    ]  # fmt: skip
    return TaskBuffers(ded + abd), ded, abd, ind


def run_stages(cfg, tok, policy, buffers, solve_tasks, learn_tasks, counter, seed: int, merged: bool) -> dict:
    """One propose stage and one solve stage (the solver batch, then learnability rollouts) as an iteration runs
    them; their times, tokens and FLOPs."""
    from azr_core.algo.tasks import TASK_TYPES
    from azr_core.selfplay.stages import _propose_round, _solve_round, _solve_rounds

    s = types.SimpleNamespace(cfg=cfg, tokenizer=tok, policy=policy, buffers=buffers, rng=random.Random(seed))
    out = {}
    types_ = [t for t in TASK_TYPES for _ in range(cfg.selfplay.batch_per_group)]
    counter.reset()
    t0 = time.perf_counter()
    proposals, _ = _propose_round(s, types_, "propose")
    secs = time.perf_counter() - t0
    ran, flops = counter.reset()
    out["propose"] = {
        "s": secs,
        "new_tokens": sum(len(p.completion.token_ids) for p in proposals),
        "prompt_tokens": sum(len(tok(p.prompt)["input_ids"]) for p in proposals),
        "ran_tokens": ran,
        "flops": flops,
    }
    t0 = time.perf_counter()
    k = cfg.selfplay.learnability_rollouts
    if merged:  # the solve stage as it runs: one call for the solves and the learnability rollouts
        (solved, learned), _ = _solve_rounds(s, [(solve_tasks, "solve", 1), (learn_tasks, "learnability", k)])
    else:  # as it ran before: one call per round
        solved, _ = _solve_round(s, solve_tasks, "solve", 1)
        learned, _ = _solve_round(s, learn_tasks, "learnability", k)
    secs = time.perf_counter() - t0
    ran, flops = counter.reset()
    rolls = solved + learned
    out["solve"] = {
        "s": secs,
        "new_tokens": sum(len(r.completion.token_ids) for r in rolls),
        "prompt_tokens": sum(len(tok(r.prompt)["input_ids"]) for r in solved)
        + sum(len(tok(r.prompt)["input_ids"]) for r in learned[::k]),
        "ran_tokens": ran,
        "flops": flops,
    }
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--runs", type=int, default=3, help="interleaved repetitions of each engine")
    ap.add_argument("--engines", default="generate,cached", help="comma-separated: generate, cached, cached-flat")
    ap.add_argument("--learn-tasks", type=int, default=6, help="new tasks given learnability rollouts")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default, one per core)")
    args = ap.parse_args()

    import torch

    if args.threads:
        torch.set_num_threads(args.threads)  # on a busy machine, one thread never waits at a barrier for a second

    from azr_core.config import load_config
    from azr_core.policy.model import load_model, load_tokenizer, resolve_model_path
    from azr_core.policy.rollout.hf import HFBackend

    cfg = load_config(None, [f"rollout.seed={args.seed}"], profile="cpu-tiny")
    path = resolve_model_path(cfg.model, progress=None)
    tok = load_tokenizer(cfg.model, path=path)
    model = load_model(cfg.model, device="cpu", path=path)
    counter = FlopCounter(model)
    k = cfg.selfplay.batch_per_group
    buffers, ded, abd, ind = buffers_and_tasks(max(k, args.learn_tasks) + 4)
    solve_tasks = ded[4 : 4 + k] + abd[4 : 4 + k] + ind[4 : 4 + k]
    learn_tasks = (ded[:2] + abd[:2] + ind[:2] + ded[2:])[: args.learn_tasks]
    peak = matmul_flops()
    engines = [e.strip() for e in args.engines.split(",") if e.strip()]
    print(f"cpu: {_cpu()}, torch threads {torch.get_num_threads()}, fp32 matmul {peak / 1e9:.1f} GFLOP/s")
    print(f"cpu-tiny: {3 * k} proposer prompts, {len(solve_tasks)} solver prompts, {len(learn_tasks)} x "
          f"{cfg.selfplay.learnability_rollouts} learnability rollouts, rollout.max_new_tokens "
          f"{cfg.rollout.max_new_tokens}, skeleton_block_tokens {cfg.selfplay.skeleton_block_tokens}")  # fmt: skip
    results: dict[str, list[dict]] = {e: [] for e in engines}
    for run in range(args.runs):
        for e in engines:
            # `generate` is the path before: 24 sequences a call, one call per solver round; `cached` the stages now
            before = e == "generate"
            cfg_e = load_config(None, [f"rollout.seed={args.seed}", "rollout.batch_size=24"] if before else
                                [f"rollout.seed={args.seed}"], profile="cpu-tiny")  # fmt: skip
            engine, flat = ("cached", True) if e == "cached-flat" else (e, False)
            policy = HFBackend(model, tok, batch_size=cfg_e.rollout.batch_size, engine=engine, prefix_groups=not flat)
            r = run_stages(cfg_e, tok, policy, buffers, solve_tasks, learn_tasks, counter, args.seed + run, not before)
            results[e].append(r)
            secs = f"propose {r['propose']['s']:6.1f} s  solve {r['solve']['s']:6.1f} s"
            print(f"run {run + 1} {e:9s} {secs}", flush=True)
    print()
    print(f"{'engine':9s} {'stage':8s} {'median s':>9s} {'new tok/s':>10s} {'prompt tok/s':>13s} "
          f"{'ran tokens':>11s} {'of peak':>8s}")  # fmt: skip
    summary: dict[str, dict[str, float]] = {}
    for e in engines:
        for stage in ("propose", "solve"):
            rs = [r[stage] for r in results[e]]
            secs = statistics.median(r["s"] for r in rs)
            new = statistics.median(r["new_tokens"] / r["s"] for r in rs)
            prompt = statistics.median(r["prompt_tokens"] / r["s"] for r in rs)
            ran = statistics.median(r["ran_tokens"] for r in rs)
            frac = statistics.median(r["flops"] / r["s"] / peak for r in rs)
            summary[f"{e}/{stage}"] = {"s": secs, "new_tok_s": new, "prompt_tok_s": prompt, "peak": frac}
            print(f"{e:9s} {stage:8s} {secs:9.1f} {new:10.1f} {prompt:13.1f} {ran:11.0f} {frac:8.1%}")
    for base in ("generate", "cached-flat"):
        if base in engines and "cached" in engines:
            for stage in ("propose", "solve"):
                ratio = summary[f"cached/{stage}"]["s"] / summary[f"{base}/{stage}"]["s"]
                tps = summary[f"cached/{stage}"]["new_tok_s"] / summary[f"{base}/{stage}"]["new_tok_s"]
                print(f"{stage}: cached / {base}: time {ratio:.2f}, new tokens/s {tps:.2f}")
    print(json.dumps({k: {m: round(v, 4) for m, v in d.items()} for k, d in summary.items()}))


def _cpu() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip() + f" x{os.cpu_count()}"
    except OSError:
        pass
    return f"{os.cpu_count()} cpus"


if __name__ == "__main__":
    main()
