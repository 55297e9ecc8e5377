"""Induction: the solver gets input/output pairs and a message and must write the program (the paper's code_f).

The proposer does not write a program: it is shown one from the deduction/abduction buffers and writes N inputs and a
message. As the reference: the last N ```input blocks are the inputs, all N must be there, and one bad input rejects
the proposal; here each must also pass the input checks (`input_key`), and a repeated input is dropped (the first
kept): at least `min_distinct` (None: all N) distinct inputs must remain. The reference keeps repeats, so its
held-out pairs can repeat the shown ones and grade nothing.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from azr_core.algo.candidates import Candidate, ProposalOutcome, ValidationResultLike, input_key, with_changes
from azr_core.algo.prompt_text import (
    EXAMPLE_INPUT,
    EXAMPLE_INPUT_2,
    FORMAT_INPUT,
    bullets,
    code_requirements,
    fence,
    worked_answer,
)
from azr_core.algo.tasks import Task, TaskType
from azr_core.algo.types.base import SeedRole, TaskTypeSpec
from azr_core.executor.executor import GradeRequest
from azr_core.lang.parsing import InputError, extract_fenced, last_fenced_block

if TYPE_CHECKING:
    from azr_core.algo.buffers import TaskBuffers

#: The call line after the program in an induction proposer's prompt: where the proposed input goes.
INPUT_SUFFIX = "f(<your input goes here>)"


class Induction(TaskTypeSpec):
    """shown input/output pairs + message -> a program, graded on the held-out pairs in the sandbox."""

    name = TaskType.INDUCTION
    answer_tag = "python"
    proposes_program = False
    seed_role: SeedRole = "inputs"

    def proposer_text(
        self, references: Sequence[Task], *, n_inputs: int, compact: bool, worked_example: bool, timeout_s: float
    ) -> str:
        if not references:
            raise ValueError("an induction proposer prompt needs one reference program")
        return proposer_request(references[0], n_inputs, compact=compact, worked_example=worked_example)

    def solver_text(self, task: Task, *, compact: bool, timeout_s: float) -> str:
        return solver_request(task, timeout_s=timeout_s, compact=compact)

    def propose_blocks(self, n_inputs: int) -> tuple[str, ...]:
        return ("input",) * n_inputs + ("message",)

    def references(self, buffers: TaskBuffers, rng: random.Random, *, k: int, distinct_programs: bool) -> list[Task]:
        """One program, from the deduction and abduction buffers (the induction buffer when they are empty)."""
        return [buffers.sample_program(rng)]

    def parse(self, region: str, base: Candidate, *, reference: Task | None, **options: Any) -> Candidate:
        n_inputs = options.get("n_inputs", 10)
        min_distinct = options.get("min_distinct")
        if reference is None:
            return with_changes(base, reason="parse: induction proposal without a reference program")
        base = with_changes(base, program=reference.program)
        blocks = [raw.strip() for raw in extract_fenced(region, "input")][-n_inputs:]
        messages = extract_fenced(region, "message")
        message = messages[0].strip() if messages else None
        base = with_changes(base, inputs=tuple(blocks), message=message)
        if len(blocks) < n_inputs:
            return with_changes(base, reason=f"parse: {len(blocks)} ```input blocks, need {n_inputs}")
        distinct: dict[str, str] = {}  # the value's key -> its first text: "'a'" and '"a"' are one input
        for k, text in enumerate(blocks):
            try:
                distinct.setdefault(input_key(text, options.get("inputs", "expression")), text)
            except InputError as exc:
                return with_changes(base, reason=f"input: input {k + 1} of {n_inputs}: {exc}")
        need = n_inputs if min_distinct is None else min(min_distinct, n_inputs)
        if len(distinct) < need:
            return with_changes(base, reason=f"input: {len(distinct)} distinct of the {n_inputs} inputs, need {need}")
        base = with_changes(base, inputs=tuple(distinct.values()))
        if not message:
            return with_changes(base, reason="parse: missing ```message block")
        if options.get("reject_revealing_message") and reference.program.strip() in message:
            return with_changes(base, reason="message: reveals the program")
        return base

    def run_requests(self, c: Candidate) -> list[tuple[str, str]]:
        return [(c.program or "", inp) for inp in c.inputs]

    def outcome(
        self, c: Candidate, results: Sequence[ValidationResultLike], *, iteration: int, shown_fraction: float,
        proposal_id: str | None,
    ) -> ProposalOutcome:  # fmt: skip
        """Every input must run (as the reference); then the pairs are split shown / held out in order."""
        outputs = tuple(r.output if r.valid else None for r in results)
        bad = [(k, r) for k, r in enumerate(results) if not r.valid]
        if bad:
            k, first = bad[0]
            reason = f"induction: input {k + 1} of {len(results)} invalid ({first.reason})"[:400]
            return ProposalOutcome(c, valid=False, reason=reason, outputs=outputs)
        pairs = [(i, o) for i, o in zip(c.inputs, outputs, strict=True) if o is not None]
        shown, held = split_induction_pairs(pairs, shown_fraction)
        task = Task(
            self.name,
            c.program or "",
            shown_inputs=tuple(i for i, _ in shown),
            shown_outputs=tuple(o for _, o in shown),
            held_inputs=tuple(i for i, _ in held),
            held_outputs=tuple(o for _, o in held),
            message=c.message,
            iteration=iteration,
            proposal_id=proposal_id,
            reference_ids=c.reference_ids,
        )
        return ProposalOutcome(c, valid=True, reason=None, task=task, outputs=outputs)

    def answer_text(self, region: str, *, tagged: bool, parsing: str) -> tuple[str, str | None]:
        """'reference': the last fenced block of any tag is the program, and no fenced block is a format error."""
        if parsing != "reference":
            return super().answer_text(region, tagged=tagged, parsing=parsing)
        program = last_fenced_block(region)
        if program is None:
            return "", "format: no fenced code block in the answer"
        return program, None

    def grade_request(self, task: Task, answer: str) -> GradeRequest:
        """Graded on the held-out pairs only."""
        return GradeRequest("induction", answer, tests=list(zip(task.held_inputs, task.held_outputs, strict=True)))


def split_induction_pairs(
    pairs: Sequence[tuple[str, str]], shown_fraction: float
) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    """The first int(N * shown_fraction) pairs (rounded down) are shown, the rest held out, in the proposer's order
    (the reference shows the first N // 2); at least one of each.

    >>> split_induction_pairs([("1", "1"), ("2", "2"), ("3", "3"), ("4", "4")], 0.5)
    ([('1', '1'), ('2', '2')], [('3', '3'), ('4', '4')])
    """
    if len(pairs) < 2:
        raise ValueError("need at least two pairs to split")
    n_shown = min(len(pairs) - 1, max(1, int(len(pairs) * shown_fraction)))
    return list(pairs[:n_shown]), list(pairs[n_shown:])


def proposer_request(
    reference: Task,
    n_inputs: int,
    *,
    compact: bool = False,
    worked_example: bool = False,
) -> str:
    """An induction proposer's request: N inputs for the given program and a message about it."""
    program = fence("python", f"{reference.program}\n{INPUT_SUFFIX}")
    examples = f"{fence('input', EXAMPLE_INPUT)}\n{fence('input', EXAMPLE_INPUT_2)}"
    worked = ""
    if worked_example:
        worked = worked_answer(
            "\n".join(fence("input", s) for s in ("'John', {'b': 1, 'a': 2}", "'', {}", "'x', {'z': 0}"))
            + "\n" + fence("message", "Sort the dictionary's keys and join them after the name."),
            "The inputs cover empty and non-empty dicts so that the outputs tell the rule apart.",
        )  # fmt: skip
    if compact:
        known = ""
        if worked_example and reference.input is not None:  # the program's own known pair, as a worked example
            pair = f"{fence('input', reference.input)}\ngives {fence('output', reference.output or '')}"
            known = f"For example, the input {pair}\n\n"
        return (
            f"## Task: Write {n_inputs} inputs for the program below, giving varied outputs, and a message about it\n"
            "A test subject sees some of your inputs with their outputs, and your message, and must work out the "
            "program.\n\n"
            f"### Input requirements:\n- {n_inputs} different inputs the program accepts, each in its own fenced "
            "input block: the arguments of a call, commas between them, strings in quotes\n\n"
            "### Message requirements:\n- a hint at what the program does, in a fenced message block, without the "
            "program itself\n\n"
            f"### Format:\n{fence('input', FORMAT_INPUT)}\n{fence('message', '...')}\n\n"
            f"### Program:\n{program}\n\n{known}"
        )
    return (
        f"## Task: Write {n_inputs} inputs that make the program below produce varied outputs, and a message about "
        "it\n\n"
        f"Design {n_inputs} inputs for the program below whose outputs differ from one another. Some of your inputs, "
        "with the outputs the program gives for them, will be shown to a test subject, who must then work out the "
        "program: an I.Q. test. Leave the test subject a message that helps them find it.\n\n"
        "### Input requirements:\n"
        f"- Give {n_inputs} inputs the program accepts\n"
        "- In each input, separate several arguments with commas\n"
        "- Put quotes around string arguments\n"
        "- Put every input in its own fenced input block\n\n"
        "### Message requirements:\n"
        "- Leave the test subject a message that helps them work out the program\n"
        "- Put it in a fenced message block\n"
        "- Any form will do: a coding question, or a plain description of what the program does\n"
        "- The message may not contain the program itself\n\n"
        f"### Format:\n- Each input:\n{fence('input', FORMAT_INPUT)}\n- The message:\n{fence('message', '...')}\n\n"
        f"### Example of the format:\n{examples}\n\n{worked}"
        "### How it is judged:\n"
        "- It runs: the program must execute on every input\n"
        "- Coverage: together the inputs and outputs span what the program does, enough to tell what it is\n"
        "- Originality: the inputs differ clearly from one another\n"
        "- Challenge: inputs and message together make the program hard, but possible, to find\n\n"
        "Plan first: understand the program, then decide how your inputs cover it and why they are challenging and "
        "original. Then write the inputs, each in a fenced input block, and the message in a fenced message block.\n\n"
        f"### Program:\n{program}\n"
    )


def solver_request(task: Task, *, timeout_s: float = 10.0, compact: bool = False) -> str:
    """The solver's request for an induction task: the program behind the shown pairs and the message."""
    pairs = "\n".join(
        f"{fence(f'input_{i}', x)}\n{fence(f'output_{i}', y)}"
        for i, (x, y) in enumerate(zip(task.shown_inputs, task.shown_outputs, strict=True))
    )
    requirements = bullets(code_requirements(timeout_s, multi_step=False, compact=compact))
    if compact:
        return (
            "# Task: Write the function `f` that maps these inputs to these outputs; it is tested on hidden inputs. "
            "Give it in a fenced python block.\n\n"
            f"# Code requirements:\n{requirements}\n\n"
            f"# Input and output pairs:\n{pairs}\n\n# Message:\n{fence('message', task.message or '')}\n"
        )
    return (
        "# Task: Work out the program that maps the inputs to the outputs\n"
        "Below are input/output pairs and a message that describes a function. Reason step by step to write a "
        "program that reproduces the one that made the pairs: it will be tested on hidden inputs of that same "
        "program. Checking your program against each pair helps; revise it until it fits them all. Your final "
        "program, in a fenced python block, is what gets graded.\n\n"
        f"# Code requirements:\n{requirements}\n\n"
        f"# Input and output pairs:\n{pairs}\n\n"
        f"# Message:\n{fence('message', task.message or '')}\n\n"
        f"# Example of the answer format:\n{fence('python', 'def f(a):' + chr(10) + '    return a')}\n\n"
        "The entry function must be named `f`.\n"
    )
