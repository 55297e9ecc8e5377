"""Taking the answer out of a completion: `<answer>…</answer>`, else the last `\\boxed{}`; code from fenced blocks."""

from __future__ import annotations

import re

from azr_core.eval.benchmarks import last_boxed
from azr_core.lang.parsing import extract_fenced

_ANSWER_RE = re.compile(r"<answer>(.*?)</answer>", re.DOTALL)
_OPEN_ANSWER_RE = re.compile(r"<answer>(.*)$", re.DOTALL)


def extract_answer(text: str, *, prefer_boxed: bool = False) -> str | None:
    """The answer of a completion: the last closed `<answer>` block, else the last `\\boxed{}`, else None.

    Math prefers the box (an `<answer>` block often wraps prose around it): `prefer_boxed=True` takes the last box
    anywhere first. Inside an answer block a box is unwrapped.

    >>> extract_answer("<think>..</think><answer>[1, 2]</answer>")
    '[1, 2]'
    >>> extract_answer("so the result is \\\\boxed{\\\\frac{1}{2}}.", prefer_boxed=True)
    '\\\\frac{1}{2}'
    """
    text = text or ""
    if prefer_boxed:
        boxed = last_boxed(text)
        if boxed is not None:
            return boxed
    found = _ANSWER_RE.findall(text)
    if found:
        inner = found[-1].strip()
        return last_boxed(inner) or inner
    return last_boxed(text)


def crux_output_answer(answer: str) -> str:
    """CRUXEval-O answers are often written as `f(x) == y` or `assert f(x) == y`: keep `y`."""
    text = _strip_code(answer)
    if "==" in text and text.lstrip().startswith(("assert", "f(")):
        text = text.split("==", 1)[1]
    return text.strip()


def crux_input_answer(answer: str) -> str:
    """CRUXEval-I answers are often written as `f(x)` or `assert f(x) == y`: keep the arguments `x`."""
    text = _strip_code(answer).strip()
    text = text.removeprefix("assert").strip()
    if text.startswith("f(") and "==" in text:
        text = text.split("==", 1)[0].strip()
    if text.startswith("f(") and text.endswith(")"):
        text = text[2:-1]
    return text.strip()


def _strip_code(answer: str) -> str:
    blocks = extract_fenced(answer)
    text = blocks[-1] if blocks else answer
    return text.strip().strip("`").strip()


def extract_code(completion: str, entry_point: str, prompt: str) -> str:
    """The program a code-generation completion wrote.

    The last fenced block that defines `entry_point`, else the longest fenced block, else the text itself; when the
    chosen code does not define the entry point (a body continuing the prompt), the prompt is put in front of it.
    """
    blocks = extract_fenced(completion or "")
    defines = [b for b in blocks if re.search(rf"^\s*def\s+{re.escape(entry_point)}\s*\(", b, re.MULTILINE)]
    if defines:
        code = defines[-1]
    elif blocks:
        code = max(blocks, key=len)
    else:
        match = _OPEN_ANSWER_RE.search(completion or "")
        code = (match.group(1) if match else completion or "").replace("</answer>", "")
    if not re.search(rf"^\s*def\s+{re.escape(entry_point)}\s*\(", code, re.MULTILINE):
        code = prompt + code
    return code
