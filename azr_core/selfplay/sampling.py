"""Sampling answers from the policy, whole or block by block.

Under `selfplay.response_prefill = "skeleton"` an answer is written block by block: the prompt opens the answer and its
first fenced block; the model writes the block's content and stops at its closing fence; the next block is opened for
it (a deduction proposal: ```python, then ```input; an induction proposal: N ```input blocks, then ```message), and
the answer is closed after the last. The backend writes the whole answer in one call from a `Script` per prompt (the
hf backend continues each block from its KV cache; others re-prefill per block). Only what the model wrote is trained
on: each generated block is one piece, (the ids of everything before it, the tokens it sampled), and the pieces of an
answer share its advantage, which gives exactly the policy gradient of the whole answer with the opened blocks as
given context. A block cut at the length limit ends the answer there (its format fails). Other modes sample the whole
answer in one piece.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

from azr_core.algo.prompts import SKELETON_STOP, block_opening, close_skeleton, response_prefill, skeleton_blocks
from azr_core.algo.tasks import TaskType
from azr_core.policy.rollout.base import Completion, PromptOutput, SamplingParams, Script
from azr_core.policy.rollout.scripts import generate_by_reprefill
from azr_core.policy.trainer.records import SequenceRecord

if TYPE_CHECKING:
    from azr_core.selfplay.session import Session


@dataclass
class Sample:
    """One sampled answer. `text` is what the parsers read (everything after the opening `<think>`); `pieces` are
    what the update trains on: (prompt token ids, completion) of each block the model wrote."""

    text: str
    pieces: list[tuple[list[int], Completion]] = field(default_factory=list)

    @property
    def completion(self) -> Completion:
        """All generated tokens as one completion (for storage and counts): the text as parsed, the ids joined."""
        ids = [t for _, c in self.pieces for t in c.token_ids]
        lps = [lp for _, c in self.pieces for lp in c.logprobs]
        finish = self.pieces[-1][1].finish_reason if self.pieces else "length"
        return Completion(self.text, ids, lps, finish)

    @property
    def prompt_token_ids(self) -> list[int]:
        return self.pieces[0][0] if self.pieces else []


def training_records(pieces: list[tuple[list[int], Completion]], advantage: float, group: str) -> list[SequenceRecord]:
    """What the update trains on for one answer. When each piece's prompt is the previous piece's prompt and
    tokens plus the opened block (the tokenizer kept the boundaries), one sequence: the opened blocks are context
    tokens that take no loss. Otherwise one sequence per piece. The gradient is the same; one sequence runs the
    shared prompt forward and backward once instead of once per piece."""
    ids0 = pieces[0][0] if pieces else []
    seq, completion, logprobs, sampled = list(ids0), [], [], []
    for ids, c in pieces:
        if ids[: len(seq)] != seq:  # re-tokenizing the text merged tokens across a boundary: keep the pieces apart
            return [SequenceRecord(i, c.token_ids, c.logprobs, advantage, group) for i, c in pieces if c.token_ids]
        context = ids[len(seq) :]
        completion += context + c.token_ids
        logprobs += [0.0] * len(context) + c.logprobs
        sampled += [False] * len(context) + [True] * len(c.token_ids)
        seq = ids + c.token_ids
    if not any(sampled):
        return []
    return [SequenceRecord(ids0, completion, logprobs, advantage, group, None if all(sampled) else sampled)]


def sample(
    s: Session, prompts: list[str], role: str, task_types: list[TaskType], n: int, label: str
) -> tuple[list[tuple[int, str, list[Sample]]], int]:
    """n answers per prompt for the prompts that fit `selfplay.max_prompt_tokens` (the others are dropped and
    counted, never truncated). Returns [(prompt index, prompt, samples)] for the kept prompts, and the dropped count."""
    limit = s.cfg.selfplay.max_prompt_tokens
    keep = [i for i, p in enumerate(prompts) if len(s.tokenizer(p)["input_ids"]) <= limit]
    mode = s.cfg.selfplay.response_prefill
    params = SamplingParams.from_config(s.cfg.rollout, n=n)
    if mode != "skeleton":
        outs = _generate(s, [prompts[i] for i in keep], params, label)
        result = [
            (i, out.prompt, [Sample(c.text, [(out.prompt_token_ids, c)]) for c in out.completions])
            for i, out in zip(keep, outs, strict=True)
        ]
        return result, len(prompts) - len(keep)
    return _sample_skeleton(s, prompts, keep, role, task_types, params, label), len(prompts) - len(keep)


def _sample_skeleton(s, prompts, keep, role, task_types, params: SamplingParams, label):
    n_inputs = s.cfg.selfplay.induction_inputs
    block_tokens = min(params.max_new_tokens, s.cfg.selfplay.skeleton_block_tokens)
    scripted = replace(params, stop=(*params.stop, SKELETON_STOP), nonempty=s.cfg.selfplay.skeleton_nonempty_blocks)
    scripts = []
    for i in keep:
        blocks = skeleton_blocks(role, task_types[i], n_inputs)
        # A program block (```python) may run to rollout.max_new_tokens; a value block (input, output, message) to
        # skeleton_block_tokens, the first block of an answer too (an induction proposal's input, a solver's answer).
        first = params.max_new_tokens if blocks[0] == "python" else block_tokens
        openings = tuple(block_opening(b) for b in blocks[1:])
        scripts.append(Script(first, openings, block_tokens, closer=SKELETON_STOP, unclosed="\n" + SKELETON_STOP))
    outs = _generate(s, [prompts[i] for i in keep], scripted, label, scripts)
    result = []
    for i, out in zip(keep, outs, strict=True):
        opened = response_prefill("skeleton", role, task_types[i])[len("<think>") :]
        samples = []
        for c in out.completions:
            smp = Sample(opened + c.text, [(b.context_ids, b.completion) for b in c.blocks or []])
            _close(smp)
            samples.append(smp)
        result.append((i, out.prompt, samples))
    return result


def _close(smp: Sample) -> None:
    smp.text = close_skeleton(smp.text, smp.pieces[-1][1].finish_reason)


def _generate(
    s: Session, prompts: list[str], params: SamplingParams, label: str, scripts: list[Script] | None = None
) -> list[PromptOutput]:
    """Generate in chunks of the rollout batch size, with a progress bar on stderr; scripted answers where `scripts`
    are given (a policy without `generate_scripted` writes them by re-prefilling, one generate call per block)."""
    from tqdm import tqdm

    chunk = max(1, s.cfg.rollout.batch_size // max(1, params.n)) * getattr(s.policy, "world_size", 1)
    outputs: list[PromptOutput] = []
    with tqdm(total=len(prompts), desc=label, unit="prompt", file=sys.stderr, mininterval=5.0,
              disable=not prompts) as bar:  # fmt: skip
        for at in range(0, len(prompts), chunk):
            part = prompts[at : at + chunk]
            if scripts is None:
                outputs += s.policy.generate(part, params)
            elif hasattr(s.policy, "generate_scripted"):
                outputs += s.policy.generate_scripted(part, params, scripts[at : at + chunk])
            else:
                outputs += generate_by_reprefill(s.policy.generate, part, params, scripts[at : at + chunk])
            bar.update(min(chunk, len(prompts) - at))
    return outputs
