"""Parsing what a model writes: `<think>`/`<answer>` blocks, fenced blocks, programs and call arguments.

A task's input is the text of the arguments of a call to `f`, as in CRUXEval: `f(<input>)`, e.g. `[1, 2], 'a'`.
It must consist of Python literals, or of small expressions over literals from a listed set (`dict(did=0)`,
`'a' + 'b'`: see azr_core.lang.literal_exprs), which are built here, in the trusted process, without evaluating code;
only the plain values travel to the sandbox.
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass
from typing import Any

from azr_core.lang.literal_exprs import NotALiteral, build_value
from azr_core.lang.values import LiteralError

_THINK_RE = re.compile(r"<think>(.*?)</think>", re.DOTALL)
_ANSWER_RE = re.compile(r"<answer>(.*?)</answer>", re.DOTALL)
_FENCE_RE = re.compile(r"```[ \t]*([A-Za-z0-9_+-]*)[ \t]*\n(.*?)```", re.DOTALL)


class InputError(ValueError):
    """A task input is not a valid argument list of Python literals."""


@dataclass(frozen=True)
class ParsedCompletion:
    """A completion split into its reasoning and its answer.

    format_ok: a `</think>` closes the reasoning and exactly one `<answer>…</answer>` block follows it. When the
    prompt already opened `<think>` (prefilled), the opening tag may be absent from the completion.
    """

    think: str | None
    answer: str | None
    format_ok: bool


def split_think_answer(text: str, *, think_prefilled: bool = False) -> ParsedCompletion:
    """Split a completion into `<think>` and `<answer>` parts.

    >>> split_think_answer("<think>easy</think>\\n<answer>42</answer>")
    ParsedCompletion(think='easy', answer='42', format_ok=True)
    >>> split_think_answer("<answer>42</answer>").format_ok
    False
    """
    text = text or ""
    close = text.find("</think>")
    think: str | None = None
    if close >= 0:
        start = text.find("<think>")
        if 0 <= start < close:
            think = text[start + len("<think>") : close].strip()
        elif think_prefilled:
            think = text[:close].strip()
    answers = _ANSWER_RE.findall(text)
    answer = answers[-1].strip() if answers else None
    after_think = _ANSWER_RE.findall(text[close:]) if close >= 0 else []
    format_ok = think is not None and len(answers) == 1 and len(after_think) == 1
    return ParsedCompletion(think=think, answer=answer, format_ok=format_ok)


_REFERENCE_FORMAT_RE = re.compile(r"<think>.*?</think>\s*<answer>.*?</answer>", re.DOTALL)


def read_answer(text: str, *, think_prefilled: bool = False, parsing: str = "reference") -> ParsedCompletion:
    """A completion's reasoning, answer and format verdict, read the way `parsing` says.

    'reference' (the reference code): the format is right when the completion starts with `<think>…</think>`,
    followed by whitespace and an `<answer>…</answer>` block (what comes after that block is not checked); the
    answer is the text after the **last** `<answer>` (up to its `</answer>` or the end), whatever the format, and
    None when there is no `<answer>` at all. 'strict': `split_think_answer` (exactly one answer block).
    With `think_prefilled` the prompt opened `<think>`, so the completion starts inside it.

    >>> read_answer("plan</think> <answer>1</answer><answer>2</answer>", think_prefilled=True)
    ParsedCompletion(think='plan', answer='2', format_ok=True)
    >>> read_answer("no think <answer>3", think_prefilled=False)
    ParsedCompletion(think=None, answer='3', format_ok=False)
    """
    if parsing == "strict":
        return split_think_answer(text, think_prefilled=think_prefilled)
    if parsing != "reference":
        raise ValueError(f"unknown answer parsing {parsing!r}: reference or strict")
    text = text or ""
    full = ("<think>" + text if think_prefilled else text).strip()
    closed = full.startswith("<think>") and "</think>" in full
    think = full[len("<think>") : full.find("</think>")].strip() if closed else None
    answer = text.split("<answer>")[-1].split("</answer>")[0].strip() if "<answer>" in text else None
    return ParsedCompletion(think=think, answer=answer, format_ok=_REFERENCE_FORMAT_RE.match(full) is not None)


def last_fenced_block(text: str) -> str | None:
    """The last fenced block of any tag (the reference's induction answer), or None when there is none.

    >>> last_fenced_block("```input\\n1\\n```\\n```\\ndef f(x):\\n    return x\\n```")
    'def f(x):\\n    return x'
    """
    blocks = extract_fenced(text)
    return blocks[-1].strip() if blocks else None


def extract_fenced(text: str, tag: str | None = None) -> list[str]:
    """Contents of fenced blocks (```tag … ```), in order; `tag=None` takes every block.

    >>> extract_fenced("```input\\n[1, 2], 'a'\\n```", "input")
    ["[1, 2], 'a'"]
    """
    blocks = []
    for found_tag, body in _FENCE_RE.findall(text or ""):
        if tag is None or found_tag.lower() == tag.lower():
            blocks.append(body.strip("\n").rstrip())
    return blocks


def extract_program(text: str) -> str | None:
    """The first ```python block of `text`, or None."""
    blocks = extract_fenced(text, "python")
    return blocks[0] if blocks else None


@dataclass(frozen=True)
class CallArgs:
    """Parsed arguments of `f(...)`: positional values and keyword values, all plain literals."""

    args: tuple[Any, ...]
    kwargs: dict[str, Any]

    def to_literal(self) -> str:
        """The canonical text the sandbox receives: `repr((args, kwargs))`, read back with literal_eval."""
        return repr((self.args, self.kwargs))


def parse_call_args(input_text: str, *, max_chars: int = 10_000) -> CallArgs:
    """Parse the text of a call's arguments, `f(<input_text>)`: literals, or listed operations on literals.

    The text must form the argument list of exactly one call on its own, so an injection such as `[0]) or (1`
    (which turns `f(...)` into another expression) is refused, not run. Names, lambdas and other code are refused.

    >>> parse_call_args("[1, 2], 'a'")
    CallArgs(args=([1, 2], 'a'), kwargs={})
    >>> parse_call_args("dict(did=0), 'st ' + '0'")
    CallArgs(args=({'did': 0}, 'st 0'), kwargs={})
    """
    if not isinstance(input_text, str):
        raise InputError(f"input must be text, got {type(input_text).__name__}")
    if len(input_text) > max_chars:
        raise InputError(f"input too large: {len(input_text)} characters > limit {max_chars}")
    source = f"f({input_text.strip()})"
    try:
        tree = ast.parse(source, mode="eval")
    except (SyntaxError, ValueError, MemoryError, RecursionError) as exc:
        raise InputError(f"input is not an argument list: {type(exc).__name__}") from None
    call = tree.body
    if not (isinstance(call, ast.Call) and isinstance(call.func, ast.Name) and call.func.id == "f"):
        raise InputError("input must be the arguments of one call f(...), nothing more")
    if _end_offset(source, call) != len(source.encode("utf-8")):
        raise InputError("input must be the arguments of one call f(...), nothing more (no comments)")
    try:
        args = []
        for node in call.args:
            if isinstance(node, ast.Starred):
                raise InputError("input may not unpack with *")
            args.append(build_value(node))
        kwargs: dict[str, Any] = {}
        for kw in call.keywords:
            if kw.arg is None:
                raise InputError("input may not unpack with **")
            kwargs[kw.arg] = build_value(kw.value)
    except NotALiteral as exc:
        raise InputError(f"input arguments must be Python literals: {exc}") from None
    except RecursionError:
        raise InputError("input arguments must be Python literals: nested too deeply") from None
    parsed = CallArgs(args=tuple(args), kwargs=kwargs)
    try:
        parsed.to_literal()  # what cannot travel to the sandbox as text is refused here, with its reason
    except (ValueError, RecursionError) as exc:
        raise InputError(f"input cannot be sent to the sandbox: {type(exc).__name__}: {exc}") from None
    return parsed


def _end_offset(source: str, node: ast.expr) -> int:
    """Absolute UTF-8 byte offset where `node` ends (ast columns count bytes, lines count from 1)."""
    lines = source.encode("utf-8").splitlines(keepends=True)
    return sum(len(line) for line in lines[: node.end_lineno - 1]) + node.end_col_offset


__all__ = [
    "CallArgs",
    "InputError",
    "LiteralError",
    "ParsedCompletion",
    "extract_fenced",
    "extract_program",
    "last_fenced_block",
    "parse_call_args",
    "read_answer",
    "split_think_answer",
]
