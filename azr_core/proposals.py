"""From completions to tasks and answers: parse proposals, validate them on the executor, parse solver answers.

Nothing here raises on a malformed completion: every failure becomes a recorded reason (a format failure, a missing
block, an input that is not a literal argument list, a program the executor refused), so one bad sample never stops
a batch. Reasons read `category: detail` like the executor's, so history queries can group on the category. The
proposer reward reads `format_ok` and `valid` from the outcome.

`lenient=True` looks for the fenced blocks anywhere in the completion when the `<think>`/`<answer>` format is broken,
so a small model's valid program can still enter the buffers; its format failure is still recorded (and penalised).
"""

from __future__ import annotations

import ast
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from azr_core.executor.checks import CheckError, check_call_expression
from azr_core.executor.executor import GradeRequest
from azr_core.parsing import InputError, extract_fenced, last_fenced_block, parse_call_args, read_answer
from azr_core.task_types import Task, TaskType


@dataclass(frozen=True)
class Candidate:
    """A parsed proposal, not yet run. `reason` is None when it parsed and can go to the executor."""

    task_type: TaskType
    format_ok: bool
    program: str | None = None
    input: str | None = None  # deduction / abduction
    inputs: tuple[str, ...] = ()  # induction: distinct inputs that parse as call arguments, at most N
    message: str | None = None  # induction
    reason: str | None = None
    reference_ids: tuple[str, ...] = ()

    @property
    def parsed(self) -> bool:
        """True when the candidate is complete enough to run."""
        return self.reason is None


@dataclass(frozen=True)
class ProposalOutcome:
    """A proposal after validation: the task it yields (or None) and why not."""

    candidate: Candidate
    valid: bool
    reason: str | None
    task: Task | None = None
    output: str | None = None  # deduction / abduction: the gold output
    outputs: tuple[str | None, ...] = field(default_factory=tuple)  # induction: per input, None where it failed


@dataclass(frozen=True)
class SolverAnswer:
    """A solver completion reduced to the text to grade: an output literal, an input, or a program."""

    format_ok: bool
    answer: str | None
    reason: str | None = None


class ValidationResultLike(Protocol):
    valid: bool
    output: str | None
    reason: str | None


class ValidatingExecutor(Protocol):
    def validate_many(self, items: Sequence[tuple[str, str]]) -> Sequence[ValidationResultLike]: ...


def _answer_region(
    completion: str, *, think_prefilled: bool, lenient: bool, parsing: str = "reference"
) -> tuple[bool, str | None, bool]:
    """(format_ok, the text to search for fenced blocks or None, whether that text is an `<answer>` block).

    'reference': the last `<answer>` block is read whatever the format (`read_answer`); 'strict': only a completion
    whose format is right. Without an answer to read, `lenient` takes the text after `</think>` (or all of it)."""
    parsed = read_answer(completion or "", think_prefilled=think_prefilled, parsing=parsing)
    if parsed.answer is not None and (parsed.format_ok or parsing == "reference"):
        return parsed.format_ok, parsed.answer, True
    if not lenient:
        return False, None, False
    close = (completion or "").find("</think>")
    return False, (completion or "")[close + len("</think>") :] if close >= 0 else (completion or ""), False


FORMAT_REASON = "format: expected <think>...</think> then one <answer>...</answer>"


def parse_proposal(
    task_type: TaskType | str,
    completion: str,
    *,
    n_inputs: int = 10,
    reference: Task | None = None,
    reference_ids: Sequence[str] = (),
    think_prefilled: bool = True,
    lenient: bool = False,
    rename_entry: bool = True,
    reject_multiple: bool = True,
    min_distinct: int | None = None,
    parsing: str = "reference",
    inputs: str = "expression",
    buffer_broken_format: bool = True,
    reject_revealing_message: bool = False,
) -> Candidate:
    """Turn a proposer completion into a Candidate (deduction/abduction: program + input; induction: inputs + message).

    For induction, `reference` is the program the proposer was shown; the candidate runs on it. `rename_entry` and
    `reject_multiple` are the reference's rules for the entry function (see `entry_function`). `min_distinct`: the
    distinct inputs an induction proposal needs (None: all `n_inputs`); repeats are dropped from the task.
    `parsing`: how the answer is read (`read_answer`). `inputs`: 'expression' (checked here, evaluated in the sandbox)
    or 'literal'. `buffer_broken_format`: a proposal whose format is broken is still parsed and validated, and a valid
    one joins the buffers (its reward is the format error's, as the reference); False: it is rejected.
    `reject_revealing_message`: refuse an induction message that contains the program (the reference does not).

    >>> text = "plan</think><answer>```python\\ndef f(x):\\n    return x*2\\n```\\n```input\\n3\\n```</answer>"
    >>> c = parse_proposal("deduction", text)
    >>> (c.format_ok, c.program, c.input, c.reason)
    (True, 'def f(x):\\n    return x*2', '3', None)
    >>> parse_proposal("abduction", "no tags at all").reason
    'format: expected <think>...</think> then one <answer>...</answer>'
    """
    task_type = TaskType(task_type)
    refs = tuple(reference_ids)
    format_ok, region, _ = _answer_region(completion, think_prefilled=think_prefilled, lenient=lenient, parsing=parsing)
    if region is None or (not format_ok and not buffer_broken_format):
        return Candidate(task_type, False, reason=FORMAT_REASON, reference_ids=refs)
    if task_type is TaskType.INDUCTION:
        return _parse_induction(region, format_ok, n_inputs, reference, refs, min_distinct, inputs,
                                reject_revealing_message)  # fmt: skip
    programs = extract_fenced(region, "python")
    found_inputs = extract_fenced(region, "input")
    base = Candidate(task_type, format_ok, reference_ids=refs)
    if not programs:
        return _with(base, reason="parse: missing ```python block")
    program, reason = entry_function(programs[0], rename=rename_entry, reject_multiple=reject_multiple)
    if reason:
        return _with(base, program=program, reason=reason)
    if not found_inputs:
        return _with(base, program=program, reason="parse: missing ```input block")
    inp = found_inputs[0].strip()
    try:
        input_key(inp, inputs)
    except InputError as exc:
        return _with(base, program=program, input=inp, reason=f"input: {exc}")
    return _with(base, program=program, input=inp)


def input_key(text: str, inputs: str = "expression") -> str:
    """What makes two inputs the same input, checked: 'literal' builds the values (`'a'` and `"a"` are one input);
    'expression' checks the text as the sandbox will get it and keys it by its syntax tree (no evaluation here).
    Raises InputError naming the problem."""
    if inputs == "literal":
        return repr(parse_call_args(text))
    try:
        return ast.dump(check_call_expression(text))
    except CheckError as exc:
        raise InputError(str(exc)) from None


def _parse_induction(
    region: str,
    format_ok: bool,
    n_inputs: int,
    reference: Task | None,
    refs: tuple[str, ...],
    min_distinct: int | None = None,
    inputs: str = "expression",
    reject_revealing_message: bool = False,
) -> Candidate:
    """As the reference: the last N ```input blocks are the inputs, all N must be there, and one bad input rejects
    the proposal. Here each must also pass the input checks (`input_key`), and a repeated input is dropped (the
    first kept): at least `min_distinct` (None: all N) distinct inputs must remain. The reference keeps repeats, so
    its held-out pairs can repeat the shown ones and grade nothing."""
    base = Candidate(TaskType.INDUCTION, format_ok, reference_ids=refs)
    if reference is None:
        return _with(base, reason="parse: induction proposal without a reference program")
    base = _with(base, program=reference.program)
    blocks = [raw.strip() for raw in extract_fenced(region, "input")][-n_inputs:]
    messages = extract_fenced(region, "message")
    message = messages[0].strip() if messages else None
    base = _with(base, inputs=tuple(blocks), message=message)
    if len(blocks) < n_inputs:
        return _with(base, reason=f"parse: {len(blocks)} ```input blocks, need {n_inputs}")
    distinct: dict[str, str] = {}  # the value's repr -> its first text: "'a'" and '"a"' are one input
    for k, text in enumerate(blocks):
        try:
            distinct.setdefault(input_key(text, inputs), text)
        except InputError as exc:
            return _with(base, reason=f"input: input {k + 1} of {n_inputs}: {exc}")
    need = n_inputs if min_distinct is None else min(min_distinct, n_inputs)
    if len(distinct) < need:
        return _with(base, reason=f"input: {len(distinct)} distinct of the {n_inputs} inputs, need {need}")
    base = _with(base, inputs=tuple(distinct.values()))
    if not message:
        return _with(base, reason="parse: missing ```message block")
    if reject_revealing_message and reference.program.strip() in message:
        return _with(base, reason="message: reveals the program")
    return base


_DEF_RE = r"def\s+{name}\s*\("


def entry_function(program: str, *, rename: bool = True, reject_multiple: bool = True) -> tuple[str, str | None]:
    """The reference's entry-function rules: (program, reason or None).

    A program must define a function at top level; with `reject_multiple`, only one (nested helpers and classes are
    fine); with `rename`, a single function not named `f` is renamed to `f`, its recursive calls too (by the
    reference's regex). A program that does not parse is passed on unchanged: the executor reports its syntax error.

    >>> entry_function("def g(n):\\n    return n and g(n - 1)")
    ('def f(n):\\n    return n and f(n - 1)', None)
    >>> entry_function("def f(x):\\n    return x\\ndef g(y):\\n    return y")[1]
    'parse: 2 top-level functions (f, g): write one entry function f'
    """
    try:
        tree = ast.parse(program)
    except (SyntaxError, ValueError):
        return program, None
    names = [n.name for n in tree.body if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef)]
    if not names:
        return program, "parse: no top-level function definition"
    if reject_multiple and len(names) > 1:
        return program, f"parse: {len(names)} top-level functions ({', '.join(names)}): write one entry function f"
    if "f" in names or not rename:
        return program, None
    old = re.escape(names[0])
    renamed = re.sub(_DEF_RE.format(name=old), "def f(", program)
    return re.sub(rf"\b{old}\s*\(", "f(", renamed), None


def _with(c: Candidate, **changes: Any) -> Candidate:
    return Candidate(**{**c.__dict__, **changes})


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


def validate_candidates(
    executor: ValidatingExecutor,
    candidates: Sequence[Candidate],
    *,
    iteration: int,
    shown_fraction: float = 0.5,
    proposal_ids: Sequence[str | None] | None = None,
) -> list[ProposalOutcome]:
    """Run every parsed candidate on the executor (one `validate_many` call for the whole batch) and build tasks.

    deduction/abduction: the program runs on its input; the output becomes the gold answer.
    induction: the reference program runs on each of the N inputs; every one must be valid (as the reference), then
    the pairs are split shown / held out in order.
    """
    ids = list(proposal_ids) if proposal_ids is not None else [None] * len(candidates)
    requests: list[tuple[str, str]] = []
    spans: list[tuple[int, int]] = []
    for c in candidates:
        start = len(requests)
        if c.parsed and c.program is not None:
            requests.extend((c.program, inp) for inp in (c.inputs if c.task_type is TaskType.INDUCTION else (c.input,)))
        spans.append((start, len(requests)))
    results = list(executor.validate_many(requests)) if requests else []
    if len(results) != len(requests):
        raise RuntimeError(f"executor returned {len(results)} results for {len(requests)} programs")
    outcomes = []
    for c, (start, end), pid in zip(candidates, spans, ids, strict=True):
        if not c.parsed:
            outcomes.append(ProposalOutcome(c, valid=False, reason=c.reason))
        elif c.task_type is TaskType.INDUCTION:
            outcomes.append(_induction_outcome(c, results[start:end], iteration, shown_fraction, pid))
        else:
            res = results[start]
            if not res.valid:
                outcomes.append(ProposalOutcome(c, valid=False, reason=res.reason or "execution: invalid"))
                continue
            task = Task(c.task_type, c.program or "", c.input, res.output, iteration=iteration,
                        proposal_id=pid, reference_ids=c.reference_ids)  # fmt: skip
            outcomes.append(ProposalOutcome(c, valid=True, reason=None, task=task, output=res.output))
    return outcomes


def _induction_outcome(
    c: Candidate,
    results: Sequence[ValidationResultLike],
    iteration: int,
    shown_fraction: float,
    pid: str | None,
) -> ProposalOutcome:
    outputs = tuple(r.output if r.valid else None for r in results)
    bad = [(k, r) for k, r in enumerate(results) if not r.valid]
    if bad:
        k, first = bad[0]
        reason = f"induction: input {k + 1} of {len(results)} invalid ({first.reason})"[:400]
        return ProposalOutcome(c, valid=False, reason=reason, outputs=outputs)
    pairs = [(i, o) for i, o in zip(c.inputs, outputs, strict=True) if o is not None]
    shown, held = split_induction_pairs(pairs, shown_fraction)
    task = Task(
        TaskType.INDUCTION,
        c.program or "",
        shown_inputs=tuple(i for i, _ in shown),
        shown_outputs=tuple(o for _, o in shown),
        held_inputs=tuple(i for i, _ in held),
        held_outputs=tuple(o for _, o in held),
        message=c.message,
        iteration=iteration,
        proposal_id=pid,
        reference_ids=c.reference_ids,
    )
    return ProposalOutcome(c, valid=True, reason=None, task=task, outputs=outputs)


_ANSWER_TAG = {TaskType.DEDUCTION: "output", TaskType.ABDUCTION: "input", TaskType.INDUCTION: "python"}


def parse_answer(
    task_type: TaskType | str,
    completion: str,
    *,
    think_prefilled: bool = True,
    lenient: bool = False,
    empty_is_format_error: bool = False,
    parsing: str = "reference",
) -> SolverAnswer:
    """Reduce a solver completion to its answer text.

    'reference' parsing: the answer is the last `<answer>` block (whatever the format, so that a learnability
    rollout is graded on it); in it, the last ```output / ```input block, or the bare answer text when it holds none;
    for induction, the last fenced block of any tag, and no fenced block is a format error. 'strict': exactly one
    answer block, its first block of the task's tag (induction: ```python, else the bare text).

    A broken format gives format_ok=False (the solver reward is then the format error's whatever the answer). An
    empty answer is a wrong one (as the reference), or a format error with `empty_is_format_error`.

    >>> parse_answer("deduction", "x doubles</think><answer>```output\\n[1, 2]\\n```</answer>")
    SolverAnswer(format_ok=True, answer='[1, 2]', reason=None)
    >>> a = parse_answer("abduction", "<answer>1</answer>")
    >>> (a.format_ok, a.answer)
    (False, '1')
    >>> parse_answer("induction", "ok</think><answer>```\\ndef f(x):\\n    return x\\n```</answer>").answer
    'def f(x):\\n    return x'
    """
    task_type = TaskType(task_type)
    tag = _ANSWER_TAG[task_type]
    format_ok, region, tagged = _answer_region(completion, think_prefilled=think_prefilled, lenient=lenient,
                                               parsing=parsing)  # fmt: skip
    if region is None:
        return SolverAnswer(False, None, FORMAT_REASON)
    if parsing == "reference" and task_type is TaskType.INDUCTION:
        program = last_fenced_block(region)
        if program is None:
            return SolverAnswer(False, None, "format: no fenced code block in the answer")
        text = program
    else:
        blocks = extract_fenced(region, tag)
        text = (blocks[-1] if parsing == "reference" else blocks[0]).strip() if blocks else region.strip()
        if not tagged and not blocks:
            text = ""  # lenient mode takes only an explicit block from a broken completion, not arbitrary text
    if not text:
        if empty_is_format_error:
            return SolverAnswer(False, None, f"format: empty answer (no ```{tag} content)")
        return SolverAnswer(format_ok, None, f"parse: empty answer (no ```{tag} block)")
    return SolverAnswer(format_ok, text, None if format_ok else FORMAT_REASON)


def grade_request(task: Task, answer: str) -> GradeRequest:
    """What the executor needs to grade `answer` to `task`: induction is graded on the held-out pairs only."""
    if task.task_type is TaskType.INDUCTION:
        tests = list(zip(task.held_inputs, task.held_outputs, strict=True))
        return GradeRequest("induction", answer, tests=tests)
    return GradeRequest(str(task.task_type), answer, program=task.program, input=task.input, output=task.output)  # type: ignore[arg-type]
