"""The pieces every task type's proposal and answer handling shares: a parsed proposal (`Candidate`), its outcome
after validation, a solver's answer, where the answer text of a completion is, and the entry-function and input rules.

Nothing here raises on a malformed completion: every failure becomes a recorded reason that reads `category: detail`
like the executor's, so history queries can group on the category.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from azr_core.algo.tasks import Task, TaskType
from azr_core.executor.checks import CheckError, check_call_expression
from azr_core.lang.parsing import InputError, parse_call_args, read_answer


@dataclass(frozen=True)
class Candidate:
    """A parsed proposal, not yet run. `reason` is None when it parsed and can go to the executor."""

    task_type: TaskType | str
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


def answer_region(
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


def with_changes(c: Candidate, **changes: Any) -> Candidate:
    """A copy of `c` with `changes`."""
    return Candidate(**{**c.__dict__, **changes})
