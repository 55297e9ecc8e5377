"""The DeepSpeed trainer in one process on a tiny model: it learns, it is batch-split invariant, it resumes exactly."""

from __future__ import annotations

import random

import pytest
import torch
from safetensors.torch import load_file

from azr_core.policy.config import ModelConfig, TrainerConfig
from azr_core.policy.rollout.base import SamplingParams
from azr_core.policy.rollout.hf import HFBackend
from azr_core.policy.tiny import make_tiny_model_dir
from azr_core.policy.trainer.batch import collate
from azr_core.policy.trainer.engine import PolicyTrainer
from azr_core.policy.trainer.loss import token_logprobs
from azr_core.policy.trainer.records import SequenceRecord, summarize


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory):
    return make_tiny_model_dir(tmp_path_factory.mktemp("tiny") / "model")


def _trainer(tiny_dir, **overrides) -> PolicyTrainer:
    cfg = TrainerConfig(**{"lr": 1e-3, "micro_batch_size": 4, "zero_stage": 2, **overrides})
    return PolicyTrainer(ModelConfig(name_or_path=str(tiny_dir)), cfg)


def _records(trainer: PolicyTrainer, seed: int, n: int = 6) -> list[SequenceRecord]:
    """Sequences sampled from the trainer's model with made-up advantages over two groups."""
    backend = HFBackend(trainer.module, trainer.tokenizer, shares_trainer_weights=True)
    outs = backend.generate(["ab", "hello"], SamplingParams(n=n // 2, max_new_tokens=8, seed=seed))
    rng = random.Random(seed)
    return [
        SequenceRecord(o.prompt_token_ids, c.token_ids, c.logprobs, rng.uniform(-1, 1), f"g{i % 2}")
        for i, o in enumerate(outs)
        for c in o.completions
    ]


def _params(trainer: PolicyTrainer) -> dict[str, torch.Tensor]:
    """The weights the optimiser updates: DeepSpeed's fp32 master copies where the module is bf16 (on a GPU),
    since a small step can leave a bf16 weight unchanged while its master moved (seen on an H100)."""
    from deepspeed.utils import safe_get_full_fp32_param

    out = {}
    for k, v in trainer.module.named_parameters():
        master = safe_get_full_fp32_param(v) if v.dtype != torch.float32 else None
        out[k] = (master if master is not None else v).detach().clone()
    return out


def test_one_step_changes_every_parameter(tiny_dir):
    trainer = _trainer(tiny_dir)
    records = _records(trainer, seed=0)
    before = _params(trainer)
    empty = summarize([trainer.train_step([])])  # an iteration with nothing valid must not stall or step
    assert empty["skipped"] == 1.0 and trainer.step == 0
    metrics = summarize([trainer.train_step(records)])
    assert metrics["ratio_mean"] == pytest.approx(1.0, abs=1e-4)  # rollout log-probs = trainer log-probs
    assert metrics["tokens"] == sum(len(r.completion_token_ids) for r in records)
    assert {"group/g0/sequences", "group/g1/sequences"} <= set(metrics)
    assert trainer.step == 1
    for name, p in _params(trainer).items():
        assert not torch.equal(before[name], p), f"{name} did not change"


def test_logits_only_at_completion_positions_match_the_full_forward(tiny_dir):
    trainer = _trainer(tiny_dir)
    records = _records(trainer, seed=3, n=4)
    tok = trainer.tokenizer
    long_prompt = tok("a much longer prompt than the others")["input_ids"]
    records.append(SequenceRecord(long_prompt, [5, 6, 7], [0.0, -1.0, 0.0], 1.0, "g0", [False, True, False]))
    batch = collate(records, trainer.pad_id, "cpu")
    expected = set()
    for r in records:  # position t predicts token t + 1: a completion's positions start one before it
        expected |= set(range(len(r.prompt_token_ids) - 1, len(r.prompt_token_ids) - 1 + len(r.completion_token_ids)))
    assert batch["keep"].tolist() == sorted(expected)
    assert batch["mask"][-1].sum() == 1.0  # the record's context tokens take no loss
    with torch.no_grad():
        kept = token_logprobs(trainer._forward(trainer.module, batch), batch["targets"])
        full = trainer.module(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits[:, :-1]
        every = token_logprobs(full, batch["input_ids"][:, 1:])
    torch.testing.assert_close(kept, every[:, batch["keep"]], atol=1e-5, rtol=0)
    for r, lp in zip(records, trainer.compute_logprobs(records), strict=True):
        start = len(r.prompt_token_ids)
        with torch.no_grad():
            one = trainer.module(input_ids=torch.tensor([r.prompt_token_ids + r.completion_token_ids])).logits[0, :-1]
        ref = token_logprobs(one, torch.tensor(r.prompt_token_ids + r.completion_token_ids)[1:])[start - 1 :]
        torch.testing.assert_close(torch.tensor(lp), ref, atol=1e-4, rtol=0)


def test_micro_batch_split_does_not_change_the_update(tiny_dir):
    a, b = _trainer(tiny_dir, micro_batch_size=1), _trainer(tiny_dir, micro_batch_size=5)
    records = _records(a, seed=1)
    ma, mb = summarize([a.train_step(records)]), summarize([b.train_step(records)])
    # fp32 on CPU: equal to rounding. bf16 on a GPU: another split sums in another order, at bf16 precision (an H100
    # gave 1e-4 relative on the loss); the fp32 master weights then differ by a fraction of one lr-sized step.
    # Adam's first step is about lr * sign(grad), so a near-zero gradient whose sign flips moves a weight by up to
    # 2 lr: on bf16 nearly all weights must agree, every one within two steps.
    bf16 = next(a.module.parameters()).dtype == torch.bfloat16
    rel = 2e-3 if bf16 else 1e-5
    assert ma["loss"] == pytest.approx(mb["loss"], rel=rel)
    assert ma["grad_norm"] == pytest.approx(mb["grad_norm"], rel=rel)
    pa, pb = _params(a), _params(b)
    for name in pa:
        if not bf16:
            torch.testing.assert_close(pa[name], pb[name], atol=1e-6, rtol=0)
            continue
        diff = (pa[name] - pb[name]).abs()
        assert (diff <= 1e-4).float().mean() > 0.98 and diff.max() <= 2.1 * a.cfg.lr, name


def test_a_shared_prompt_prefix_run_once_gives_the_same_update(tiny_dir):
    whole, shared = _trainer(tiny_dir, shared_prefix_min_tokens=0), _trainer(tiny_dir, shared_prefix_min_tokens=4)
    backend = HFBackend(whole.module, whole.tokenizer, shares_trainer_weights=True)
    head = "the same instructions open every prompt of this group, then "
    outs = backend.generate([head + "ab", head + "a longer ending", head + "x"],
                            SamplingParams(n=2, max_new_tokens=8, seed=5))  # fmt: skip
    rng = random.Random(5)
    records = [SequenceRecord(o.prompt_token_ids, c.token_ids, c.logprobs, rng.uniform(-1, 1), "g")
               for o in outs for c in o.completions]  # fmt: skip
    batch = shared._collate(records[:4])
    assert int(batch["shared"]) >= 8 and int(whole._collate(records[:4])["shared"]) == 0
    for a, b in zip(whole.compute_logprobs(records), shared.compute_logprobs(records), strict=True):
        torch.testing.assert_close(torch.tensor(a), torch.tensor(b), atol=1e-5, rtol=0)
    ma, mb = summarize([whole.train_step(records)]), summarize([shared.train_step(records)])
    assert ma["loss"] == pytest.approx(mb["loss"], rel=1e-5)
    assert ma["grad_norm"] == pytest.approx(mb["grad_norm"], rel=1e-5)
    pa, pb = _params(whole), _params(shared)
    for name in pa:
        torch.testing.assert_close(pa[name], pb[name], atol=1e-6, rtol=0)


@pytest.mark.parametrize("stage", [0, 2])  # 0: the cpu-tiny profile's stage; 2: the default profile's
def test_checkpoint_resume_gives_the_same_next_step(tiny_dir, tmp_path, stage):
    a = _trainer(tiny_dir, lr_schedule="linear", total_steps=10, warmup_steps=1, zero_stage=stage)
    first, second = _records(a, seed=2), _records(a, seed=3)
    a.train_step(first)
    ckpt = a.save_checkpoint(tmp_path / "ckpt")
    rng_after_save = torch.rand(3)
    m_a = summarize([a.train_step(second)])

    b = _trainer(tiny_dir, lr_schedule="linear", total_steps=10, warmup_steps=1, zero_stage=stage)
    b.load_checkpoint(ckpt)
    assert b.step == 1
    torch.testing.assert_close(torch.rand(3), rng_after_save, atol=0, rtol=0)  # RNG state restored too
    m_b = summarize([b.train_step(second)])
    assert m_b["loss"] == m_a["loss"] and m_b["lr"] == m_a["lr"] and m_b["grad_norm"] == m_a["grad_norm"]
    pa, pb = _params(a), _params(b)
    for name in pa:
        assert torch.equal(pa[name], pb[name]), name

    hf = load_file(ckpt / "hf" / "model.safetensors")  # the HF folder is a loadable model
    assert (ckpt / "hf" / "config.json").is_file() and (ckpt / "hf" / "tokenizer.json").is_file()
    assert set(hf) <= set(pa)


@pytest.mark.slow
def test_toy_reward_rises(tiny_dir):
    """Reward completions that contain 'a': over a few dozen steps the policy learns to emit it."""
    trainer = _trainer(tiny_dir, lr=3e-3, micro_batch_size=16)
    backend = HFBackend(trainer.module, trainer.tokenizer, shares_trainer_weights=True)

    def rollout(seed: int, n: int):
        out = backend.generate(["q"], SamplingParams(n=n, max_new_tokens=4, seed=seed))[0]
        return out, [1.0 if "a" in c.text else 0.0 for c in out.completions]

    _, start_rewards = rollout(seed=1000, n=128)
    for step in range(30):
        out, rewards = rollout(seed=step, n=16)
        mean = sum(rewards) / len(rewards)
        std = (sum((r - mean) ** 2 for r in rewards) / len(rewards)) ** 0.5
        records = [
            SequenceRecord(out.prompt_token_ids, c.token_ids, c.logprobs, (r - mean) / (std + 1e-6), "solve/toy")
            for c, r in zip(out.completions, rewards, strict=True)
        ]
        trainer.train_step(records)
    _, end_rewards = rollout(seed=2000, n=128)
    start, end = sum(start_rewards) / 128, sum(end_rewards) / 128
    assert end > start + 0.3, (start, end)


def test_kl_and_entropy_terms_when_switched_on(tiny_dir):
    trainer = _trainer(tiny_dir, kl_coef=0.1, entropy_coef=0.01)
    records = _records(trainer, seed=4)
    first = summarize([trainer.train_step(records)])
    assert first["kl"] == pytest.approx(0.0, abs=1e-6)  # the reference is the starting policy
    assert first["entropy"] > 0.0
    second = summarize([trainer.train_step(records)])
    assert second["kl"] > 0.0  # the policy moved away from its reference


def test_micro_batches_never_mix_groups():
    from azr_core.policy.trainer.records import split_micro_batches

    recs = [SequenceRecord([1], [2], [0.0], 0.0, g) for g in ["a"] * 5 + ["b"] * 2 + ["a"]]
    chunks = split_micro_batches(recs, 4)
    assert [[r.group for r in c] for c in chunks] == [["a"] * 4, ["a"], ["b"] * 2, ["a"]]
    assert sum(len(c) for c in chunks) == len(recs)
