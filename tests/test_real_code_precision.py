"""Honest programs and inputs of the kind people write (CRUXEval-style) validate to their known outputs.

Each case was refused before; each runs through the real firejail executor, and its output is compared as a value.
The refusals that stay (names, lambdas, code in inputs; hostile size requests) are checked with their reasons.
"""

from __future__ import annotations

import pytest

from azr_core.lang.literal_exprs import MAX_WEIGHT
from azr_core.lang.parsing import InputError, parse_call_args
from azr_core.lang.values import parse_literal, values_equal

pytestmark = pytest.mark.sandbox

# (program, input, gold output): each a false rejection fixed.
HONEST = {
    "join of a repeated list (CRUXEval sample_152)": (
        "def f(text):\n    n = 0\n    for char in text:\n        if char.isupper():\n            n += 1\n    return n",
        "''.join(['A'] * 20)",
        "20",
    ),
    "str.format_map in the program (CRUXEval sample_189)": (
        "def f(out, mapping):\n    for key in mapping:\n        out.format_map(mapping)\n"
        "        if len(re.findall(r'{\\w}', out)) == 0:\n            break\n"
        "        mapping[key][1] = mapping[key][1][::-1]\n    return out",
        '"{{{{}}}}", {}',
        "'{{{{}}}}'",
    ),
    "concatenated string literals (CRUXEval sample_239)": (
        "def f(text, froms):\n    text = text.lstrip(froms)\n    text = text.rstrip(froms)\n    return text",
        "'0 t 1cos ', 'st ' + '0\\t\\n  '",
        "'1co'",
    ),
    "dict constructor with keywords (CRUXEval sample_378)": (
        "def f(dic, key):\n    dic = dict(dic)\n    v = dic.pop(key, 0)\n"
        "    if v == 0:\n        return 'No such key!'\n    return v",
        "dict(did=0), 'u'",
        "'No such key!'",
    ),
    "re.compile": ("import re\ndef f(s):\n    return re.compile('[0-9]+').findall(s)", "'a1b22'", "['1', '22']"),
    "parameters named input and id": ("def f(input, id):\n    return input[id:]", "'hello', 2", "'llo'"),
    "local id in a comprehension": ("def f(xs):\n    return [id * 2 for id in xs]", "[1, 2]", "[2, 4]"),
    "the __main__ idiom": ("def f(x):\n    return x if __name__ != '__main__' else -x", "3", "3"),
    "set(), frozenset and inf as inputs": (
        "def f(a, b, c):\n    return [type(a).__name__, sorted(b), c > 10 ** 300]",
        "set(), frozenset({2, 1}), float('inf')",
        "['set', [1, 2], True]",
    ),
    "constructors and operators": (
        "def f(xs, n, t):\n    return xs, n, t",
        "list('abc') + [1] * 2, 2 ** 10 - 1, tuple(range_ for range_ in ()) if False else (1,)[::-1]",
        None,  # refused: a conditional expression is not in the listed set (checked below)
    ),
}


@pytest.mark.parametrize("name", [k for k, v in HONEST.items() if v[2] is not None])
def test_honest_program_validates_to_its_gold_output(executor, name):
    program, input_text, gold = HONEST[name]
    res = executor.validate_many([(program, input_text)])[0]
    assert res.valid, res.reason
    assert values_equal(parse_literal(res.output), parse_literal(gold)), res.output


def test_a_conditional_expression_is_not_an_input():
    _, input_text, _ = HONEST["constructors and operators"]
    with pytest.raises(InputError, match="IfExp"):
        parse_call_args(input_text)


@pytest.mark.parametrize(
    "input_text,reason",
    [
        ("thigh_o_two[:], 3", "the name 'thigh_o_two'"),  # CRUXEval sample_258: a free name
        ("[6, 4], (lambda x: x.reverse())", "a lambda"),  # CRUXEval sample_344
        ("[0, 3], lambda x: x < 2", "a lambda"),  # CRUXEval sample_364
        ("'a' * 10 ** 9", "weigh over"),
        ("['a' * 1000] * 1000", "weigh over"),
        ("9 ** 9 ** 9", "too large an integer"),
        ("1 << 10 ** 9", "too large"),
        ("bytes(10 ** 9)", "larger than"),
        ("'%099999999d' % 1", "formatting"),
        ("str.join('', ['a'])", "a call of"),
        ("{}.fromkeys(range(9))", "a call of"),
        ("list(range(10))", "a call of"),
        ("getattr('', 'join')('ab')", "a call of"),
        ("().__class__", "the attribute"),
        ("1 / 0", "ZeroDivisionError"),
        ("[x for x in 'ab']", "comprehension"),
    ],
)
def test_what_is_not_a_literal_stays_refused(input_text, reason):
    with pytest.raises(InputError, match=reason):
        parse_call_args(input_text)


def test_weight_limit_is_what_a_value_builds():
    assert parse_call_args(f"'a' * {MAX_WEIGHT // 2}").args == ("a" * (MAX_WEIGHT // 2),)
    with pytest.raises(InputError):
        parse_call_args(f"'ab' * {MAX_WEIGHT}")
