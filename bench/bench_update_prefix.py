"""The update with a micro-batch's shared prompt prefix run once vs every row run whole: the same step, timed.

    .venv/bin/python bench/bench_update_prefix.py                 # both sides interleaved in one process, 3 runs
    .venv/bin/python bench/bench_update_prefix.py --only shared   # one side alone: its peak memory (max RSS)
    .venv/bin/python bench/bench_update_prefix.py --micro-batch-sizes 4,6   # shared prefix, micro-batch 4 vs 6

Builds cpu-tiny proposer answers on the real compact prompts (with the banned list, K = 2 references: the prompts of a
type share their instructions), the way bench_update_pieces.py does, and times one `train_step` per side on two
trainers loaded alike (`trainer.shared_prefix_min_tokens` 64 vs 0). Prints the median seconds of each side, their
ratio and the gradient norms (equal up to float noise: the same gradient). With `--micro-batch-sizes`, both sides
share the prefix and differ in `trainer.micro_batch_size`: a micro-batch runs its rows' shared prefix once, so a
group split over two micro-batches runs it twice.
"""

from __future__ import annotations

import argparse
import resource
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.bench_update_pieces import answers, time_train_steps  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--answers", type=int, default=12, help="answers in the update batch (cpu-tiny: 12 proposals)")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--only", choices=["shared", "whole"], default=None, help="run one side alone (peak memory)")
    ap.add_argument("--micro-batch-sizes", metavar="A,B", help="compare two micro-batch sizes, the prefix shared")
    args = ap.parse_args()
    if args.only and args.micro_batch_sizes:
        ap.error("--only times one side of shared vs whole; drop it with --micro-batch-sizes")
    parts = args.micro_batch_sizes.split(",") if args.micro_batch_sizes else []
    sizes = [int(x) for x in parts if x.strip().isdigit()]
    if parts and (len(parts) != 2 or len(sizes) != 2 or min(sizes) < 1):
        ap.error(f"--micro-batch-sizes takes two sizes of at least 1, like 4,6; got {args.micro_batch_sizes!r}")

    import torch

    from azr_core.config import load_config
    from azr_core.policy.model import resolve_model_path
    from azr_core.policy.trainer.engine import PolicyTrainer
    from azr_core.selfplay.sampling import training_records

    torch.manual_seed(0)
    cfg = load_config(None, [], profile="cpu-tiny")
    cfg.model.name_or_path = resolve_model_path(cfg.model)
    if sizes:
        sides = {f"micro {m}": {"shared_prefix_min_tokens": 64, "micro_batch_size": m} for m in sizes}
    else:
        sides = {"shared": {"shared_prefix_min_tokens": 64}, "whole": {"shared_prefix_min_tokens": 0}}
    names = [args.only] if args.only else list(sides)
    trainers = {n: PolicyTrainer(cfg.model, cfg.trainer.model_copy(update=sides[n])) for n in names}
    tok = next(iter(trainers.values())).tokenizer
    # answers alternate deduction and abduction prompts: grouped by type, as the update batch is (stages.group_order)
    made = answers(tok, cfg, args.answers)
    records = [r for k in (0, 1) for pieces, adv in made[k::2] for r in training_records(pieces, adv, f"g{k}")]
    prompt = sum(len(r.prompt_token_ids) for r in records) / len(records)
    mbs = f"micro-batch sizes {sizes[0]} and {sizes[1]}" if sizes else f"micro-batch {cfg.trainer.micro_batch_size}"
    print(f"{len(records)} sequences, prompts {prompt:.0f} tokens on average, {mbs}")
    med = time_train_steps({n: (t, records) for n, t in trainers.items()}, args.runs)
    if args.only:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
        print(f"{args.only}: peak memory (max RSS) {peak:.2f} GiB")
    else:
        first, second = names
        print(f"ratio {first} / {second}: {med[first] / med[second]:.2f}")


if __name__ == "__main__":
    main()
