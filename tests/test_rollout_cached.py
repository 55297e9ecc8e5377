"""The hf backend's KV-cached sampling loop (azr_core/policy/rollout/decode.py) against `model.generate` and against
re-prefilling every block: the same greedy answers, log-probs equal to a teacher-forced forward, and for a fixed sampled
text the same training records (ids, sampled mask, log-probs) as the re-prefill path."""

from __future__ import annotations

import string

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from azr_core.policy.rollout.base import Completion, PromptOutput, SamplingParams, Script
from azr_core.policy.rollout.decode import CachedSampler, _Row
from azr_core.policy.rollout.hf import HFBackend
from azr_core.policy.rollout.scripts import generate_by_reprefill
from azr_core.policy.tiny import make_tiny_model_dir
from azr_core.selfplay.sampling import training_records

STOPS = tuple(string.ascii_uppercase[:10])  # single characters: the tiny random model hits them often
SCRIPT = Script(6, ("\n<in>\n", "\n<msg>\n"), 5, closer="", unclosed="")
PROMPTS = ["abc def", "abc xyz: a much longer prompt here", "abc", "q"]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    folder = make_tiny_model_dir(tmp_path_factory.mktemp("tiny") / "model")
    return AutoModelForCausalLM.from_pretrained(folder), AutoTokenizer.from_pretrained(folder)


def _teacher_forced(model, context: list[int], ids: list[int]) -> torch.Tensor:
    with torch.no_grad():
        logits = model(torch.tensor([context + ids])).logits[0, len(context) - 1 : -1]
    return logits.log_softmax(-1).gather(1, torch.tensor(ids)[:, None]).squeeze(1)


@pytest.mark.parametrize("batch_size", [3, 16])  # 3: rows split over batches and dropped as they finish
def test_greedy_answers_equal_generate_and_log_probs_are_the_models(tiny, batch_size):
    model, tok = tiny
    params = SamplingParams(n=2, max_new_tokens=9, temperature=0.0, stop=("Q", "x"))
    padded = HFBackend(model, tok, batch_size=batch_size, engine="generate").generate(PROMPTS, params)
    cached = HFBackend(model, tok, batch_size=batch_size, engine="cached").generate(PROMPTS, params)
    for a, b in zip(padded, cached, strict=True):
        assert a.prompt_token_ids == b.prompt_token_ids
        for ca, cb in zip(a.completions, b.completions, strict=True):
            assert (cb.token_ids, cb.text, cb.finish_reason) == (ca.token_ids, ca.text, ca.finish_reason)
            assert cb.logprobs == pytest.approx(ca.logprobs, abs=1e-5)
            assert cb.blocks is None


def test_sampled_completions_carry_the_models_log_probs_and_seeds_replay(tiny):
    model, tok = tiny
    params = SamplingParams(n=3, max_new_tokens=8, temperature=1.0, top_p=0.9, seed=11, stop=STOPS)
    outs = HFBackend(model, tok, batch_size=4).generate(PROMPTS, params)
    assert outs == HFBackend(model, tok, batch_size=4).generate(PROMPTS, params)  # a seed replays the call
    for o in outs:
        for c in o.completions:
            assert len(c.token_ids) == len(c.logprobs) >= 1
            ref = _teacher_forced(model, o.prompt_token_ids, c.token_ids)
            assert torch.allclose(ref, torch.tensor(c.logprobs), atol=1e-4)


def test_scripted_blocks_continue_from_the_cache_with_the_ids_a_reprefill_gives(tiny):
    model, tok = tiny
    params = SamplingParams(n=3, max_new_tokens=8, temperature=1.0, seed=3, stop=STOPS)
    outs = HFBackend(model, tok, batch_size=4).generate_scripted(PROMPTS, params, [SCRIPT] * len(PROMPTS))
    continued = 0
    for o in outs:
        for c in o.completions:
            text = ""
            for k, b in enumerate(c.blocks):
                assert b.prefix == ("" if k == 0 else SCRIPT.openings[k - 1])
                text += b.prefix
                # Every sampled token of this block is visible text here (the tiny tokenizer keeps boundaries and the
                # specials it might sample end a block or never appear): the context is the re-prefill's.
                if not any(t in (0, 1, 3) for bb in c.blocks for t in bb.completion.token_ids):
                    assert b.context_ids == tok(o.prompt + text)["input_ids"]
                ref = _teacher_forced(model, b.context_ids, b.completion.token_ids)
                assert torch.allclose(ref, torch.tensor(b.completion.logprobs), atol=1e-4)
                text += b.completion.text
                budget = SCRIPT.first_max_new_tokens if k == 0 else SCRIPT.block_max_new_tokens
                assert len(b.completion.token_ids) <= budget
            assert c.text == text
            assert c.token_ids == [t for b in c.blocks for t in b.completion.token_ids]
            assert len(c.blocks) <= 1 + len(SCRIPT.openings)
            last = c.blocks[-1].completion.finish_reason
            assert c.finish_reason == last and (len(c.blocks) == 3 or last == "length")
            continued += len(c.blocks) > 1
    assert continued >= 3  # the stops were hit and later blocks written


def test_for_a_fixed_sampled_text_the_records_equal_the_reprefill_paths(tiny):
    """Replay the cached engine's blocks through the re-prefill path (each block's text forced as that call's
    completion, its log-probs from a forward over the re-prefilled context): the training records are the same."""
    model, tok = tiny
    params = SamplingParams(n=2, max_new_tokens=8, temperature=1.0, seed=5, stop=STOPS)
    cached = HFBackend(model, tok, batch_size=8).generate_scripted(PROMPTS, params, [SCRIPT] * len(PROMPTS))
    written = {(o.prompt, j): [b.completion for b in c.blocks] for o in cached for j, c in enumerate(o.completions)}

    def replay(prompts, p):  # each call's completion: the block the cached engine wrote at that point
        outs = []
        for ctx in prompts:
            base = max((q for q in PROMPTS if ctx.startswith(q)), key=len)
            ids = tok(ctx)["input_ids"]
            comps = []
            for j in range(p.n):
                key = (base, j) if ctx == base else _answer_of(written, base, ctx)
                block = written[key][_block_index(ctx, base)]
                lps = _teacher_forced(model, ids, block.token_ids).tolist()
                comps.append(Completion(block.text, block.token_ids, lps, block.finish_reason))
            outs.append(PromptOutput(ctx, ids, comps))
        return outs

    replayed = generate_by_reprefill(replay, PROMPTS, params, [SCRIPT] * len(PROMPTS))
    compared = 0
    for a, b in zip(cached, replayed, strict=True):
        for ca, cb in zip(a.completions, b.completions, strict=True):
            assert ca.text == cb.text
            if any(t in (0, 1, 3) for t in ca.token_ids):
                continue  # a sampled special token is context here but not in the re-prefilled text
            ra = training_records([(x.context_ids, x.completion) for x in ca.blocks], 1.0, "g")
            rb = training_records([(x.context_ids, x.completion) for x in cb.blocks], 1.0, "g")
            assert len(ra) == len(rb) == 1  # one sequence: the blocks chain
            assert ra[0].prompt_token_ids == rb[0].prompt_token_ids
            assert ra[0].completion_token_ids == rb[0].completion_token_ids
            assert ra[0].sampled == rb[0].sampled
            assert ra[0].old_logprobs == pytest.approx(rb[0].old_logprobs, abs=1e-4)
            compared += 1
    assert compared >= 4


def _block_index(ctx: str, base: str) -> int:
    return sum(ctx[len(base) :].count(o) for o in SCRIPT.openings)


def _answer_of(written, base: str, ctx: str) -> tuple[str, int]:
    """The answer whose text so far the context holds."""
    done = ctx[len(base) :]
    for (b, j), blocks in written.items():
        if b != base:
            continue
        text = ""
        for k, blk in enumerate(blocks):
            text += ("" if k == 0 else SCRIPT.openings[k - 1]) + blk.text
            if k + 1 < len(blocks) and text + SCRIPT.openings[k] == done:
                return (b, j)
    raise AssertionError(f"no answer continues {ctx!r}")


def test_a_block_ended_by_end_of_sequence_or_a_token_past_its_stop_is_not_fed(tiny):
    """The text never holds an end of sequence, nor what a token writes past a stop string: such a token is not fed,
    the text forced in its place is, so the next block attends to the text as parsed."""
    model, tok = tiny
    sampler = CachedSampler(model, tok, eos_ids={tok.eos_token_id}, empty_starts=lambda: [], max_rows=4)
    script = Script(8, ("<in>",), 4, closer="|", unclosed="|")
    prompt = "ab"
    ids = tok(prompt)["input_ids"]

    row = _Row(0, script, list(ids), context=list(ids))
    assert sampler._advance(row, (tok.convert_tokens_to_ids("x"), -1.0), [prompt], ("|",), 3) is not None
    fed = sampler._advance(row, (tok.eos_token_id, -0.5), [prompt], ("|",), 3)  # end of sequence: the block ends
    forced = tok("|<in>", add_special_tokens=False)["input_ids"]
    assert fed == forced[0] and row.forced == forced[1:]  # '|' closes the block first (it ended without it)
    assert row.visible == ids + [tok.convert_tokens_to_ids("x"), forced[0]]
    assert row.context == ids + [tok.convert_tokens_to_ids("x")] + forced
    assert row.blocks[0].completion.token_ids == [tok.convert_tokens_to_ids("x"), tok.eos_token_id]
    assert row.blocks[0].completion.text == "x" and row.text == "x|<in>"
    assert row.context == tok(prompt + row.text)["input_ids"]  # what a re-prefill of the text gives

    # A multi-character token that runs past the stop: the text keeps up to the stop, the token is not fed.
    tok_wide = _WideTokenizer(tok)
    sampler = CachedSampler(model, tok_wide, eos_ids={tok.eos_token_id}, empty_starts=lambda: [], max_rows=4)
    row = _Row(0, script, list(ids), context=list(ids))
    fed = sampler._advance(row, (_WideTokenizer.WIDE, -0.2), [prompt], ("|",), 3)  # decodes to "y|z"
    assert row.blocks[0].completion.text == "y|" and row.blocks[0].completion.token_ids == [_WideTokenizer.WIDE]
    assert fed not in (None, _WideTokenizer.WIDE) and _WideTokenizer.WIDE not in row.visible
    assert tok.decode(row.context[len(ids) :]) == "y|<in>"  # the context is the text as parsed


class _WideTokenizer:
    """The tiny tokenizer plus one id that decodes to three characters ("y|z")."""

    WIDE = 10_000

    def __init__(self, tok) -> None:
        self.tok = tok
        self.pad_token_id = tok.pad_token_id

    def __call__(self, text, add_special_tokens=True):
        return self.tok(text, add_special_tokens=add_special_tokens)

    def decode(self, ids, skip_special_tokens=True):
        return "".join("y|z" if i == self.WIDE else self.tok.decode([i], skip_special_tokens=skip_special_tokens)
                       for i in ids)  # fmt: skip


def test_completions_with_blocks_cross_the_worker_protocol_unchanged(tiny):
    model, tok = tiny
    params = SamplingParams(n=2, max_new_tokens=8, temperature=1.0, seed=1, stop=STOPS)
    outs = HFBackend(model, tok, batch_size=4).generate_scripted(PROMPTS[:2], params, [SCRIPT] * 2)
    assert [PromptOutput.from_dict(o.to_dict()) for o in outs] == outs
    assert Script.from_dict(SCRIPT.to_dict()) == SCRIPT


def test_zero3_ranks_fall_back_to_generate(tiny):
    model, tok = tiny
    assert HFBackend(model, tok, synced_gpus=True).engine == "generate"
    assert HFBackend(model, tok).engine == "cached"
    with pytest.raises(ValueError, match="'cached' or 'generate'"):
        HFBackend(model, tok, engine="vllm")


def test_the_sampler_draws_the_tempered_nucleus_distribution_and_records_raw_log_probs():
    from azr_core.policy.rollout.decode import _pick

    torch.manual_seed(0)
    logits = torch.tensor([[2.0, 1.0, 0.0, -1.0]]).repeat(100_000, 1)
    none = torch.tensor([], dtype=torch.long)
    tok, lp = _pick(logits, SamplingParams(temperature=1.0), None, none)
    freq = torch.bincount(tok, minlength=4).float() / len(tok)
    assert torch.allclose(freq, logits[0].softmax(-1), atol=0.005)
    assert torch.allclose(lp, logits[0].log_softmax(-1)[tok])  # the raw distribution's log-probs
    # temperature 0.7 gives (0.763, 0.183, 0.044, 0.011); top-p 0.8 keeps the first two, renormalised
    tok, lp = _pick(logits, SamplingParams(temperature=0.7, top_p=0.8), None, none)
    freq = torch.bincount(tok, minlength=4).float() / len(tok)
    assert torch.allclose(freq, torch.tensor([0.806, 0.194, 0.0, 0.0]), atol=0.006)
    assert torch.allclose(lp, logits[0].log_softmax(-1)[tok])  # still the untempered log-probs
    # a block's first token may not be one of `empty` (here 0 and 1); greedy takes the best of the rest
    first = torch.tensor([True] * 3)
    tok, _ = _pick(logits[:3], SamplingParams(temperature=0.0), first, torch.tensor([0, 1]))
    assert tok.tolist() == [2, 2, 2]


def test_a_model_the_cached_loop_cannot_serve_falls_back_to_generate(tiny, monkeypatch):
    from azr_core.policy.rollout import decode

    model, tok = tiny

    def refuse(self):
        raise decode.Unsupported("sliding-window layers")

    monkeypatch.setattr(decode.CachedSampler, "_new_cache", refuse)
    backend = HFBackend(model, tok, batch_size=4)
    params = SamplingParams(n=1, max_new_tokens=5, temperature=0.0, stop=STOPS)
    with pytest.warns(UserWarning, match="using 'generate'"):
        out = backend.generate_scripted(PROMPTS[:2], params, [SCRIPT] * 2)
    assert backend.engine == "generate" and all(c.blocks for o in out for c in o.completions)
    padded = HFBackend(model, tok, batch_size=4, engine="generate").generate(PROMPTS, params)
    assert [c.token_ids for o in backend.generate(PROMPTS, params) for c in o.completions] == [
        c.token_ids for o in padded for c in o.completions
    ]
