"""Does self-play learn on the embedded default? N `cpu-tiny` iterations through the real flow, and a fixed probe.

The probe: greedy solver answers to the same CRUXEval items before training and every `--every` iterations (64
CRUXEval-O items as deduction tasks, 64 CRUXEval-I items as abduction tasks, from the first half of CRUXEval that ships
in azr_core/eval/data), with the run's own solver prompts, graded by the sandboxed executor and rewarded by the
same reward function as training. It prints a table per iteration (from the run's `iterations` table) and the probe's
mean solver reward and accuracy with 95% bootstrap intervals, and the interval of the change from the first probe to
the last (paired over items). The probe is fixed before the run and never tuned to its result.

    .venv/bin/python bench/bench_learning.py                      # 30 iterations, probes at 0, 10, 20, 30
    .venv/bin/python bench/bench_learning.py --iterations 2 --every 1 --probe-items 8   # a quick look
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

DATA = Path(__file__).resolve().parents[1] / "azr_core" / "eval" / "data" / "cruxeval_dev.jsonl"
TYPES = ("deduction", "abduction", "induction")


def probe_tasks(path: Path, per_side: int):
    """The first `per_side` CRUXEval items as deduction (CRUXEval-O) and as abduction (CRUXEval-I) tasks."""
    from azr_core.algo.tasks import Task, TaskType

    items = [json.loads(line) for line in path.read_text().splitlines() if line.strip()][:per_side]
    ded = [Task(TaskType.DEDUCTION, it["code"], it["input"], it["output"]) for it in items]
    abd = [Task(TaskType.ABDUCTION, it["code"], it["input"], it["output"]) for it in items]
    return ded + abd


def run_probe(cfg, model_dir: str | None, tasks, executor, max_new_tokens: int) -> list[tuple[float, bool]]:
    """Greedy answers of the model in `model_dir` (None: the base model); (solver reward, correct) per task. The
    prompts, the answer skeleton, the parser and the reward are the run's own (cpu-tiny's)."""
    import types

    import torch

    from azr_core.algo.prompts import render, response_prefill, solver_messages
    from azr_core.algo.proposals import grade_request, parse_answer
    from azr_core.algo.rewards import solver_reward
    from azr_core.policy.model import load_model, load_tokenizer, resolve_model_path
    from azr_core.policy.rollout.hf import HFBackend
    from azr_core.selfplay.sampling import sample

    sp = cfg.selfplay
    greedy = cfg.model_copy(deep=True)
    greedy.rollout.temperature, greedy.rollout.max_new_tokens = 0.0, max_new_tokens
    base = resolve_model_path(cfg.model, progress=None)
    tok = load_tokenizer(cfg.model, path=base)
    model = load_model(cfg.model, device="cpu", path=model_dir or base)
    policy = HFBackend(model, tok, batch_size=16)
    prompts = [
        render(
            tok,
            solver_messages(t, compact=sp.compact_prompts),
            template=sp.prompt_template,
            prefill=response_prefill(sp.response_prefill, "solve", t.task_type),
        )  # fmt: skip
        for t in tasks
    ]
    session = types.SimpleNamespace(cfg=greedy, tokenizer=tok, policy=policy)
    with torch.inference_mode():
        sampled, dropped = sample(session, prompts, "solve", [t.task_type for t in tasks], 1, "probe")
    if dropped:
        raise RuntimeError(f"{dropped} probe prompts exceed selfplay.max_prompt_tokens")
    answers = [
        parse_answer(
            tasks[i].task_type,
            samples[0].text,
            think_prefilled=sp.response_prefill != "none",
            lenient=sp.lenient_parsing,
            empty_is_format_error=cfg.rewards.empty_answer_is_format_error,
            parsing=sp.answer_parsing,
        )  # fmt: skip
        for i, _, samples in sampled
    ]
    gradable = [i for i, a in enumerate(answers) if a.answer is not None]
    grades = executor.grade_many([grade_request(tasks[i], answers[i].answer) for i in gradable]) if gradable else []
    correct = [False] * len(tasks)
    for i, g in zip(gradable, grades, strict=True):
        correct[i] = bool(g.correct and answers[i].format_ok)
    rewards = solver_reward(["" for _ in tasks], format_ok=[a.format_ok for a in answers], correct=correct)
    del model, policy
    return list(zip(rewards, correct, strict=True))


def bootstrap(values: list[float], reps: int = 10_000, seed: int = 0) -> tuple[float, float, float]:
    """Mean and 95% percentile-bootstrap interval."""
    rng = random.Random(seed)
    n = len(values)
    means = sorted(statistics.fmean(rng.choices(values, k=n)) for _ in range(reps))
    return statistics.fmean(values), means[int(0.025 * reps)], means[int(0.975 * reps) - 1]


def iteration_table(run_dir: str) -> list[str]:
    from azr_core.store import connect

    con = connect(run_dir)
    rows = con.execute("SELECT iteration, wall_s, metrics FROM iterations WHERE stage = 'train' ORDER BY 1").fetchall()
    # groups with signal: (role, type) groups of the update batch where some advantage is non-zero (of 6)
    live = dict(con.execute(
        "SELECT iteration, count(DISTINCT role || task_type) FILTER (WHERE advantage <> 0) FROM rollouts "
        "WHERE in_batch GROUP BY 1").fetchall())  # fmt: skip
    head = ["it", "wall_s", "live", "att"]
    for t in TYPES:
        k = t[:3]
        head += [f"{k}:p_fmt", f"{k}:p_val", f"{k}:p_new", f"{k}:s_fmt", f"{k}:s_acc", f"{k}:r_prop", f"{k}:r_solve"]
    head += ["loss", "steps", "trained", "seed", "propose", "exec", "solve", "reward", "update", "upd:recomp",
             "upd:steps", "upd:ckpt"]  # fmt: skip
    for t in TYPES:  # the proposer measures (azr_core/algo/proposer_measures.py): novel tasks and programs, and so on
        head += [f"{t[:3]}:{c}" for c in NOVELTY_COLUMNS]
    lines = ["\t".join(head)]
    for it, wall, m in rows:
        m = dict(m)
        cells = [str(it), f"{wall:.0f}", str(live.get(it, 0)), f"{m.get('attempts', 1):.0f}"]
        for t in TYPES:
            cells += [f"{m.get(k, float('nan')):.2f}" for k in (
                f"format_rate/propose/{t}", f"valid_rate/{t}", f"distinct_new_rate/{t}", f"format_rate/solve/{t}",
                f"solve_accuracy/{t}", f"reward_mean/propose/{t}", f"reward_mean/solve/{t}")]  # fmt: skip
        cells += [f"{m.get('train/loss', float('nan')):.4f}", f"{m.get('train/optimizer_steps', 0):.0f}",
                  f"{m.get('train/sequences', 0):.0f}"]  # fmt: skip
        cells += [f"{m.get(f'seconds/{s}', 0):.0f}" for s in
                  ("seed", "propose", "execute_validate", "solve", "reward", "update")]  # fmt: skip
        cells += [f"{m.get(f'train/seconds_{s}', 0):.0f}" for s in ("recompute", "steps", "checkpoint")]
        for t in TYPES:
            programs = "novel_task_programs" if t == "induction" else "novel_programs"
            cells += [f"{m.get(k, float('nan')):{f}}" for k, f in (
                (f"novel_tasks/{t}", ".0f"), (f"{programs}/{t}", ".0f"), (f"novel_learnable_share/{t}", ".2f"),
                (f"complexity/{t}", ".1f"), (f"edit_distance_norm/{t}", ".2f"))]  # fmt: skip
        lines.append("\t".join(cells))
    return lines


#: Per type, after the stage seconds: novel tasks, novel programs (induction: distinct programs behind its novel
#: tasks), the share of novel tasks learnable at birth, the mean cognitive complexity of the novel programs, and the
#: mean normalised AST edit distance of the valid proposals to their references (nan where there is nothing to average).
NOVELTY_COLUMNS = ("novel", "nprog", "learn", "cplx", "ted")


def novelty_summary(run_dir: str) -> list[str]:
    """Over the whole run, per type: novel tasks, the distinct programs behind them (canonical: comments aside),
    how many were learnable at birth, and the mean complexity and edit distance of the valid proposals."""
    from azr_core.algo.program_keys import program_key
    from azr_core.algo.proposer_measures import learnable
    from azr_core.store import connect

    con = connect(run_dir)
    rows = con.execute(
        "SELECT task_type, program, novel, solve_rate, complexity, edit_distance_norm FROM proposals "
        "WHERE stage = 'propose' AND valid"
    ).fetchall()
    out = []
    for t in TYPES:
        mine = [r for r in rows if r[0] == t]
        novel = [r for r in mine if r[2]]
        learn = sum(learnable(r[3]) for r in novel)
        cplx = [r[4] for r in mine if r[4] is not None]
        ted = [r[5] for r in mine if r[5] is not None]
        out.append(
            f"{t}: {len(novel)} novel tasks from {len({program_key(r[1] or '') for r in novel})} distinct programs, "
            f"{learn} learnable at birth ({learn / len(novel) if novel else 0:.2f}); valid proposals {len(mine)}: "
            f"mean complexity {statistics.fmean(cplx) if cplx else float('nan'):.2f}, "
            f"mean edit distance to references {statistics.fmean(ted) if ted else float('nan'):.2f} (normalised)"
        )
    return out


def summary(run_dir: str) -> list[str]:
    """The iteration table, then the median iteration time, its split by stage, and the iterations with no gradient."""
    lines = iteration_table(run_dir)
    rows = [dict(zip(lines[0].split("\t"), line.split("\t"), strict=True)) for line in lines[1:]]
    if not rows:
        return lines
    walls = [float(r["wall_s"]) for r in rows]
    out = [*lines, f"median iteration wall time: {statistics.median(walls):.0f}s over {len(walls)} iterations"]
    later = rows[1:] or rows  # the first iteration also pays for seeding
    out.append(
        f"median wall time after the seeding iteration: {statistics.median(float(r['wall_s']) for r in later):.0f}s"
    )
    stages = ("propose", "exec", "solve", "reward", "update", "upd:recomp", "upd:steps", "upd:ckpt")
    out.append("  median seconds by stage after it: " + ", ".join(
        f"{k} {statistics.median(float(r[k]) for r in later):.0f}" for k in stages))  # fmt: skip
    out += ["what the proposer invented (novel: canonical program + input value(s) new to the run):"]
    out += [f"  {line}" for line in novelty_summary(run_dir)]
    dead = [r["it"] for r in rows if r["live"] == "0"]
    resampled = [r["it"] for r in rows if r["att"] != "1"]
    out.append(f"iterations with every group degenerate (no gradient): {len(dead)} {dead}")
    out.append(f"iterations whose batch was sampled again (no live group at first): {len(resampled)} {resampled}")
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--iterations", type=int, default=30)
    ap.add_argument("--every", type=int, default=10, help="probe every this many iterations")
    ap.add_argument("--probe-items", type=int, default=64, help="CRUXEval items per side (O and I)")
    ap.add_argument("--probe-tokens", type=int, default=48, help="most new tokens of a probe answer")
    ap.add_argument("--data", default=str(DATA), help="CRUXEval jsonl (code, input, output)")
    ap.add_argument("--run-dir", default=None, help="run folder (default: a new temp folder)")
    ap.add_argument("--summary-of", default=None, help="only print the iteration summary of this run folder")
    ap.add_argument("overrides", nargs="*", help="config overrides key.sub=value")
    args = ap.parse_args()
    if args.summary_of:
        print("\n".join(summary(args.summary_of)))
        return
    run_dir = args.run_dir or tempfile.mkdtemp(prefix="azr-bench-learning-")
    state = tempfile.mkdtemp(prefix="azr-bench-mlflow-")
    os.environ.setdefault("MLFLOW_TRACKING_URI", f"sqlite:///{state}/mlflow.db")
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")  # the temporary server: nothing leaves

    from azr_core.config import load_config
    from azr_core.executor import Executor
    from azr_core.store import read_commit
    from flows.self_play import self_play

    overrides = [f"run.run_dir={run_dir}", "tracking.register_every=0", *args.overrides]
    cfg = load_config(None, overrides, profile="cpu-tiny")
    tasks = probe_tasks(Path(args.data), args.probe_items)
    print(f"run folder {run_dir}; probe: {len(tasks)} items; load average {os.getloadavg()}", flush=True)
    probes: dict[int, list[tuple[float, bool]]] = {}
    with Executor(cfg.executor).start() as ex:
        t0 = time.perf_counter()
        probes[0] = run_probe(cfg, None, tasks, ex, args.probe_tokens)
        print(f"probe at iteration 0: {time.perf_counter() - t0:.0f}s", flush=True)
    done = 0
    while done < args.iterations:
        chunk = min(args.every, args.iterations - done)
        self_play(profile="cpu-tiny", overrides=overrides, iterations=chunk)
        done = read_commit(run_dir).iteration
        ckpt = Path(run_dir) / "checkpoints" / f"{done:06d}" / "hf"
        with Executor(cfg.executor).start() as ex:
            t0 = time.perf_counter()
            probes[done] = run_probe(cfg, str(ckpt), tasks, ex, args.probe_tokens)
            print(f"probe at iteration {done}: {time.perf_counter() - t0:.0f}s; load {os.getloadavg()}", flush=True)
        print("\n".join(iteration_table(run_dir)), flush=True)

    print("\n# iterations")
    print("\n".join(summary(run_dir)))
    print("\n# probe (greedy; mean [95% bootstrap interval])")
    half = len(tasks) // 2
    for it, res in sorted(probes.items()):
        r = [x[0] for x in res]
        a = [float(x[1]) for x in res]
        print(f"iteration {it:3d}: reward {_fmt(bootstrap(r))}  accuracy {_fmt(bootstrap(a))}  "
              f"O {statistics.fmean(a[:half]):.3f} I {statistics.fmean(a[half:]):.3f}  "
              f"format {statistics.fmean(x[0] > -1 for x in res):.3f}")  # fmt: skip
    first, last = min(probes), max(probes)
    if last != first:
        dr = [b[0] - a[0] for a, b in zip(probes[first], probes[last], strict=True)]
        da = [float(b[1]) - float(a[1]) for a, b in zip(probes[first], probes[last], strict=True)]
        print(f"change {first} -> {last}: reward {_fmt(bootstrap(dr))}  accuracy {_fmt(bootstrap(da))}")
        lo = bootstrap(dr)[1]
        print("reward change interval lies above zero" if lo > 0 else "reward change interval does NOT lie above zero")


def _fmt(stats: tuple[float, float, float]) -> str:
    return f"{stats[0]:+.3f} [{stats[1]:+.3f}, {stats[2]:+.3f}]"


if __name__ == "__main__":
    main()
