"""Input values written as small expressions over literals, built in the trusted process without evaluating code.

People (and models) write honest inputs such as `dict(did=0)`, `'st ' + '0\\t\\n  '`, `''.join(['A'] * 20)` or
`float('inf')`. These are values, not code: each is built here by walking its syntax tree and applying one operation
from a small listed set to values already built, with every size checked BEFORE the operation runs (so
`'a' * 10**9` or `9 ** 9 ** 9` is refused, not computed). Anything else (a name, a lambda, a comprehension, a call of
anything not listed) is refused with a reason that says what it is.

The listed set:
- literals: numbers, strings, bytes, True/False/None, lists, tuples, sets, dicts (`ast.literal_eval`'s forms);
- constructors of literal types with literal arguments: dict, list, tuple, set, frozenset, str, int, float, complex,
  bool, bytes (`bytes(n)` only up to the size limit);
- operators: unary `-`, `+`, `~`, `not`; binary `+ - * / // % ** << >> & | ^` (`%` on numbers only: on text it is
  formatting, whose widths could ask for any size);
- subscripts and slices of a value (`[1, 2, 3][::-1]`);
- one method: `str.join` / `bytes.join` (`''.join([...])`).
"""

from __future__ import annotations

import ast
import operator
from collections.abc import Callable
from typing import Any

#: Largest value any step may build, counted like its text: characters of strings, digits of numbers, one per
#: element, with shared elements counted each time they occur (`['a' * 1000] * 1000` weighs a million).
MAX_WEIGHT = 100_000
#: Largest int any step may build, in bits: about 4,200 decimal digits, under Python's 4,300-digit repr limit, so
#: the value can always travel to the sandbox as text.
MAX_INT_BITS = 14_000

CONSTRUCTORS: dict[str, Callable[..., Any]] = {
    t.__name__: t for t in (dict, list, tuple, set, frozenset, str, int, float, complex, bool, bytes)
}
_SIZED = (str, bytes, list, tuple, set, frozenset, dict)
_BINOPS: dict[type, Callable[[Any, Any], Any]] = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
    ast.FloorDiv: operator.floordiv,
    ast.Mod: operator.mod,
    ast.Pow: operator.pow,
    ast.LShift: operator.lshift,
    ast.RShift: operator.rshift,
    ast.BitAnd: operator.and_,
    ast.BitOr: operator.or_,
    ast.BitXor: operator.xor,
}
_UNARYOPS: dict[type, Callable[[Any], Any]] = {
    ast.USub: operator.neg,
    ast.UAdd: operator.pos,
    ast.Invert: operator.invert,
    ast.Not: operator.not_,
}


class NotALiteral(ValueError):
    """The expression is not built from literals by the listed operations; the message says what it holds."""


def build_value(node: ast.expr) -> Any:
    """The value of `node` if it is a literal or a listed operation on literals; raise NotALiteral otherwise.

    >>> build_value(ast.parse("dict(did=0), 'st ' + 'x' * 2", mode="eval").body)
    ({'did': 0}, 'st xx')
    """
    value = _build(node)
    _check_size(value)
    return value


def _build(node: ast.expr) -> Any:
    if isinstance(node, ast.Constant):
        if node.value is Ellipsis:
            raise NotALiteral("... (Ellipsis) is not a value an input may hold")
        return node.value
    if isinstance(node, ast.List):
        return [_build(e) for e in _no_starred(node.elts)]
    if isinstance(node, ast.Tuple):
        return tuple(_build(e) for e in _no_starred(node.elts))
    if isinstance(node, ast.Set):
        return _checked(set, [_build(e) for e in _no_starred(node.elts)])
    if isinstance(node, ast.Dict):
        if any(k is None for k in node.keys):
            raise NotALiteral("** unpacking inside a dict is not allowed")
        return _checked(dict, [(_build(k), _build(v)) for k, v in zip(node.keys, node.values, strict=True)])
    if isinstance(node, ast.UnaryOp) and type(node.op) in _UNARYOPS:
        return _checked(_UNARYOPS[type(node.op)], _build(node.operand))
    if isinstance(node, ast.BinOp) and type(node.op) in _BINOPS:
        left, right = _build(node.left), _build(node.right)
        _check_binop(node.op, left, right)
        return _checked(_BINOPS[type(node.op)], left, right)
    if isinstance(node, ast.Subscript):
        return _checked(operator.getitem, _build(node.value), _build_index(node.slice))
    if isinstance(node, ast.Call):
        return _build_call(node)
    raise NotALiteral(_describe(node))


def _build_call(node: ast.Call) -> Any:
    if any(isinstance(a, ast.Starred) for a in node.args) or any(k.arg is None for k in node.keywords):
        raise NotALiteral("* and ** unpacking in a call are not allowed")
    func = node.func
    if isinstance(func, ast.Attribute) and func.attr == "join" and not node.keywords and len(node.args) == 1:
        sep = _build(func.value)
        if type(sep) in (str, bytes):
            parts = _build(node.args[0])
            if isinstance(parts, _SIZED):
                total = len(sep) * len(parts) + _weight(parts)
                _require(total <= MAX_WEIGHT, f"the joined text would weigh over {MAX_WEIGHT}")
            return _checked(sep.join, parts)
    if not (isinstance(func, ast.Name) and func.id in CONSTRUCTORS):
        raise NotALiteral(f"a call of {_describe(func)}: only {', '.join(CONSTRUCTORS)} and str.join may be called")
    args = [_build(a) for a in node.args]
    kwargs = {k.arg: _build(k.value) for k in node.keywords}
    if func.id == "bytes" and args and type(args[0]) is int:
        _require(args[0] <= MAX_WEIGHT, f"bytes({args[0]}) is larger than {MAX_WEIGHT} bytes")
    return _checked(CONSTRUCTORS[func.id], *args, **kwargs)


def _build_index(node: ast.expr) -> Any:
    if isinstance(node, ast.Slice):
        parts = [None if p is None else _build(p) for p in (node.lower, node.upper, node.step)]
        return slice(*parts)
    return _build(node)


def _check_binop(op: ast.operator, left: Any, right: Any) -> None:
    # Sizes are checked before the operation runs: the point is never to allocate or compute something huge.
    if isinstance(op, ast.Mult):
        for seq, n in ((left, right), (right, left)):
            if isinstance(seq, _SIZED) and type(n) in (int, bool):
                _require(_weight(seq) * n <= MAX_WEIGHT, f"the repetition would weigh over {MAX_WEIGHT}")
        if type(left) is int and type(right) is int:
            _require(left.bit_length() + right.bit_length() <= MAX_INT_BITS, "the product is too large an integer")
    elif isinstance(op, ast.Add) and isinstance(left, _SIZED) and isinstance(right, _SIZED):
        _require(_weight(left) + _weight(right) <= MAX_WEIGHT, f"the concatenation would weigh over {MAX_WEIGHT}")
    elif isinstance(op, ast.Pow) and type(left) in (int, bool) and type(right) in (int, bool) and right > 0:
        _require(abs(left) <= 1 or left.bit_length() * right <= MAX_INT_BITS, "the power is too large an integer")
    elif isinstance(op, ast.LShift) and type(right) in (int, bool):
        _require(type(left) not in (int, bool) or left.bit_length() + right <= MAX_INT_BITS, "the shift is too large")
    elif isinstance(op, ast.Mod) and isinstance(left, (str, bytes)):
        raise NotALiteral("% formatting of text is not allowed in an input: write the resulting text")


def _checked(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    try:
        value = fn(*args, **kwargs)
    except (TypeError, ValueError, ArithmeticError, IndexError, KeyError, MemoryError, RecursionError) as exc:
        raise NotALiteral(f"{type(exc).__name__}: {exc}") from None
    _check_size(value)
    return value


def _check_size(value: Any) -> None:
    if type(value) is int:
        _require(value.bit_length() <= MAX_INT_BITS, f"an integer of {value.bit_length()} bits is too large")
    _require(_weight(value) <= MAX_WEIGHT, f"the value weighs over {MAX_WEIGHT} (characters and elements)")


def _weight(value: Any) -> int:
    """Roughly the length of the value's text, counting shared elements each time; stops just past MAX_WEIGHT."""
    total, stack = 0, [value]
    while stack and total <= MAX_WEIGHT:
        v = stack.pop()
        total += 1
        if isinstance(v, (str, bytes)):
            total += len(v)
        elif type(v) is int:
            total += v.bit_length() // 3
        elif isinstance(v, dict):
            stack.extend(v.keys())
            stack.extend(v.values())
        elif isinstance(v, _SIZED):
            stack.extend(v)
    return total


def _require(ok: bool, problem: str) -> None:
    if not ok:
        raise NotALiteral(problem)


def _no_starred(elts: list[ast.expr]) -> list[ast.expr]:
    if any(isinstance(e, ast.Starred) for e in elts):
        raise NotALiteral("* unpacking is not allowed")
    return elts


def _describe(node: ast.AST) -> str:
    if isinstance(node, ast.Name):
        return f"the name {node.id!r} (a variable, not a value: inputs hold literals only)"
    if isinstance(node, ast.Lambda):
        return "a lambda (a function, not a value: inputs hold literals only)"
    if isinstance(node, ast.Attribute):
        return f"the attribute .{node.attr}"
    if isinstance(node, (ast.ListComp, ast.SetComp, ast.DictComp, ast.GeneratorExp)):
        return "a comprehension (code, not a value)"
    return f"a {type(node).__name__} expression (not a literal)"
