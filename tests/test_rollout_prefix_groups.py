"""Prompts sharing a prefix decode against one copy of it (azr_core/policy/rollout/prefix_groups.py): the grouping, the
attention over a group's copy against attention over whole per-row caches, and the sampler's answers and log-probs
with grouping against without it (the tiny model, and the default model on a proposer-like batch)."""

from __future__ import annotations

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from azr_core.policy.rollout import prefix_groups
from azr_core.policy.rollout.base import SamplingParams, Script
from azr_core.policy.rollout.decode import CachedSampler
from azr_core.policy.rollout.hf import _eos_ids
from azr_core.policy.rollout.prefix_groups import Group, GroupedCache, plan_groups
from azr_core.policy.tiny import make_tiny_model_dir

# ---- grouping ------------------------------------------------------------------------------------------------------


def test_prompts_sharing_a_long_prefix_are_grouped_and_each_keeps_a_token_of_its_own():
    head = list(range(100, 400))
    a, b, c = head + [1, 2], head + [1, 3, 4], head + [5]
    other = [9] * 50 + [7]
    groups = plan_groups([a, other, b, c], [1, 1, 1, 1], min_saving=0)
    assert groups == [Group((0, 2, 3), 300)]  # `other` shares nothing: left alone
    # The shortest member sets the length: it keeps its last token to run in its own prefill.
    assert plan_groups([head + [1], head + [1, 2]], [1, 1], min_saving=0) == [Group((0, 1), 300)]
    # Within the group the longer shared prefix of a and b is not used: one level of sharing.
    assert plan_groups([a, b], [1, 1], min_saving=0) == [Group((0, 1), 301)]


def test_samples_of_one_prompt_form_a_group_and_small_savings_do_not():
    p = list(range(40))
    assert plan_groups([p], [4], min_saving=0) == [Group((0,), 39)]  # 4 rows share 39 tokens
    assert plan_groups([p], [1], min_saving=0) == []  # one row: nothing to share
    assert plan_groups([p], [4], min_saving=3 * 39) == []  # saving (4 - 1) x 39 must exceed the threshold
    assert plan_groups([p], [4], min_saving=3 * 39 - 1) == [Group((0,), 39)]


def test_the_plan_splits_where_two_families_of_prompts_part():
    x, y = [1] * 200, [2] * 200
    prompts = [x + [3], y + [4], x + [5, 6], y + [7], x + [8]]
    groups = plan_groups(prompts, [1] * 5, min_saving=0)
    assert sorted(groups, key=lambda g: g.members) == [Group((0, 2, 4), 200), Group((1, 3), 200)]


# ---- attention -----------------------------------------------------------------------------------------------------


class _Layer:
    layer_idx = 0


def _reference(q, keys, values, allowed):
    """Attention of each row over its whole cache (its group's prefix, then its own part), by sdpa."""
    out = []
    for b in range(q.shape[0]):
        k, v, a = keys[b][None], values[b][None], allowed[b][None, None, None]
        out.append(torch.nn.functional.scaled_dot_product_attention(q[b : b + 1], k, v, attn_mask=a, enable_gqa=True))
    return torch.cat(out).transpose(1, 2)


@pytest.mark.parametrize("part", ["flash", "matmul"])
@pytest.mark.parametrize(
    "row_groups",
    [[0, None, 0, 1, 0, None], [None, 0, 0, 0, 1, None]],  # a group's rows apart (gathered) or side by side (a slice)
)
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_grouped_attention_equals_attention_over_each_rows_whole_cache(part, row_groups, dtype, monkeypatch):
    torch.manual_seed(0)
    hq, hkv, d, own = 6, 2, 16, 9
    lengths = {0: 12, 1: 5}  # two groups' prefixes; two rows in no group
    b = len(row_groups)
    prefixes = {g: (torch.randn(1, hkv, n, d), torch.randn(1, hkv, n, d)) for g, n in lengths.items()}
    k_own, v_own = torch.randn(b, hkv, own, d), torch.randn(b, hkv, own, d)
    allowed = torch.ones(b, own, dtype=torch.bool)
    allowed[0, :3] = allowed[3, :5] = allowed[1, :2] = False  # left padding of shorter rows' own parts
    q = torch.randn(b, hq, 1, d)
    keys, values, masks = [], [], []
    for r, g in enumerate(row_groups):
        pk, pv = prefixes[g] if g is not None else (torch.zeros(1, hkv, 0, d),) * 2
        keys.append(torch.cat([pk[0], k_own[r]], dim=1))
        values.append(torch.cat([pv[0], v_own[r]], dim=1))
        masks.append(torch.cat([torch.ones(pk.shape[2], dtype=torch.bool), allowed[r]]))
    ref = [_reference(q[r : r + 1], keys[r][None], values[r][None], masks[r][None]) for r in range(b)]
    # The reference in float32; the grouped attention in the model's dtype (bf16: as on a GPU or a bf16 CPU model).
    prefixes = {g: (k.to(dtype), v.to(dtype)) for g, (k, v) in prefixes.items()}
    q, k_own, v_own = q.to(dtype), k_own.to(dtype), v_own.to(dtype)
    cache = GroupedCache([[prefixes[0], prefixes[1]]], [])
    cache.select(row_groups)
    rows = [(g, list(range(b))[r] if isinstance(r, slice) else r.tolist()) for g, r in cache.slices]
    assert rows == [(g, [i for i, x in enumerate(row_groups) if x == g]) for g in (0, 1)]
    assert isinstance(cache.slices[0][1], slice) == (row_groups[1:4] == [0, 0, 0])
    if part == "matmul":  # as on a device without torch's fused CPU kernel
        monkeypatch.setattr(prefix_groups, "_flash_part", prefix_groups._matmul_part)
    out, _ = prefix_groups.attention(_Layer(), q, k_own, v_own, allowed[:, None, None], prefix_groups=cache)
    assert out.shape == (b, 1, hq, d) and out.dtype == dtype
    assert torch.allclose(out.float(), torch.cat(ref), atol=1e-5 if dtype == torch.float32 else 2e-2)


def test_grouped_attention_refuses_what_it_cannot_serve():
    cache = GroupedCache([[]], [])
    q, k = torch.randn(2, 4, 2, 8), torch.randn(2, 2, 3, 8)
    with pytest.raises(ValueError, match="one query token"):
        prefix_groups.attention(_Layer(), q, k, k, torch.ones(2, 1, 2, 3, dtype=torch.bool), prefix_groups=cache)
    q = torch.randn(2, 4, 1, 8)
    with pytest.raises(ValueError, match="soft-capping"):
        prefix_groups.attention(
            _Layer(), q, k, k, torch.ones(2, 1, 1, 3, dtype=torch.bool), prefix_groups=cache, softcap=30.0
        )


def test_outside_a_grouped_decode_the_model_attends_as_before():
    model, _ = _tiny()
    before = model.config._attn_implementation
    ids = torch.tensor([[1, 2, 3, 4]])
    with torch.no_grad():
        plain = model(ids).logits
        with prefix_groups.grouped_attention(model):
            assert model.config._attn_implementation == prefix_groups.ATTENTION
            inside = model(ids).logits  # no groups passed: sdpa serves the call (a prefill, the trainer)
    assert model.config._attn_implementation == before
    assert torch.allclose(plain, inside, atol=1e-6)


# ---- the sampler ---------------------------------------------------------------------------------------------------

_TINY: dict = {}


def _tiny():
    if not _TINY:
        import tempfile
        from pathlib import Path

        folder = make_tiny_model_dir(Path(tempfile.mkdtemp()) / "model")
        _TINY["m"] = (AutoModelForCausalLM.from_pretrained(folder), AutoTokenizer.from_pretrained(folder))
    return _TINY["m"]


def _sampler(model, tok, max_rows, min_saving, decode_min_saving=0):
    return CachedSampler(
        model, tok, eos_ids=_eos_ids(model, tok), empty_starts=lambda: [], max_rows=max_rows, min_saving=min_saving,
        decode_min_saving=decode_min_saving,
    )  # fmt: skip


def _spy_groups(monkeypatch) -> list[list[Group]]:
    seen: list[list[Group]] = []
    real = prefix_groups.plan_groups

    def spy(*args, **kwargs):
        seen.append(real(*args, **kwargs))
        return seen[-1]

    monkeypatch.setattr("azr_core.policy.rollout.decode.plan_groups", spy)
    return seen


@pytest.mark.parametrize("max_rows", [4, 24])  # 4: rows over several batches, finished rows dropped mid-decode
@pytest.mark.parametrize("decode_min_saving", [0, 10**9])  # groups shared in the decode, or copied after the prefill
def test_the_sampler_gives_the_same_answers_and_log_probs_with_and_without_groups(
    max_rows, decode_min_saving, monkeypatch
):
    model, tok = _tiny()
    head = "An instruction long enough to be worth sharing between the prompts of one family. " * 3
    prompts = [head + "first", "unrelated", head + "second one", head + "third"]
    script = Script(7, ("\n<in>\n", "\n<msg>\n"), 5, closer="", unclosed="")
    scripts = [script, None, script, None]
    for params in (
        SamplingParams(n=3, max_new_tokens=9, temperature=0.0, stop=("Q", "x")),
        SamplingParams(n=2, max_new_tokens=9, temperature=1.0, top_p=0.9, seed=5, stop=("Q", "x")),
    ):
        seen = _spy_groups(monkeypatch)
        torch.manual_seed(3)
        grouped = _sampler(model, tok, max_rows, 0, decode_min_saving).sample(prompts, params, scripts)
        assert any(seen) and all(g.length > 0 for gs in seen for g in gs)  # grouping really ran
        torch.manual_seed(3)
        plain = _sampler(model, tok, max_rows, None).sample(prompts, params, scripts)
        for (ids_a, outs_a), (ids_b, outs_b) in zip(grouped, plain, strict=True):
            assert ids_a == ids_b
            for a, b in zip(outs_a, outs_b, strict=True):
                assert (a.text, a.token_ids, a.finish_reason) == (b.text, b.token_ids, b.finish_reason)
                assert a.logprobs == pytest.approx(b.logprobs, abs=1e-4)
                assert [bl.context_ids for bl in a.blocks or []] == [bl.context_ids for bl in b.blocks or []]


@pytest.mark.slow
def test_the_default_model_answers_a_proposer_like_batch_alike_with_and_without_groups():
    from azr_core.policy.model import load_policy, prepare_default_model

    prepare_default_model(progress=None)
    from azr_core.config import ModelConfig

    model, tok = load_policy(ModelConfig())
    head = "You write short Python functions for a reasoning game. " * 12
    prompts = [head + f"Write a function number {i} that transforms a list." for i in range(4)]
    params = SamplingParams(n=2, max_new_tokens=24, temperature=0.0)
    grouped = _sampler(model, tok, 8, 0).sample(prompts, params, [None] * 4)
    plain = _sampler(model, tok, 8, None).sample(prompts, params, [None] * 4)
    for (_, outs_a), (_, outs_b) in zip(grouped, plain, strict=True):
        for a, b in zip(outs_a, outs_b, strict=True):
            assert a.token_ids == b.token_ids
            assert a.logprobs == pytest.approx(b.logprobs, abs=1e-4)
