"""Logits at completion positions only vs at every position: the same update, timed.

    .venv/bin/python bench/bench_update_logits.py                  # the default model, cpu-tiny trainer, 3 runs

The trainer projects onto the vocabulary only the positions that predict a completion token (`logits_to_keep`);
before, it computed logits and a full-vocabulary log-softmax at every position, prompt included, and then masked the
prompt out. This builds the cpu-tiny proposer answers of `bench_update_pieces` (the real prompts and tokenizer, one
merged sequence per answer), and times one `train_step` of each way on two trainers loaded alike, interleaved run by
run in this process. Prints the median seconds of each side, their ratio, and the gradient norms (equal up to float
noise: the same gradient).
"""

from __future__ import annotations

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # `bench` as a package from anywhere


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--answers", type=int, default=12, help="answers in the update batch (cpu-tiny: 12 proposals)")
    ap.add_argument("--runs", type=int, default=3)
    args = ap.parse_args()

    import torch

    from azr_core.config import load_config
    from azr_core.policy.model import resolve_model_path
    from azr_core.policy.trainer.engine import PolicyTrainer
    from azr_core.selfplay.sampling import training_records
    from bench.bench_update_pieces import answers, time_train_steps

    class EveryPosition(PolicyTrainer):
        """The former forward: logits and their log-softmax at every position, then the completion ones taken."""

        def _forward(self, model, batch):
            logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits[:, :-1]
            return logits.float().log_softmax(-1)[:, batch["keep"]]  # log_softmax again downstream: same values

    torch.manual_seed(0)
    cfg = load_config(None, [], profile="cpu-tiny")
    cfg.model.name_or_path = resolve_model_path(cfg.model)
    trainers = {"kept": PolicyTrainer(cfg.model, cfg.trainer), "every": EveryPosition(cfg.model, cfg.trainer)}
    tok = trainers["kept"].tokenizer
    records = [r for pieces, adv in answers(tok, cfg, args.answers) for r in training_records(pieces, adv, "g")]
    prompt = sum(len(r.prompt_token_ids) for r in records)
    completion = sum(len(r.completion_token_ids) for r in records)
    print(f"{len(records)} sequences: {prompt} prompt and {completion} completion tokens; vocabulary "
          f"{trainers['kept'].module.config.vocab_size}")  # fmt: skip
    med = time_train_steps({name: (trainer, records) for name, trainer in trainers.items()}, args.runs)
    print(f"ratio kept / every position: {med['kept'] / med['every']:.2f}")


if __name__ == "__main__":
    main()
