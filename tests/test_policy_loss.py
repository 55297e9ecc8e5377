"""The REINFORCE++ loss: ratio clipping, token mean, KL and entropy terms, on hand-made tensors."""

from __future__ import annotations

import math

import pytest
import torch
from pydantic import ValidationError

from azr_core.policy.config import ModelConfig, RolloutConfig, TrainerConfig
from azr_core.policy.trainer.engine import make_lr_lambda
from azr_core.policy.trainer.loss import combine_loss, entropy_from_logits, policy_loss_terms, token_logprobs


def _terms(logp, old, adv, mask, clip=0.2, **kw):
    return policy_loss_terms(
        torch.tensor(logp), torch.tensor(old), torch.tensor(adv), torch.tensor(mask), clip_ratio=clip, **kw
    )


def test_on_policy_loss_is_minus_advantage_token_mean():
    # Ratio 1 everywhere: the loss is -(sum of advantage per token) / tokens.
    t = _terms(
        [[-1.0, -2.0, 0.0], [-0.5, 0.0, 0.0]],
        [[-1.0, -2.0, 0.0], [-0.5, 0.0, 0.0]],
        [2.0, -1.0],
        [[1.0, 1.0, 0.0], [1.0, 0.0, 0.0]],
    )
    loss = combine_loss(t, total_tokens=3, entropy_coef=0.0, kl_coef=0.0)
    assert loss.item() == pytest.approx(-(2.0 + 2.0 - 1.0) / 3)
    assert t.clipped.sum().item() == 0


def test_ratio_clipping_caps_the_gain():
    # Positive advantage, ratio e^1 > 1.2: the clipped branch (1.2 * A) is taken and gives no gradient.
    logp = torch.tensor([[0.0]], requires_grad=True)
    t = policy_loss_terms(logp, torch.tensor([[-1.0]]), torch.tensor([1.0]), torch.tensor([[1.0]]), clip_ratio=0.2)
    loss = combine_loss(t, 1, entropy_coef=0.0, kl_coef=0.0)
    loss.backward()
    assert loss.item() == pytest.approx(-1.2)
    assert t.clipped.item() == 1.0
    assert logp.grad.item() == 0.0
    # Negative advantage with a large ratio is NOT clipped (pessimistic bound): gradient flows.
    logp2 = torch.tensor([[0.0]], requires_grad=True)
    t2 = policy_loss_terms(logp2, torch.tensor([[-1.0]]), torch.tensor([-1.0]), torch.tensor([[1.0]]), clip_ratio=0.2)
    combine_loss(t2, 1, entropy_coef=0.0, kl_coef=0.0).backward()
    assert logp2.grad.item() == pytest.approx(math.e)


def test_micro_batches_sum_to_the_full_batch_loss():
    torch.manual_seed(0)
    logp, old = torch.randn(6, 5) - 2, torch.randn(6, 5) - 2
    adv, mask = torch.randn(6), (torch.rand(6, 5) > 0.3).float()
    total = int(mask.sum())
    full = combine_loss(policy_loss_terms(logp, old, adv, mask, clip_ratio=0.2), total, entropy_coef=0, kl_coef=0)
    parts = sum(
        combine_loss(
            policy_loss_terms(logp[i : i + 2], old[i : i + 2], adv[i : i + 2], mask[i : i + 2], clip_ratio=0.2),
            total,
            entropy_coef=0,
            kl_coef=0,
        )
        for i in range(0, 6, 2)
    )
    assert parts.item() == pytest.approx(full.item(), rel=1e-6)


def test_kl_is_zero_at_the_reference_and_positive_elsewhere():
    t = _terms([[-1.0, -2.0]], [[-1.0, -2.0]], [0.0], [[1.0, 1.0]], ref_logprobs=torch.tensor([[-1.0, -2.0]]))
    assert t.kl.abs().sum().item() == 0.0
    t = _terms([[-1.0, -2.0]], [[-1.0, -2.0]], [0.0], [[1.0, 1.0]], ref_logprobs=torch.tensor([[-1.5, -1.0]]))
    assert (t.kl > 0).all()
    assert combine_loss(t, 2, entropy_coef=0.0, kl_coef=0.1).item() == pytest.approx(0.1 * t.kl.sum().item() / 2)


def test_entropy_bonus_lowers_the_loss():
    logits = torch.zeros(1, 2, 4)
    ent = entropy_from_logits(logits)
    assert ent[0, 0].item() == pytest.approx(math.log(4))
    t = _terms([[-1.0, -1.0]], [[-1.0, -1.0]], [0.0], [[1.0, 1.0]], entropy=ent)
    assert combine_loss(t, 2, entropy_coef=0.5, kl_coef=0.0).item() == pytest.approx(-0.5 * math.log(4))


def test_token_logprobs_match_log_softmax():
    logits = torch.randn(2, 3, 7)
    targets = torch.randint(0, 7, (2, 3))
    lp = token_logprobs(logits, targets)
    assert torch.allclose(lp[1, 2], logits[1, 2].log_softmax(-1)[targets[1, 2]])


def test_lr_schedules():
    assert make_lr_lambda(TrainerConfig())(1000) == 1.0  # paper: constant
    warm = make_lr_lambda(TrainerConfig(warmup_steps=3, lr_schedule="linear", total_steps=13))
    assert warm(0) == pytest.approx(0.25) and warm(3) == 1.0 and warm(13) == 0.0
    assert make_lr_lambda(TrainerConfig(lr_schedule="cosine", total_steps=10))(5) == pytest.approx(0.5)


def test_config_defaults_and_strictness():
    t = TrainerConfig()
    assert (t.lr, t.grad_clip, t.entropy_coef, t.kl_coef, t.lr_schedule) == (1e-6, 1.0, 0.001, 0.0, "constant")
    assert (t.weight_decay, t.mini_batch_size, t.recompute_old_logprobs) == (0.01, None, True)  # the reference
    assert t.deepspeed_config.is_file()
    r = RolloutConfig()
    assert (r.backend, r.temperature, r.top_p) == ("auto", 1.0, 1.0)
    assert ModelConfig().name_or_path == "smollm2-135m-instruct"
    with pytest.raises(ValidationError):
        TrainerConfig(learning_rate=1e-3)
    for cls in (ModelConfig, RolloutConfig, TrainerConfig):
        assert all(f.description for f in cls.model_fields.values()), cls.__name__
