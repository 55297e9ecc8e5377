"""Scripted answers by re-prefilling: the way any backend can write an answer block by block.

A block is sampled by one `generate` call whose prompt is the whole text so far (the prompt, the earlier blocks, the
text forced between them), so every block pays for prefilling all of that again. The hf backend continues from its
KV cache instead (azr_core/policy/rollout/decode.py); this path serves the others (vLLM, whose prefix cache makes the
re-prefill cheap) and is the baseline the cached path is measured and tested against.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace

from azr_core.policy.rollout.base import Block, Completion, PromptOutput, SamplingParams, Script

Generate = Callable[[list[str], SamplingParams], list[PromptOutput]]


def join_blocks(blocks: list[Block]) -> Completion:
    """One completion of a scripted answer: the texts with what was forced between them, the sampled ids joined."""
    return Completion(
        text="".join(b.prefix + b.completion.text for b in blocks),
        token_ids=[t for b in blocks for t in b.completion.token_ids],
        logprobs=[lp for b in blocks for lp in b.completion.logprobs],
        finish_reason=blocks[-1].completion.finish_reason,
        blocks=blocks,
    )


def continues(blocks: list[Block], script: Script) -> bool:
    """Whether another block follows: the last one ended by itself and the script opens another."""
    return len(blocks) <= len(script.openings) and blocks[-1].completion.finish_reason == "stop"


def generate_by_reprefill(
    generate: Generate, prompts: Sequence[str], params: SamplingParams, scripts: Sequence[Script]
) -> list[PromptOutput]:
    """`params.n` scripted answers per prompt through plain `generate` calls: the first blocks (one call per
    distinct first-block budget), then one call per round of later blocks, each continuing every live answer."""
    if len(scripts) != len(prompts):
        raise ValueError(f"generate_scripted: {len(prompts)} prompts but {len(scripts)} scripts")
    firsts: list[PromptOutput] = [None] * len(prompts)  # type: ignore[list-item]
    for budget in sorted({sc.first_max_new_tokens for sc in scripts}, reverse=True):  # programs first, as before
        at = [i for i, sc in enumerate(scripts) if sc.first_max_new_tokens == budget]
        outs = generate([prompts[i] for i in at], replace(params, max_new_tokens=budget))
        for i, out in zip(at, outs, strict=True):
            firsts[i] = out
    answers: list[list[list[Block]]] = []
    live: list[tuple[list[Block], Script, str]] = []  # (blocks so far, script, the text the next block follows)
    for out, script in zip(firsts, scripts, strict=True):
        answers.append([])
        for c in out.completions:
            blocks = [Block("", list(out.prompt_token_ids), c)]
            answers[-1].append(blocks)
            live.append((blocks, script, out.prompt + c.text))
    while live := [(b, sc, ctx) for b, sc, ctx in live if continues(b, sc)]:
        nxt = []
        for budget in sorted({sc.block_max_new_tokens for _, sc, _ in live}):
            todo = [(b, sc, ctx) for b, sc, ctx in live if sc.block_max_new_tokens == budget]
            prefixes = [sc.prefix(len(b), b[-1].completion.text) for b, sc, _ in todo]
            contexts = [ctx + pre for (_, _, ctx), pre in zip(todo, prefixes, strict=True)]
            outs = generate(contexts, replace(params, n=1, max_new_tokens=budget))
            for (blocks, sc, ctx), pre, out in zip(todo, prefixes, outs, strict=True):
                c = out.completions[0]
                blocks.append(Block(pre, list(out.prompt_token_ids), c))
                nxt.append((blocks, sc, ctx + pre + c.text))
        live = nxt
    return [
        PromptOutput(out.prompt, list(out.prompt_token_ids), [join_blocks(b) for b in comps])
        for out, comps in zip(firsts, answers, strict=True)
    ]
