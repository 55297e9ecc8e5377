"""An answer skeleton's blocks trained as one sequence vs one sequence per block: the same update, timed.

    .venv/bin/python bench/bench_update_pieces.py                  # the default model, cpu-tiny trainer, 3 runs

Builds cpu-tiny proposer answers the way sampling does (the real compact deduction and abduction prompts on the zero
triplet, the real tokenizer: a program block, then an ```input block opened by the skeleton), turns them into update
records both ways (`azr_core.selfplay.sampling.training_records` and one record per block), and times one
`train_step` of each on two trainers loaded alike, interleaved run by run in this process. Prints how many answers
the tokenizer let merge, the median seconds of each side, their ratio, and the two gradient norms (equal up to float
noise: the same gradient).
"""

from __future__ import annotations

import argparse
import statistics
import time

PROGRAMS = [
    ("def f(x):\n    return x * 2", "3"),
    ("def f(s):\n    return s[::-1]", "'abc'"),
    ("def f(a, b):\n    return a + b", "1, 2"),
    ("def f(xs):\n    return sorted(xs)[0]", "[3, 1, 2]"),
    ("def f(n):\n    return sum(range(n))", "5"),
    ("def f(d):\n    return len(d)", "{'a': 1}"),
]


def answers(tok, cfg, count: int):
    """(pieces, advantage) of `count` proposer answers, built as `_sample_skeleton` builds them."""
    from azr_core.algo.prompts import block_opening, proposer_messages, render, response_prefill
    from azr_core.algo.tasks import TaskType, seed_tasks
    from azr_core.policy.rollout.base import Completion

    refs = {t.task_type: t for t in seed_tasks()}
    out = []
    for k in range(count):
        task_type = (TaskType.DEDUCTION, TaskType.ABDUCTION)[k % 2]
        messages = proposer_messages(task_type, [refs[task_type]], compact=True)
        prompt = render(tok, messages, prefill=response_prefill("skeleton", "propose", task_type), template="chat")
        program, inp = PROGRAMS[k % len(PROGRAMS)]
        first = program + "\n```"
        ids0 = tok(prompt)["input_ids"]
        c1 = tok(first, add_special_tokens=False)["input_ids"]
        context = prompt + first + block_opening("input")
        c2 = tok(inp + "\n```", add_special_tokens=False)["input_ids"]
        pieces = [
            (ids0, Completion(first, c1, [-1.0] * len(c1), "stop")),
            (tok(context)["input_ids"], Completion(inp + "\n```", c2, [-1.0] * len(c2), "stop")),
        ]
        out.append((pieces, 1.0 if k % 3 else -0.5))
    return out


def time_train_steps(sides: dict, runs: int) -> dict[str, float]:
    """One `train_step` per side and run, the order alternating run by run; prints each side's times and gradient
    norms and returns the median seconds by side. `sides`: name -> (trainer, records)."""
    times: dict[str, list[float]] = {k: [] for k in sides}
    norms: dict[str, list[float]] = {k: [] for k in sides}
    for run in range(runs):
        for name in list(sides) if run % 2 == 0 else list(reversed(sides)):
            trainer, records = sides[name]
            t0 = time.perf_counter()
            m = trainer.train_step(records)
            times[name].append(time.perf_counter() - t0)
            norms[name].append(m["grad_norm"])
    med = {k: statistics.median(v) for k, v in times.items()}
    for k in times:
        print(f"{k:10s} train_step median {med[k]:.2f}s over {runs} runs {[round(t, 2) for t in times[k]]}; "
              f"grad norms {[round(g, 6) for g in norms[k]]}")  # fmt: skip
    return med


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--answers", type=int, default=12, help="answers in the update batch (cpu-tiny: 12 proposals)")
    ap.add_argument("--runs", type=int, default=3)
    args = ap.parse_args()

    import torch

    from azr_core.config import load_config
    from azr_core.policy.model import resolve_model_path
    from azr_core.policy.trainer.engine import PolicyTrainer
    from azr_core.policy.trainer.records import SequenceRecord
    from azr_core.selfplay.sampling import training_records

    torch.manual_seed(0)
    cfg = load_config(None, [], profile="cpu-tiny")
    cfg.model.name_or_path = resolve_model_path(cfg.model)
    merged_t, split_t = PolicyTrainer(cfg.model, cfg.trainer), PolicyTrainer(cfg.model, cfg.trainer)
    tok = merged_t.tokenizer
    batch = answers(tok, cfg, args.answers)
    merged = [r for pieces, adv in batch for r in training_records(pieces, adv, "propose/deduction")]
    split = [SequenceRecord(ids, c.token_ids, c.logprobs, adv, "propose/deduction")
             for pieces, adv in batch for ids, c in pieces]  # fmt: skip
    joined = sum(1 for pieces, adv in batch if len(training_records(pieces, adv, "g")) == 1)

    def tokens(records: list[SequenceRecord]) -> int:
        return sum(len(r.prompt_token_ids) + len(r.completion_token_ids) for r in records)

    print(f"{len(batch)} answers, {joined} merged into one sequence by the tokens; forward tokens: "
          f"{tokens(merged)} merged vs {tokens(split)} per block")  # fmt: skip
    med = time_train_steps({"merged": (merged_t, merged), "per block": (split_t, split)}, args.runs)
    print(f"ratio merged / per block: {med['merged'] / med['per block']:.2f}")


if __name__ == "__main__":
    main()
