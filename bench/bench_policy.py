"""Policy benchmark on this machine: HF-backend generation vs plain `generate`, DeepSpeed step vs plain AdamW step.

    python bench/bench_policy.py                       # the default model, 3 runs, batches 1 8 16
    python bench/bench_policy.py --runs 5 --max-new-tokens 64 --out bench/policy.json
    python bench/bench_policy.py --model /path/to/hf-folder --batches 1 8 16 64   # any model; on a GPU too

On a CUDA GPU the model runs in bf16 (DeepSpeed bf16, fp32 master weights in its optimiser) and the two training
sides run one after the other instead of interleaved, so each side's peak GPU memory is its own; the dedicated GPU
makes interleaving unnecessary there.

Both sides of each comparison run in this one process, interleaved run by run, on the same inputs and seeds, so
load from other processes hits both alike; medians are reported. Generation samples at temperature 1, top-p 1,
no top-k on both sides, counting the tokens each side actually generated (up to eos). Prompts are given in the row
order the backend uses (longest first), so the same seed gives both sides the same tokens (the `same_tokens`
check) and the same amount of work.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from pathlib import Path

import torch

from azr_core.policy.config import ModelConfig, TrainerConfig
from azr_core.policy.model import load_policy
from azr_core.policy.rollout.base import SamplingParams
from azr_core.policy.rollout.hf import HFBackend
from azr_core.policy.trainer.batch import collate
from azr_core.policy.trainer.engine import PolicyTrainer
from azr_core.policy.trainer.loss import combine_loss, policy_loss_terms, token_logprobs
from azr_core.policy.trainer.records import SequenceRecord

TASKS = [
    "Write a Python function f(x) that returns the sum of the digits of x.",
    "Predict the output of f([3, 1, 2]) where f sorts a list and returns its first element.",
    "Give an input to f(s) = s[::-1] + s whose output is 'abba'.",
    "Explain in one sentence what a Python dictionary is.",
]


def prompts_for(tok, n: int) -> list[str]:
    if getattr(tok, "chat_template", None) is None:  # e.g. the tiny test model: plain text prompts
        return [TASKS[i % len(TASKS)] for i in range(n)]
    msgs = [[{"role": "user", "content": TASKS[i % len(TASKS)]}] for i in range(n)]
    return [tok.apply_chat_template(m, tokenize=False, add_generation_prompt=True) for m in msgs]


def _sync() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def _peak_mib() -> float | None:
    return torch.cuda.max_memory_allocated() / 2**20 if torch.cuda.is_available() else None


def plain_generate(model, tok, prompts: list[str], max_new: int, seed: int) -> tuple[int, list[list[int]]]:
    """The baseline: one `model.generate` call on the left-padded batch, same sampling settings."""
    torch.manual_seed(seed)
    enc = tok(prompts, return_tensors="pt", padding=True).to(model.device)
    with torch.inference_mode():
        out = model.generate(
            **enc,
            max_new_tokens=max_new,
            do_sample=True,
            temperature=1.0,
            top_p=1.0,
            top_k=0,
            pad_token_id=tok.pad_token_id,
        )
    seqs = []
    for row in out[:, enc["input_ids"].shape[1] :].tolist():
        cut = row.index(tok.eos_token_id) + 1 if tok.eos_token_id in row else len(row)
        seqs.append(row[:cut])
    return sum(len(s) for s in seqs), seqs


def bench_generation(model, tok, batches: list[int], runs: int, max_new: int) -> list[dict]:
    rows = []
    for b in batches:
        prompts = prompts_for(tok, b)
        # The backend batches rows longest prompt first (a stable sort); giving plain generate the same row order
        # and seed makes both sample the same tokens, so the ratio measures overhead, not different lengths.
        prompts = sorted(prompts, key=lambda p: -len(tok(p)["input_ids"]))
        backend = HFBackend(model, tok, batch_size=b)
        ours, plain, same = [], [], True
        if torch.cuda.is_available():
            torch.cuda.reset_peak_memory_stats()
        for r in range(runs + 1):  # run 0 warms up both; the order alternates so neither side always goes first
            for side in ("ours", "plain") if r % 2 == 0 else ("plain", "ours"):
                t0 = time.perf_counter()
                if side == "ours":
                    out = backend.generate(prompts, SamplingParams(n=1, max_new_tokens=max_new, seed=r))
                    n = sum(len(c.token_ids) for o in out for c in o.completions)
                else:
                    n, seqs = plain_generate(model, tok, prompts, max_new, seed=r)
                _sync()
                if r:
                    (ours if side == "ours" else plain).append(n / (time.perf_counter() - t0))
            # Our backend orders rows by prompt length; compare as multisets of sequences.
            same &= sorted(c.token_ids for o in out for c in o.completions) == sorted(seqs)
        row = {
            "batch": b,
            "hf_backend_tok_s": statistics.median(ours),
            "plain_generate_tok_s": statistics.median(plain),
            "same_tokens": same,
            "peak_gpu_mib": _peak_mib(),
        }
        row["ratio"] = row["hf_backend_tok_s"] / row["plain_generate_tok_s"]
        print(
            f"generate batch {b:2d}: hf backend {row['hf_backend_tok_s']:6.1f} tok/s | plain generate "
            f"{row['plain_generate_tok_s']:6.1f} tok/s | ratio {row['ratio']:.2f} | same tokens: {same}"
            + (f" | peak GPU {row['peak_gpu_mib']:.0f} MiB" if torch.cuda.is_available() else ""),
            flush=True,
        )
        rows.append(row)
    return rows


def plain_step(model, opt, batch: dict[str, torch.Tensor], total: int, clip: float, grad_clip: float) -> float:
    """The baseline update: the same loss, torch AdamW, no DeepSpeed."""
    keep = batch["keep"]  # the trainer's own batch: logits at completion positions only, as the trainer computes them
    logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], logits_to_keep=keep).logits
    lp = token_logprobs(logits, batch["targets"])
    terms = policy_loss_terms(lp, batch["old_logprobs"], batch["advantages"], batch["mask"], clip_ratio=clip)
    loss = combine_loss(terms, total, entropy_coef=0.0, kl_coef=0.0)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
    opt.step()
    opt.zero_grad(set_to_none=True)
    return loss.item()


def _records_for(tok, seqs: int, completion_len: int) -> list[SequenceRecord]:
    gen = torch.Generator().manual_seed(0)
    prompts = [tok(p)["input_ids"] for p in prompts_for(tok, seqs)]
    return [
        SequenceRecord(
            p,
            torch.randint(min(100, len(tok) // 2), min(40000, len(tok)), (completion_len,), generator=gen).tolist(),
            [-3.0] * completion_len,
            float(i % 3 - 1),
            f"g{i % 6}",
        )
        for i, p in enumerate(prompts)
    ]


def bench_training(model_cfg: ModelConfig, runs: int, seqs: int, completion_len: int, zero_stage: int) -> dict:
    """DeepSpeed `train_step` against the same loss with plain torch AdamW, on one batch of made-up sequences.

    CPU: both sides alive, interleaved run by run. CUDA: DeepSpeed first, freed, then plain, each with its own peak.
    """
    cuda = torch.cuda.is_available()
    cfg = TrainerConfig(micro_batch_size=seqs, zero_stage=zero_stage)
    total = seqs * completion_len
    ds_t: list[float] = []
    plain_t: list[float] = []
    peaks: dict[str, float] = {}

    def make_ds():
        return PolicyTrainer(model_cfg, cfg)

    def make_plain():
        model, tok = load_policy(model_cfg, device="cuda" if cuda else "cpu")
        model.train()
        opt = torch.optim.AdamW(
            model.parameters(),
            lr=cfg.lr,
            betas=cfg.betas,
            eps=cfg.eps,
            weight_decay=cfg.weight_decay,
            fused=cuda or None,
        )
        return model, tok, opt

    def timed(fn) -> float:
        _sync()
        t0 = time.perf_counter()
        fn()
        _sync()
        return time.perf_counter() - t0

    if cuda:
        torch.cuda.reset_peak_memory_stats()
        trainer = make_ds()
        records = _records_for(trainer.tokenizer, seqs, completion_len)
        for r in range(runs + 1):
            t = timed(lambda: trainer.train_step(records))
            ds_t += [t] if r else []
            print(f"  train run {r}: deepspeed {t:.3f}s", flush=True)
        peaks["deepspeed"] = _peak_mib()
        zero = trainer.zero_stage
        del trainer
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
        model, tok, opt = make_plain()
        batch = collate(records, tok.pad_token_id or 0, model.device)
        for r in range(runs + 1):
            t = timed(lambda: plain_step(model, opt, batch, total, cfg.clip_ratio, cfg.grad_clip))
            plain_t += [t] if r else []
            print(f"  train run {r}: plain {t:.3f}s", flush=True)
        peaks["plain"] = _peak_mib()
    else:
        trainer = make_ds()
        zero = trainer.zero_stage
        model, tok, opt = make_plain()
        records = _records_for(tok, seqs, completion_len)
        batch = trainer._collate(records)
        for r in range(runs + 1):  # run 0 warms up both; alternating order as above
            times = {}
            for side in ("ds", "plain") if r % 2 == 0 else ("plain", "ds"):
                if side == "ds":
                    times[side] = timed(lambda: trainer.train_step(records))
                else:
                    times[side] = timed(lambda: plain_step(model, opt, batch, total, cfg.clip_ratio, cfg.grad_clip))
            if r:
                ds_t.append(times["ds"])
                plain_t.append(times["plain"])
            print(f"  train run {r}: deepspeed {times['ds']:.2f}s plain {times['plain']:.2f}s", flush=True)
    row = {
        "sequences": seqs,
        "tokens_per_sequence": len(records[0].prompt_token_ids) + completion_len,
        "zero_stage": zero,
        "deepspeed_step_s": statistics.median(ds_t),
        "plain_adamw_step_s": statistics.median(plain_t),
    }
    if cuda:
        row["peak_gpu_mib_deepspeed"] = peaks["deepspeed"]
        row["peak_gpu_mib_plain"] = peaks["plain"]
    row["ratio"] = row["deepspeed_step_s"] / row["plain_adamw_step_s"]
    print(
        f"train step ({seqs} seqs): deepspeed ZeRO-{zero} {row['deepspeed_step_s']:.3f}s | plain "
        f"AdamW {row['plain_adamw_step_s']:.3f}s | ratio {row['ratio']:.3f}"
        + (f" | peak GPU {peaks['deepspeed']:.0f} / {peaks['plain']:.0f} MiB" if cuda else ""),
        flush=True,
    )
    return row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=3, help="timed runs per measurement (after one warm-up)")
    ap.add_argument("--batches", type=int, nargs="+", default=[1, 8, 16])
    ap.add_argument("--max-new-tokens", type=int, default=32)
    ap.add_argument("--train-seqs", type=int, default=8)
    ap.add_argument("--train-completion-len", type=int, default=64)
    ap.add_argument("--zero-stage", type=int, default=2, help="ZeRO stage of the DeepSpeed side")
    ap.add_argument("--model", default=None, help="model folder or id (default: the embedded default model)")
    ap.add_argument("--skip-generate", action="store_true")
    ap.add_argument("--skip-train", action="store_true")
    ap.add_argument("--out", type=Path, default=None, help="write the figures as JSON here")
    args = ap.parse_args()
    model_cfg = ModelConfig(name_or_path=args.model) if args.model else ModelConfig()
    result = {
        "machine": f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} threads",
        "device": torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu",
        "model": model_cfg.name_or_path,
        "torch": torch.__version__,
        "max_new_tokens": args.max_new_tokens,
        "runs": args.runs,
    }
    if not args.skip_generate:
        model, tok = load_policy(model_cfg, device="cuda" if torch.cuda.is_available() else "cpu")
        result["generate"] = bench_generation(model, tok, args.batches, args.runs, args.max_new_tokens)
        del model
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
    if not args.skip_train:
        result["train"] = bench_training(
            model_cfg, args.runs, args.train_seqs, args.train_completion_len, args.zero_stage
        )
    if args.out:
        args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
