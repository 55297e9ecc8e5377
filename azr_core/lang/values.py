"""Python literal values: parsing model-written text into plain data and comparing it.

Everything a model writes as an input or an output is parsed here with `ast.literal_eval` (never `eval`) and compared
on plain values in the trusted process, so `[1,2]` equals `[1, 2]` and `{1, 2}` equals `{2, 1}`, while an injected
expression such as `[0]) or (1` is simply not a literal.
"""

from __future__ import annotations

import ast
import math
from typing import Any

#: Types a value may be built from. Exact types only: a subclass could carry a rigged `__eq__` or `__repr__`.
LITERAL_TYPES: tuple[type, ...] = (int, float, complex, str, bytes, bool, type(None), list, tuple, dict, set, frozenset)


class LiteralError(ValueError):
    """The text is not a Python literal (or is too large to accept)."""


def parse_literal(text: str, *, max_chars: int = 100_000) -> Any:
    """Parse `text` as one Python literal; raise LiteralError with a reason otherwise.

    >>> parse_literal("[1,2, {'a': (3, None)}]")
    [1, 2, {'a': (3, None)}]
    """
    if not isinstance(text, str):
        raise LiteralError(f"expected text, got {type(text).__name__}")
    if len(text) > max_chars:
        raise LiteralError(f"literal too large: {len(text)} characters > limit {max_chars}")
    try:
        return ast.literal_eval(text.strip())
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError) as exc:
        # ValueError also covers ints over sys.get_int_max_str_digits.
        raise LiteralError(f"not a Python literal: {type(exc).__name__}: {_short(exc)}") from None


def canonical(value: Any) -> Any:
    """A hashable, type-tagged form of a literal value: two values are equal iff their canonical forms are.

    Types are strict (True is not 1, 1 is not 1.0) and containers compare by content (sets ignore order).
    Raises LiteralError for anything that is not built only from LITERAL_TYPES.
    """
    t = type(value)
    if t is float:
        if math.isnan(value):
            return ("float", "nan")
        return ("float", value)
    if t in (int, str, bytes, bool, complex) or value is None:
        return (t.__name__, value)
    if t is list or t is tuple:
        return (t.__name__, tuple(canonical(v) for v in value))
    if t is set or t is frozenset:
        return (t.__name__, frozenset(canonical(v) for v in value))
    if t is dict:
        return ("dict", frozenset((canonical(k), canonical(v)) for k, v in value.items()))
    raise LiteralError(f"not a plain literal value: {t.__name__}")


def values_equal(a: Any, b: Any) -> bool:
    """Strict structural equality of two literal values; False (never an exception) for non-literals.

    >>> values_equal([1, {2, 3}], [1, {3, 2}]), values_equal(1, True), values_equal((1,), [1])
    (True, False, False)
    """
    try:
        return canonical(a) == canonical(b)
    except (LiteralError, RecursionError):
        return False


def literal_texts_equal(a: str, b: str, *, max_chars: int = 100_000) -> bool:
    """Compare two texts as literal values; a text that does not parse is equal to nothing."""
    try:
        return values_equal(parse_literal(a, max_chars=max_chars), parse_literal(b, max_chars=max_chars))
    except LiteralError:
        return False


def _short(exc: BaseException, limit: int = 120) -> str:
    msg = str(exc).replace("\n", " ")
    return msg if len(msg) <= limit else msg[: limit - 3] + "..."
