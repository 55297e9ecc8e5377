"""GPU check of the policy stack, run on a lent GPU machine: worker group, rollouts, update, checkpoint resume.

    python bench/gpu_policy_check.py --config-dir DIR --model-dir /tmp/smollm2-random

The default model's weights (a 98 MB GGUF) exceed what travels to the GPU machine, so the model is built there from
the real SmolLM2-135M config and tokenizer with random weights (seeded): the same architecture, so the same compute
and memory; the text it generates is noise. Then, through the real `deepspeed` launcher and one CUDA worker:
generate, learn from made-up advantages, save a checkpoint, take a step, reload, take the same step again, and
compare (bf16 on the GPU). Prints one JSON object at the end.
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
from pathlib import Path

import torch


def build_random_model(config_dir: Path, out: Path, seed: int = 0) -> Path:
    """An HF folder with the config and tokenizer of `config_dir` and seeded random weights."""
    from transformers import AutoConfig, AutoModelForCausalLM

    if (out / "config.json").is_file():
        return out
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(config_dir), dtype=torch.float32)
    model.save_pretrained(out)
    for f in config_dir.iterdir():
        if f.name != "config.json":
            shutil.copy(f, out / f.name)
    return out


def worker_check(model_dir: Path) -> dict:
    from azr_core.policy.config import ModelConfig, RolloutConfig, TrainerConfig
    from azr_core.policy.rollout.base import SamplingParams
    from azr_core.policy.trainer.client import PolicyWorkers
    from azr_core.policy.trainer.records import SequenceRecord

    cfg = TrainerConfig(num_workers=1, zero_stage=2, lr=1e-5, micro_batch_size=8, worker_timeout_s=300)
    tmp = Path(tempfile.mkdtemp(prefix="azr-gpu-"))
    out: dict = {}
    t0 = time.perf_counter()
    with PolicyWorkers(
        ModelConfig(name_or_path=str(model_dir)), RolloutConfig(batch_size=16), cfg, log_path=tmp / "workers.log"
    ) as group:
        out["worker_start_s"] = time.perf_counter() - t0
        out["ping"] = group.ping()
        prompts = [f"Write a Python function number {i}." for i in range(8)]
        t0 = time.perf_counter()
        outs = group.generate(prompts, SamplingParams(n=2, max_new_tokens=64, seed=1))
        out["worker_generate_s"] = time.perf_counter() - t0
        out["worker_generated_tokens"] = sum(len(c.token_ids) for o in outs for c in o.completions)
        adv = [(-1.0) ** i * (0.3 + 0.1 * i) for i in range(16)]
        pairs = [(o, c) for o in outs for c in o.completions]
        recs = [
            SequenceRecord(o.prompt_token_ids, c.token_ids, c.logprobs, a, f"g{k % 6}")
            for k, ((o, c), a) in enumerate(zip(pairs, adv, strict=True))
        ]
        before = group.compute_logprobs(recs[:2])
        out["step1"] = group.train_step(recs)
        after = group.compute_logprobs(recs[:2])
        out["logprobs_changed_by_step"] = max(
            abs(a - b) for x, y in zip(before, after, strict=True) for a, b in zip(x, y, strict=True)
        )
        ckpt = group.save_checkpoint(tmp / "ckpt")
        out["step2_uninterrupted"] = group.train_step(recs[::-1])
        out["loaded_step"] = group.load_checkpoint(ckpt)
        out["step2_resumed"] = group.train_step(recs[::-1])
    for key in ("step1", "step2_uninterrupted", "step2_resumed"):
        out[key] = {k: out[key][k] for k in ("loss", "grad_norm", "lr", "tokens", "ratio_mean")}
    a, b = out["step2_uninterrupted"], out["step2_resumed"]
    out["resume_loss_abs_diff"] = abs(a["loss"] - b["loss"])
    out["resume_exact"] = a["loss"] == b["loss"] and a["grad_norm"] == b["grad_norm"]
    out["checkpoint_files"] = sorted(str(p.relative_to(ckpt)) for p in ckpt.rglob("*") if p.is_file())[:20]
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config-dir", type=Path, required=True, help="config.json + tokenizer files of the model")
    ap.add_argument("--model-dir", type=Path, required=True, help="where the random-weight model folder goes")
    ap.add_argument("--build-only", action="store_true")
    args = ap.parse_args()
    build_random_model(args.config_dir, args.model_dir)
    if args.build_only:
        print(f"model folder ready: {args.model_dir}")
        return
    result = {"device": torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu"}
    result.update(worker_check(args.model_dir))
    print(json.dumps(result, indent=2, default=str))


if __name__ == "__main__":
    main()
