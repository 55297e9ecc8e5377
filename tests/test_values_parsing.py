"""Literal parsing and comparison, completion parsing, call-argument parsing."""

import pytest

from azr_core.lang.parsing import InputError, extract_fenced, extract_program, parse_call_args, split_think_answer
from azr_core.lang.values import LiteralError, literal_texts_equal, parse_literal, values_equal


@pytest.mark.parametrize(
    "a,b",
    [
        ("[1,2]", "[1, 2]"),
        ("{1,2}", "{2, 1}"),
        ("{'a': (1, None)}", "{ 'a' : (1,None) }"),
        ("set()", "set()"),
        ("-3", "-3"),
        ("1e3", "1000.0"),
        ("b'x'", "b'x'"),
        ("(1+2j)", "(1+2j)"),
    ],
)
def test_equal_values_compare_equal(a, b):
    assert literal_texts_equal(a, b)


@pytest.mark.parametrize(
    "a,b", [("1", "True"), ("1", "1.0"), ("(1,)", "[1]"), ("{1: 2}", "{True: 2}"), ("[1, 2]", "[2, 1]"), ("'1'", "1")]
)
def test_types_are_strict(a, b):
    assert not literal_texts_equal(a, b)


@pytest.mark.parametrize(
    "text", ["[0]) or (1", "__import__('os')", "f(1)", "x", "[1, 2", "1 if True else 2", "'a' * 3"]
)
def test_non_literals_are_refused(text):
    with pytest.raises(LiteralError):
        parse_literal(text)


def test_huge_and_deep_literals_fail_cleanly():
    with pytest.raises(LiteralError):
        parse_literal("[" * 100_000 + "]" * 100_000, max_chars=10**7)
    with pytest.raises(LiteralError):
        parse_literal("1" * 10_000)  # over the int digits limit
    with pytest.raises(LiteralError, match="too large"):
        parse_literal("[1]" * 10, max_chars=5)


def test_values_equal_never_raises_on_objects():
    class Rigged:
        def __eq__(self, other):
            return True

    assert not values_equal(Rigged(), 1)
    assert not values_equal([Rigged()], [1])


def test_split_think_answer():
    ok = split_think_answer("<think>a</think> <answer>[1, 2]</answer>")
    assert ok.format_ok and ok.answer == "[1, 2]" and ok.think == "a"
    assert not split_think_answer("<answer>1</answer>").format_ok
    assert not split_think_answer("<think>a</think><answer>1</answer><answer>2</answer>").format_ok
    assert not split_think_answer("<think>a</think> no answer").format_ok
    assert split_think_answer("reasoning</think><answer>1</answer>", think_prefilled=True).format_ok
    assert not split_think_answer("").format_ok


def test_fenced_blocks():
    text = "x\n```python\ndef f(a):\n    return a\n```\n```input\n[1], 'b'\n```\n```output\n3\n```"
    assert extract_program(text) == "def f(a):\n    return a"
    assert extract_fenced(text, "input") == ["[1], 'b'"]
    assert extract_fenced(text, "output") == ["3"]
    assert len(extract_fenced(text)) == 3
    assert extract_program("no code") is None


def test_call_args():
    assert parse_call_args("[1, 2], 'a'").args == ([1, 2], "a")
    assert parse_call_args("").args == ()
    assert parse_call_args("1, y={'k': 2}").kwargs == {"y": {"k": 2}}
    assert parse_call_args("[1,\n 2]").args == ([1, 2],)
    assert parse_call_args("'é', 1").args == ("é", 1)


@pytest.mark.parametrize(
    "text",
    [
        "[0]) or (1",
        "1), (2",
        "1)(2",
        "1) + f(2",
        "x",
        "*[1]",
        "**{'a': 1}",
        "__import__('os')",
        "1) # c",
        "print(1)",
        "(lambda: 1)()",
        "[i for i in range(3)]",
    ],
)
def test_call_args_refuse_injection_and_code(text):
    with pytest.raises(InputError):
        parse_call_args(text)
