"""The hf-batching rollout backend (transformers' continuous batching, azr_core/policy/rollout/batching.py) and the
`auto` choice between backends. The engine runs on CPU, so its outputs are checked on the tiny model: greedy answers
equal padded `generate`'s, log-probs equal a teacher-forced forward's at any temperature, stop strings cut as the hf
backend cuts, n samples per prompt, seeds replay; the real default model once more in a slow test."""

from __future__ import annotations

import string

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from azr_core.policy import rollout
from azr_core.policy.config import ModelConfig, RolloutConfig
from azr_core.policy.rollout.base import SamplingParams, Script
from azr_core.policy.rollout.batching import BatchingBackend
from azr_core.policy.rollout.hf import HFBackend
from azr_core.policy.tiny import make_tiny_model_dir

STOPS = tuple(string.ascii_uppercase[:10])  # single characters: the tiny random model hits them often
PROMPTS = ["abc def", "abc xyz: a much longer prompt here", "abc", "q"]
TOL = 1e-4  # fp32 on CPU: measured max |difference| 5e-7 (tiny model), 3e-5 (SmolLM2-135M)


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory):
    return make_tiny_model_dir(tmp_path_factory.mktemp("tiny") / "model")


@pytest.fixture(scope="module")
def tiny(tiny_dir):
    return AutoModelForCausalLM.from_pretrained(tiny_dir), AutoTokenizer.from_pretrained(tiny_dir)


def _teacher_forced(model, context: list[int], ids: list[int]) -> torch.Tensor:
    with torch.no_grad():
        logits = model(torch.tensor([context + ids])).logits[0, len(context) - 1 : -1]
    return logits.float().log_softmax(-1).gather(1, torch.tensor(ids)[:, None]).squeeze(1)


def _max_gap(model, outs) -> float:
    gaps = [
        (_teacher_forced(model, o.prompt_token_ids, c.token_ids) - torch.tensor(c.logprobs)).abs().max().item()
        for o in outs
        for c in o.completions
    ]
    return max(gaps)


# ---- selection ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("cuda", "has_vllm", "expected"),
    [(True, True, "vllm"), (True, False, "hf-batching"), (False, True, "hf"), (False, False, "hf")],
)
def test_auto_picks_vllm_then_continuous_batching_on_cuda_and_hf_on_cpu(monkeypatch, cuda, has_vllm, expected):
    monkeypatch.setattr(rollout, "vllm_available", lambda: has_vllm)
    assert rollout.resolve_backend_name(RolloutConfig(), cuda=cuda) == expected
    # An explicit choice is kept wherever it can run (continuous batching runs on CPU too).
    assert rollout.resolve_backend_name(RolloutConfig(backend="hf-batching"), cuda=cuda) == "hf-batching"
    assert rollout.resolve_backend_name(RolloutConfig(backend="hf"), cuda=cuda) == "hf"


def test_make_backend_builds_the_chosen_backend(tiny_dir, monkeypatch):
    model_cfg = ModelConfig(name_or_path=str(tiny_dir))
    built = rollout.make_backend(model_cfg, RolloutConfig(backend="hf-batching"), device="cpu", progress=lambda _: None)
    assert type(built) is BatchingBackend and built.name == "hf-batching"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    built = rollout.make_backend(model_cfg, RolloutConfig(backend="auto"), device="cpu", progress=lambda _: None)
    assert type(built) is HFBackend


# ---- outputs on the tiny model -----------------------------------------------------------------------------------


def test_greedy_answers_equal_generate_and_log_probs_are_the_models(tiny):
    model, tok = tiny
    params = SamplingParams(n=2, max_new_tokens=9, temperature=0.0, stop=("Q", "x"))
    padded = HFBackend(model, tok, engine="generate").generate(PROMPTS, params)
    batched = BatchingBackend(model, tok).generate(PROMPTS, params)
    for a, b in zip(padded, batched, strict=True):
        assert a.prompt_token_ids == b.prompt_token_ids and len(b.completions) == 2
        for ca, cb in zip(a.completions, b.completions, strict=True):
            assert (cb.token_ids, cb.text, cb.finish_reason) == (ca.token_ids, ca.text, ca.finish_reason)
            assert cb.logprobs == pytest.approx(ca.logprobs, abs=TOL)
    assert _max_gap(model, batched) < TOL


@pytest.mark.parametrize(
    ("temperature", "top_p", "rescore_tokens"), [(1.0, 1.0, 8192), (0.7, 0.9, 8192), (0.7, 0.9, 8)]
)
def test_sampled_log_probs_are_the_raw_distributions_at_any_temperature(tiny, temperature, top_p, rescore_tokens):
    model, tok = tiny
    backend = BatchingBackend(model, tok, rescore_tokens=rescore_tokens)  # 8: one sequence per rescoring batch
    params = SamplingParams(n=3, max_new_tokens=8, temperature=temperature, top_p=top_p, seed=11)
    outs = backend.generate(PROMPTS, params)
    assert [len(o.completions) for o in outs] == [3] * len(PROMPTS)
    assert all(1 <= len(c.token_ids) == len(c.logprobs) <= 8 for o in outs for c in o.completions)
    # The engine's own log-probs serve only where they are the raw ones; elsewhere every sequence is rescored.
    assert backend.last_rescored == (0 if temperature == 1.0 and top_p == 1.0 else 3 * len(PROMPTS))
    assert _max_gap(model, outs) < TOL


def test_a_seed_replays_a_call_and_each_call_samples_anew(tiny):
    model, tok = tiny
    params = SamplingParams(n=2, max_new_tokens=8, temperature=1.0, seed=5)
    first = BatchingBackend(model, tok)
    a, b = first.generate(PROMPTS, params), first.generate(PROMPTS, params)
    fresh = BatchingBackend(model, tok)
    assert fresh.generate(PROMPTS, params) == a  # the first call of a backend seeded alike
    assert [c.token_ids for o in a for c in o.completions] != [c.token_ids for o in b for c in o.completions]
    samples = [c.token_ids for o in a for c in o.completions]
    assert len({tuple(s) for s in samples}) > len(PROMPTS)  # the n samples of a prompt differ


def test_the_engine_stops_at_a_stop_token_and_completions_are_cut_after_the_stop(tiny, monkeypatch):
    model, tok = tiny
    backend = BatchingBackend(model, tok)
    raw: list[list[int]] = []
    run = backend._run

    def spy(enc, params):
        out = run(enc, params)
        raw.extend(ids for samples in out for ids, _ in samples)
        return out

    monkeypatch.setattr(backend, "_run", spy)
    params = SamplingParams(n=4, max_new_tokens=30, temperature=1.0, seed=3, stop=STOPS)
    outs = backend.generate(PROMPTS, params)
    comps = [c for o in outs for c in o.completions]
    stopped = [c for c in comps if c.finish_reason == "stop" and c.token_ids[-1] != tok.eos_token_id]
    assert stopped, "the tiny model should hit one of ten stop letters in 30 tokens"
    for c, ids in zip(comps, raw, strict=True):
        hits = [k for k, t in enumerate(ids) if tok.decode([t]) in STOPS]
        if c.finish_reason == "stop" and hits:
            assert c.text[-1] in STOPS and not any(s in c.text[:-1] for s in STOPS)
            assert c.token_ids == ids == ids[: hits[0] + 1]  # the engine decoded nothing past the stop
        else:
            assert not hits and not any(s in c.text for s in STOPS)
    assert backend.stop_token_ids(("Q", "xy")) == {tok.convert_tokens_to_ids("Q")}  # "xy" is no single token


def test_stop_strings_over_several_tokens_are_cut_like_the_hf_backend(tiny, monkeypatch):
    model, tok = tiny
    backend = BatchingBackend(model, tok)
    ids = lambda text: tok(text, add_special_tokens=False)["input_ids"]  # noqa: E731 - one id per character
    eos = tok.eos_token_id
    engine = [[(ids("abXYcdXY"), [-1.0] * 8), (ids("ab"), [-2.0] * 2)], [(ids("zz") + [eos], [-3.0] * 3)] * 2]
    monkeypatch.setattr(backend, "_run", lambda enc, params: engine)
    params = SamplingParams(n=2, max_new_tokens=8, temperature=1.0, stop=("XY", "q"))
    outs = backend.generate(["ab", "cd"], params)
    first, short = outs[0].completions
    assert (first.text, first.token_ids, first.logprobs, first.finish_reason) == (
        "abXY",
        ids("abXY"),
        [-1.0] * 4,
        "stop",
    )
    assert (short.text, short.token_ids, short.finish_reason) == ("ab", ids("ab"), "length")
    ended = outs[1].completions[0]
    assert (ended.text, ended.token_ids, ended.logprobs, ended.finish_reason) == (
        "zz",
        ids("zz") + [eos],
        [-3.0] * 3,
        "stop",
    )
    hf = HFBackend(model, tok)
    assert first == hf._completion(ids("abXYcdXY"), [-1.0] * 8, params)  # one definition of a stop for both


def test_a_failed_request_raises_instead_of_dropping_samples():
    class Out:
        def __init__(self, tokens, error=None):
            self.generated_tokens, self.logprobs, self.error = tokens, [0.0] * len(tokens), error

    ok = {"req_0__child#0": Out([1]), "req_0": Out([2])}
    assert BatchingBackend._collect("req_0", 2, ok) == [([1], [0.0]), ([2], [0.0])]
    with pytest.raises(RuntimeError, match="req_0__child#0"):
        BatchingBackend._collect("req_0", 2, {"req_0": Out([2])})
    with pytest.raises(RuntimeError, match="out of blocks"):
        BatchingBackend._collect("req_0", 1, {"req_0": Out([2], error="out of blocks")})


def test_scripted_answers_and_nonempty_blocks(tiny):
    model, tok = tiny
    backend = BatchingBackend(model, tok)
    script = Script(6, ("\n<in>\n", "\n<msg>\n"), 5)
    params = SamplingParams(n=2, max_new_tokens=6, temperature=1.0, seed=2, stop=STOPS)
    outs = backend.generate_scripted(PROMPTS[:2], params, [script] * 2)
    for o in outs:
        for c in o.completions:
            assert c.blocks and c.text == "".join(b.prefix + b.completion.text for b in c.blocks)
            for b in c.blocks:  # each block's log-probs are the model's given what it attended to
                ref = _teacher_forced(model, b.context_ids, b.completion.token_ids)
                assert torch.allclose(ref, torch.tensor(b.completion.logprobs), atol=TOL)
    # No per-request first-token suppression in the engine: such calls run the hf loop, and it holds.
    with pytest.warns(UserWarning, match="hf backend"):
        outs = backend.generate(PROMPTS, SamplingParams(n=3, max_new_tokens=4, seed=1, nonempty=True))
    assert all(c.token_ids[0] not in backend.empty_starts() for o in outs for c in o.completions)


def test_a_trainers_module_keeps_its_mode_and_attention(tiny_dir):
    model = AutoModelForCausalLM.from_pretrained(tiny_dir, attn_implementation="eager")  # the engine swaps eager
    tok = AutoTokenizer.from_pretrained(tiny_dir)
    model.train()
    BatchingBackend(model, tok, shares_trainer_weights=True).generate(PROMPTS[:2], SamplingParams(max_new_tokens=3))
    assert model.training and model.config._attn_implementation == "eager"


# ---- the real default model --------------------------------------------------------------------------------------


@pytest.mark.slow
def test_default_model_log_probs_and_greedy_answers():
    from azr_core.policy.model import load_policy

    model, tok = load_policy(ModelConfig())
    prompts = ["def add(a, b):\n    return", "Write a Python function that reverses a string.\n```python\n"]
    backend = BatchingBackend(model, tok)
    for temperature in (1.0, 0.7):
        top_p = 1.0 if temperature == 1.0 else 0.95  # the engine's log-probs, then rescored ones
        params = SamplingParams(n=2, max_new_tokens=16, temperature=temperature, top_p=top_p, seed=5, stop=("```",))
        assert _max_gap(model, backend.generate(prompts, params)) < TOL
    greedy = SamplingParams(max_new_tokens=16, temperature=0.0, stop=("```", "\n\n"))
    padded = HFBackend(model, tok, engine="generate").generate(prompts, greedy)
    batched = backend.generate(prompts, greedy)
    assert [o.completions[0].token_ids for o in batched] == [o.completions[0].token_ids for o in padded]
