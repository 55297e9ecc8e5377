"""Sampling answers whole (the paper's `<think>` prefill) or block by block (the answer skeleton)."""

from __future__ import annotations

import types

from azr_core.algo.prompts import response_prefill
from azr_core.algo.proposals import parse_proposal
from azr_core.algo.tasks import TaskType, seed_tasks
from azr_core.config import load_config
from azr_core.policy.rollout.base import Completion, PromptOutput
from azr_core.selfplay.sampling import sample


class Tok:
    def __call__(self, text):
        return {"input_ids": [ord(c) for c in text]}


class BlockPolicy:
    """Writes the content of whatever block the context ends in; `cut` makes the ```input block run out of tokens."""

    def __init__(self, cut: bool = False) -> None:
        self.contexts: list[str] = []
        self.cut = cut
        self.params: list = []

    def generate(self, prompts, params):
        out = []
        self.params.append(params)
        for p in prompts:
            self.contexts.append(p)
            block = p.rsplit("```", 1)[-1].strip()
            text, finish = {
                "python": ("def g(x):\n    return x + 1\n```", "stop"),
                "input": ("3\n```", "stop") if not self.cut else ("3, 4, 5, 6", "length"),
                "message": ("adds one\n```", "stop"),
            }.get(block, ("<think>plan</think><answer>whole</answer>", "stop"))
            comps = [Completion(text, [7] * (k + 2), [-0.1] * (k + 2), finish) for k in range(params.n)]
            out.append(PromptOutput(p, [1] * len(p), comps))
        return out


def _session(policy, **over):
    cfg = load_config(None, [f"{k}={v}" for k, v in over.items()], profile="cpu-tiny")
    return types.SimpleNamespace(cfg=cfg, tokenizer=Tok(), policy=policy)


def test_a_skeleton_answer_is_written_block_by_block_and_trained_on_as_its_pieces():
    policy = BlockPolicy()
    s = _session(policy)
    prompt = "PROMPT" + response_prefill("skeleton", "propose", "deduction")
    sampled, dropped = sample(s, [prompt], "propose", [TaskType.DEDUCTION], 2, "t")
    assert dropped == 0
    ((i, p, samples),) = sampled
    assert i == 0 and p == prompt and len(samples) == 2
    smp = samples[0]
    assert smp.text.endswith("```python\ndef g(x):\n    return x + 1\n```\n```input\n3\n```\n</answer>")
    # two pieces: the program (prompt = the prompt) and the input (prompt = everything before it, block opened)
    assert len(smp.pieces) == 2 and policy.contexts[1].endswith("return x + 1\n```\n```input\n")
    assert all(len(c.token_ids) == len(c.logprobs) for _, c in smp.pieces)
    assert smp.completion.token_ids == smp.pieces[0][1].token_ids + smp.pieces[1][1].token_ids
    c = parse_proposal("deduction", smp.text)
    assert c.parsed and c.format_ok and c.program == "def f(x):\n    return x + 1" and c.input == "3"  # renamed to f


def test_a_block_cut_at_the_length_limit_ends_the_answer_unclosed():
    s = _session(BlockPolicy(cut=True), **{"selfplay.induction_inputs": 3})
    prompt = "P" + response_prefill("skeleton", "propose", "induction")
    ((_, _, (smp,)),) = sample(s, [prompt], "propose", [TaskType.INDUCTION], 1, "t")[0]
    assert len(smp.pieces) == 1 and not smp.text.endswith("</answer>")  # no further block was opened
    c = parse_proposal("induction", smp.text, n_inputs=3, reference=seed_tasks()[0])
    assert not c.format_ok and not c.parsed


def test_think_mode_samples_the_whole_answer_in_one_piece_and_drops_long_prompts():
    policy = BlockPolicy()
    s = _session(policy, **{"selfplay.response_prefill": "think", "selfplay.max_prompt_tokens": 20})
    sampled, dropped = sample(s, ["short <think>", "x" * 50], "solve", [TaskType.DEDUCTION] * 2, 1, "t")
    assert dropped == 1 and [i for i, _, _ in sampled] == [0] and len(policy.contexts) == 1
    (smp,) = sampled[0][2]
    assert smp.text == "<think>plan</think><answer>whole</answer>" and len(smp.pieces) == 1


def test_skeleton_blocks_are_sampled_nonempty_as_configured():
    for flag in (True, False):
        policy = BlockPolicy()
        s = _session(policy, **{"selfplay.skeleton_nonempty_blocks": flag})
        prompt = "P" + response_prefill("skeleton", "propose", "induction")
        sample(s, [prompt], "propose", [TaskType.INDUCTION], 1, "t")
        assert len(policy.params) == 1 + s.cfg.selfplay.induction_inputs  # the first block, then one call per block
        assert all(p.nonempty is flag for p in policy.params)
    assert load_config(None, [], profile="cpu-tiny").selfplay.skeleton_nonempty_blocks
    assert not load_config(None, []).selfplay.skeleton_nonempty_blocks  # the paper's profile samples freely


def test_a_value_block_is_capped_at_skeleton_block_tokens_and_a_program_block_is_not():
    policy = BlockPolicy()
    s = _session(policy, **{"selfplay.skeleton_block_tokens": 7, "rollout.max_new_tokens": 50})
    types_ = [TaskType.DEDUCTION, TaskType.INDUCTION, TaskType.ABDUCTION]
    prompts = ["A" + response_prefill("skeleton", "propose", t) for t in types_]
    sampled, _ = sample(s, prompts, "propose", types_, 1, "t")
    assert [i for i, _, _ in sampled] == [0, 1, 2]  # in the prompts' order
    assert [smp.text.count("```input") for _, _, (smp,) in sampled] == [1, s.cfg.selfplay.induction_inputs, 1]
    # the first calls: the two programs with the full budget, the induction proposal's first input capped
    assert [policy.params[k].max_new_tokens for k in (0, 1)] == [50, 7]
    assert policy.contexts[0].startswith("A") and "```input" in policy.contexts[2].rsplit("<answer>", 1)[-1]
    assert all(p.max_new_tokens == 7 for p in policy.params[1:])
    solver = BlockPolicy()
    s = _session(solver, **{"selfplay.skeleton_block_tokens": 7, "rollout.max_new_tokens": 50})
    sample(s, ["Q" + response_prefill("skeleton", "solve", "deduction")], "solve", [TaskType.DEDUCTION], 1, "t")
    assert [p.max_new_tokens for p in solver.params] == [7]  # a solver's ```output answer is a value
