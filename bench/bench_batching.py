"""Continuous batching (rollout backend hf-batching) against padded `generate` (hf, rollout.hf_engine=generate) at
rollout shapes like the paper profile's: hundreds of sequences, prompts of varied length, long-tailed answer lengths.

    python bench/bench_batching.py --model /tmp/smollm2-random                  # the GPU check (bench/gpu_check.sh)
    python bench/bench_batching.py --prompts 4 --n 4 --max-new-tokens 64 --mean-new-tokens 16   # a CPU smoke run

Answer lengths: a randomly initialised model (the GPU check's) almost never samples end of sequence, so every
sequence would run to `--max-new-tokens` and no engine could gain from finishing ones. `--mean-new-tokens` adds a
bias to the end-of-sequence logit (a biased copy of the output projection, measured on the prompts) so that it is
sampled with about 1/mean probability per step: geometric lengths, capped at `--max-new-tokens`, the longest of
hundreds several times the mean. Both engines sample from that same model, at temperature 1 without top-p (the
paper's), so the same distribution of lengths; their token counts are reported to show it.

Printed per engine: sequences, generated tokens, wall time of the call (the time to the last sequence: every engine
returns once all are done), tokens/s, answer-length mean / p90 / max, and peak GPU memory.
"""

from __future__ import annotations

import argparse
import json
import math
import random
import statistics
import time
from pathlib import Path

import torch

from azr_core.policy.rollout.base import SamplingParams

ENGINES = ("hf-batching", "generate", "cached")


def load(model_path: str | None):
    """The model (bf16 on a GPU, fp32 on CPU) and tokenizer: a folder, or the default model when None."""
    from azr_core.policy.config import ModelConfig
    from azr_core.policy.model import load_policy

    if model_path is None:
        return load_policy(ModelConfig(), progress=print)
    from transformers import AutoModelForCausalLM, AutoTokenizer

    cuda = torch.cuda.is_available()
    model = AutoModelForCausalLM.from_pretrained(model_path, dtype=torch.bfloat16 if cuda else torch.float32)
    return model.to("cuda" if cuda else "cpu").eval(), AutoTokenizer.from_pretrained(model_path)


def make_prompts(tok, count: int, lo: int, hi: int, seed: int) -> list[str]:
    """`count` texts of random ordinary tokens, lengths uniform in [lo, hi] tokens (about: re-tokenizing merges)."""
    rng = random.Random(seed)
    special = set(tok.all_special_ids)
    vocab = [i for i in range(len(tok)) if i not in special]
    return [tok.decode([rng.choice(vocab) for _ in range(rng.randint(lo, hi))]) for _ in range(count)]


@torch.no_grad()
def bias_end_of_sequence(model, tok, prompts: list[str], mean_new: int) -> float:
    """Give the output projection a bias on the end-of-sequence logit so that it is sampled with probability about
    1 / `mean_new` per step (measured on the prompts' last positions). Returns the bias."""
    eos = tok.eos_token_id
    device = next(model.parameters()).device
    gaps = []
    for p in prompts[:16]:
        logits = model(torch.tensor([tok(p)["input_ids"]], device=device)).logits[0, -1].float()
        others = torch.cat([logits[:eos], logits[eos + 1 :]])
        gaps.append(float(torch.logsumexp(others, 0) - logits[eos]))
    p = 1.0 / mean_new
    bias = math.log(p / (1 - p)) + statistics.mean(gaps)
    old = model.get_output_embeddings()
    new = torch.nn.Linear(old.in_features, old.out_features, bias=True, device=device, dtype=old.weight.dtype)
    new.weight = old.weight  # the same (possibly tied) weights, plus the bias
    new.bias.zero_()
    new.bias[eos] = bias
    model.set_output_embeddings(new)
    return bias


def make_backend(engine: str, model, tok, batch_size: int):
    from azr_core.policy.rollout.batching import BatchingBackend
    from azr_core.policy.rollout.hf import HFBackend

    if engine == "hf-batching":
        return BatchingBackend(model, tok, batch_size=batch_size)
    return HFBackend(model, tok, batch_size=batch_size, engine=engine)


def run(backend, prompts: list[str], params: SamplingParams) -> dict:
    """One timed call: its figures."""
    if torch.cuda.is_available():
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    outs = backend.generate(prompts, params)
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    lengths = sorted(len(c.token_ids) for o in outs for c in o.completions)
    tokens = sum(lengths)
    return {
        "sequences": len(lengths),
        "tokens": tokens,
        "seconds_to_last": round(seconds, 3),
        "tokens_per_s": round(tokens / seconds, 1),
        "len_mean": round(tokens / len(lengths), 1),
        "len_p90": lengths[int(0.9 * (len(lengths) - 1))],
        "len_max": lengths[-1],
        "peak_gpu_mib": round(torch.cuda.max_memory_allocated() / 2**20) if torch.cuda.is_available() else None,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default=None, help="model folder (default: the embedded default model)")
    ap.add_argument("--prompts", type=int, default=48, help="distinct prompts")
    ap.add_argument("--n", type=int, default=8, help="samples per prompt (paper: learnability rollouts, 8)")
    ap.add_argument("--prompt-tokens", type=int, nargs=2, default=[128, 1024], metavar=("MIN", "MAX"))
    ap.add_argument("--max-new-tokens", type=int, default=2048)
    ap.add_argument("--mean-new-tokens", type=int, default=256, help="0: leave the model's end of sequence alone")
    ap.add_argument("--batch-size", type=int, default=64, help="rows per padded generate call (rollout.batch_size)")
    ap.add_argument("--engines", nargs="+", choices=ENGINES, default=["hf-batching", "generate"])
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=None, help="write the figures as JSON here")
    args = ap.parse_args()

    model, tok = load(args.model)
    prompts = make_prompts(tok, args.prompts, *args.prompt_tokens, args.seed)
    bias = bias_end_of_sequence(model, tok, prompts, args.mean_new_tokens) if args.mean_new_tokens else None
    device = next(model.parameters()).device
    print(f"{device} {model.dtype}: {args.prompts} prompts x {args.n} samples, prompt tokens {args.prompt_tokens}, "
          f"max new {args.max_new_tokens}, eos bias {bias}")  # fmt: skip
    params = SamplingParams(n=args.n, max_new_tokens=args.max_new_tokens, temperature=1.0, seed=args.seed)
    results = {}
    for engine in args.engines:
        backend = make_backend(engine, model, tok, args.batch_size)
        run(backend, prompts[:2], SamplingParams(n=2, max_new_tokens=8, temperature=1.0, seed=1))  # warm-up
        results[engine] = fig = run(backend, prompts, params)
        print(f"{engine:12s} {fig['sequences']} seqs {fig['tokens']} tokens in {fig['seconds_to_last']:.1f} s "
              f"(time to the last sequence): {fig['tokens_per_s']:.0f} tokens/s; lengths mean {fig['len_mean']} "
              f"p90 {fig['len_p90']} max {fig['len_max']}; peak GPU {fig['peak_gpu_mib']} MiB", flush=True)  # fmt: skip
    if "hf-batching" in results and "generate" in results:
        a, b = results["hf-batching"], results["generate"]
        print(f"hf-batching / generate: time to the last sequence x{a['seconds_to_last'] / b['seconds_to_last']:.2f}, "
              f"tokens/s x{a['tokens_per_s'] / b['tokens_per_s']:.2f}")  # fmt: skip
    if args.out:
        args.out.write_text(json.dumps({"args": {k: str(v) for k, v in vars(args).items()}, "results": results}))


if __name__ == "__main__":
    main()
