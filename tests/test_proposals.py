"""Completions into candidate tasks and answers; validation on an executor; malformed text never raises."""

from __future__ import annotations

import doctest
from dataclasses import dataclass

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import azr_core.algo.candidates as candidates_mod
import azr_core.algo.proposals as proposals_mod
import azr_core.algo.tasks as task_types_mod
import azr_core.algo.types.induction as induction_mod
from azr_core.algo.proposals import (
    FORMAT_REASON,
    Candidate,
    grade_request,
    parse_answer,
    parse_proposal,
    split_induction_pairs,
    validate_candidates,
)
from azr_core.algo.tasks import Task, TaskType


def answer(*blocks: tuple[str, str], think: str = "plan") -> str:
    body = "\n".join(f"```{tag}\n{text}\n```" for tag, text in blocks)
    return f"{think}</think>\n<answer>\n{body}\n</answer>"


PROGRAM = "def f(x):\n    return x * 2"
REFERENCE = Task(TaskType.DEDUCTION, "def f(a, b=1):\n    return [a] * b", "'x', 2", "['x', 'x']", task_id="ref1")


@dataclass
class Result:
    valid: bool
    output: str | None
    reason: str | None


class FakeExecutor:
    """Runs trusted test programs in-process (the real sandbox has its own tests), counting calls."""

    def __init__(self) -> None:
        self.calls: list[list[tuple[str, str]]] = []

    def validate_many(self, items):
        self.calls.append(list(items))
        out = []
        for program, inp in items:
            scope: dict = {}
            try:
                exec(program, scope)  # noqa: S102 - test programs written in this file
                out.append(Result(True, repr(eval(f"f({inp})", scope)), None))  # noqa: S307
            except Exception as exc:  # noqa: BLE001
                out.append(Result(False, None, f"error: {type(exc).__name__}"))
        return out


# -- proposals --------------------------------------------------------------------------------------------------------


def test_deduction_proposal_parses_program_and_input():
    c = parse_proposal("deduction", answer(("python", PROGRAM), ("input", "[1, 2]")), reference_ids=["a", "b"])
    assert (c.format_ok, c.program, c.input, c.reason, c.reference_ids) == (True, PROGRAM, "[1, 2]", None, ("a", "b"))
    assert c.parsed


@pytest.mark.parametrize(
    ("completion", "reason"),
    [
        (answer(("input", "1")), "parse: missing ```python block"),
        (answer(("python", PROGRAM)), "parse: missing ```input block"),
        (answer(("python", PROGRAM), ("input", "[0]) or (1")), "input:"),
        (answer(("python", PROGRAM), ("input", "__import__('os')")), "input:"),
        ("```python\n" + PROGRAM + "\n```\n```input\n1\n```", FORMAT_REASON),  # blocks but no tags
        ("", FORMAT_REASON),
    ],
)
def test_malformed_proposals_become_recorded_failures(completion, reason):
    c = parse_proposal("abduction", completion)
    assert not c.parsed and c.reason.startswith(reason)


def test_lenient_parsing_takes_blocks_from_a_broken_format_but_keeps_the_format_failure():
    completion = "I think\n```python\n" + PROGRAM + "\n```\n```input\n3\n```"
    c = parse_proposal("deduction", completion, lenient=True)
    assert c.parsed and not c.format_ok and c.program == PROGRAM and c.input == "3"


def test_induction_proposal_takes_the_last_n_inputs_as_the_reference():
    completion = answer(
        ("input", "oops("), ("input", "'a', 1"), ("input", "'b', 2"), ("message", "repeat a string"),
    )  # fmt: skip
    c = parse_proposal("induction", completion, n_inputs=2, reference=REFERENCE)
    assert c.parsed and c.inputs == ("'a', 1", "'b', 2") and c.message == "repeat a string"
    assert c.program == REFERENCE.program  # induction tasks run on the reference program


@pytest.mark.parametrize(
    ("blocks", "reason"),
    [
        ((("input", "1"), ("input", "2")), "parse: missing ```message block"),
        ((("message", "hi"),), "parse: 0 ```input blocks, need 2"),
        ((("input", "1"), ("message", "hi")), "parse: 1 ```input blocks, need 2"),
        # one bad input rejects the proposal (today's code kept the good ones: the reference does not)
        ((("input", "1"), ("input", "oops("), ("message", "hi")), "input: input 2 of 2"),
        ((("input", "1"), ("input", "1"), ("message", "hi")), "input: 1 distinct of the 2 inputs, need 2"),
        ((("input", "'a'"), ("input", '"a"'), ("message", "hi")), "input: 1 distinct of the 2 inputs"),  # one value
    ],
)
def test_induction_failures(blocks, reason):
    c = parse_proposal("induction", answer(*blocks), n_inputs=2, reference=REFERENCE)
    assert c.reason.startswith(reason)
    assert parse_proposal("induction", answer(("input", "1"), ("message", "m"))).reason.startswith("parse: induction")


def test_revealing_message_accepted_by_default_refused_by_setting():
    text = answer(("input", "1"), ("input", "2"), ("message", "it is " + REFERENCE.program))
    assert parse_proposal("induction", text, n_inputs=2, reference=REFERENCE).reason is None  # the reference
    refused = parse_proposal("induction", text, n_inputs=2, reference=REFERENCE, reject_revealing_message=True)
    assert refused.reason == "message: reveals the program"


def test_induction_repeats_are_dropped_down_to_the_distinct_minimum():
    blocks = [("input", "'a', 1"), ("input", '"a", 1'), ("input", "'b', 2"), ("input", "'a', 1"), ("message", "m")]
    c = parse_proposal("induction", answer(*blocks), n_inputs=4, reference=REFERENCE, min_distinct=2)
    assert c.parsed and c.inputs == ("'a', 1", "'b', 2")  # the first text of each value, in order
    strict = parse_proposal("induction", answer(*blocks), n_inputs=4, reference=REFERENCE)
    assert strict.reason == "input: 2 distinct of the 4 inputs, need 4"  # the default: all N distinct
    three = parse_proposal("induction", answer(*blocks), n_inputs=4, reference=REFERENCE, min_distinct=3)
    assert not three.parsed and three.reason == "input: 2 distinct of the 4 inputs, need 3"
    (out,) = validate_candidates(FakeExecutor(), [c], iteration=1)  # the task is split over the distinct inputs
    assert out.valid and (out.task.shown_inputs, out.task.held_inputs) == (("'a', 1",), ("'b', 2",))


@pytest.mark.parametrize(
    ("program", "expected", "reason"),
    [
        ("def g(n):\n    return n and g(n - 1)", "def f(n):\n    return n and f(n - 1)", None),  # renamed, calls too
        ("def f(x):\n    def helper(y):\n        return y\n    return helper(x)", None, None),  # nested: fine
        ("class A:\n    pass\ndef f(x):\n    return A()", None, None),
        ("def f(x):\n    return x\ndef g(x):\n    return x", None, "parse: 2 top-level functions"),
        ("x = 1", None, "parse: no top-level function"),
    ],
)
def test_entry_function_rules_of_the_reference(program, expected, reason):
    c = parse_proposal("deduction", answer(("python", program), ("input", "1")))
    assert c.program == (expected or program)
    assert (c.reason or "").startswith(reason or "") and (reason is None) == c.parsed
    kept = parse_proposal(
        "deduction", answer(("python", "def g(x):\n    return x"), ("input", "1")), rename_entry=False
    )
    assert kept.parsed and kept.program.startswith("def g(")  # the setting that turns renaming off


TAGS = st.sampled_from(["<think>", "</think>", "<answer>", "</answer>", "```python\n", "```input\n", "```message\n",
                        "```output\n", "```", "\n", "def f(x):", " return x", "(", ")", "[1,", "'", "\\"])  # fmt: skip


@settings(max_examples=150, deadline=None)
@given(parts=st.lists(st.one_of(TAGS, st.text(max_size=8)), max_size=20), task_type=st.sampled_from(list(TaskType)),
       lenient=st.booleans())  # fmt: skip
def test_no_completion_ever_raises(parts, task_type, lenient):
    text = "".join(parts)
    c = parse_proposal(task_type, text, reference=REFERENCE, lenient=lenient)
    assert isinstance(c, Candidate) and (c.parsed or c.reason)
    a = parse_answer(task_type, text, lenient=lenient)
    assert a.answer is None or isinstance(a.answer, str)
    assert (a.answer is not None) or a.reason


# -- validation -------------------------------------------------------------------------------------------------------


def test_validate_candidates_runs_the_batch_in_one_call_and_builds_tasks():
    ex = FakeExecutor()
    good = parse_proposal("deduction", answer(("python", PROGRAM), ("input", "21")), reference_ids=["r"])
    crash = parse_proposal("abduction", answer(("python", "def f(x):\n    return 1 / 0"), ("input", "1")))
    broken = parse_proposal("deduction", "nonsense")
    ind = parse_proposal("induction", answer(*[("input", f"'s', {i}") for i in range(6)], ("message", "m")),
                         n_inputs=6, reference=REFERENCE, reference_ids=["ref1"])  # fmt: skip
    outcomes = validate_candidates(ex, [good, crash, broken, ind], iteration=5, proposal_ids=["p0", "p1", "p2", "p3"])
    assert len(ex.calls) == 1 and len(ex.calls[0]) == 1 + 1 + 6  # the broken one never reaches the executor
    ok, bad, fmt, induced = outcomes
    assert ok.valid and ok.output == "42" and ok.task.output == "42" and ok.task.input == "21"
    assert (ok.task.iteration, ok.task.proposal_id, ok.task.reference_ids) == (5, "p0", ("r",))
    assert not bad.valid and bad.reason == "error: ZeroDivisionError" and bad.task is None
    assert not fmt.valid and fmt.reason == FORMAT_REASON
    assert induced.valid and induced.task.task_type is TaskType.INDUCTION
    t = induced.task
    # the first half shown, the second held out, in the proposer's order (as the reference)
    assert t.shown_inputs == tuple(f"'s', {i}" for i in range(3)) and t.held_inputs == tuple(
        f"'s', {i}" for i in (3, 4, 5)
    )
    for inp, out in zip(t.shown_inputs + t.held_inputs, t.shown_outputs + t.held_outputs, strict=True):
        assert out == repr(["s"] * int(inp.split(", ")[1]))


def test_induction_with_one_input_that_fails_to_run_is_rejected():
    ex = FakeExecutor()
    ref = Task(TaskType.DEDUCTION, "def f(x):\n    return 10 // x", "1", "10", task_id="r")
    blocks = [("input", "5"), ("input", "2"), ("input", "0"), ("message", "divide")]
    c = parse_proposal("induction", answer(*blocks), n_inputs=3, reference=ref)
    (out,) = validate_candidates(ex, [c], iteration=1)
    assert not out.valid and out.reason.startswith("induction: input 3 of 3 invalid")
    assert out.outputs == ("2", "5", None)


def test_validate_with_nothing_to_run_does_not_call_the_executor():
    ex = FakeExecutor()
    assert validate_candidates(ex, [], iteration=1) == []
    (out,) = validate_candidates(ex, [parse_proposal("deduction", "")], iteration=1)
    assert ex.calls == [] and not out.valid


@pytest.mark.parametrize("n", [2, 3, 4, 5, 10])
def test_split_shows_the_first_part_and_keeps_one_on_each_side(n):
    pairs = [(str(i), str(i)) for i in range(n)]
    shown, held = split_induction_pairs(pairs, 0.5)
    assert shown + held == pairs and len(shown) == max(1, n // 2) and held
    with pytest.raises(ValueError):
        split_induction_pairs(pairs[:1], 0.5)


@pytest.mark.sandbox
def test_validate_candidates_on_the_real_sandbox(executor):
    good = parse_proposal("deduction", answer(("python", PROGRAM), ("input", "[1]")))
    evil = parse_proposal(
        "deduction", answer(("python", "import os\ndef f(x):\n    return os.getcwd()"), ("input", "1"))
    )
    ok, bad = validate_candidates(executor, [good, evil], iteration=1)
    assert ok.valid and ok.output == "[1, 1]"
    assert not bad.valid and bad.reason


# -- solver answers ---------------------------------------------------------------------------------------------------


def test_solver_answers_by_task_type():
    assert parse_answer("deduction", answer(("output", "[1, 2]"))).answer == "[1, 2]"
    assert parse_answer("abduction", answer(("input", "'a', 3"))).answer == "'a', 3"
    assert parse_answer("induction", answer(("python", PROGRAM))).answer == PROGRAM
    bare = parse_answer("deduction", "easy</think><answer> 42 </answer>")
    assert (bare.format_ok, bare.answer, bare.reason) == (True, "42", None)
    empty = parse_answer("deduction", "easy</think><answer></answer>")
    assert empty.format_ok and empty.answer is None and empty.reason.startswith("parse: empty answer")


def test_solver_format_failures():
    broken = parse_answer("deduction", "```output\n1\n```")
    assert (broken.format_ok, broken.answer, broken.reason) == (False, None, FORMAT_REASON)
    lenient = parse_answer("deduction", "```output\n1\n```", lenient=True)
    assert (lenient.format_ok, lenient.answer) == (False, "1")
    assert parse_answer("deduction", "just 1", lenient=True).answer is None  # no block: nothing to take


def test_grade_requests_use_only_what_grading_needs():
    ded = Task(TaskType.DEDUCTION, PROGRAM, "2", "4")
    req = grade_request(ded, "4")
    assert (req.task_type, req.answer, req.program, req.input, req.output) == ("deduction", "4", PROGRAM, "2", "4")
    ind = Task(TaskType.INDUCTION, PROGRAM, shown_inputs=("1",), shown_outputs=("2",), held_inputs=("3",),
               held_outputs=("6",), message="double")  # fmt: skip
    req = grade_request(ind, PROGRAM)
    assert req.task_type == "induction" and req.tests == [("3", "6")] and req.program is None


def test_docstring_examples_run():
    for module in (proposals_mod, task_types_mod, candidates_mod, induction_mod):
        result = doctest.testmod(module)
        assert result.attempted > 0 and result.failed == 0, module.__name__


def test_an_empty_answer_is_wrong_or_with_the_setting_a_format_error():
    empty = "</think><answer>\n```output\n```\n</answer>"
    a = parse_answer("deduction", empty)
    assert a.format_ok and a.answer is None  # the reference: a wrong answer (-0.5)
    b = parse_answer("deduction", empty, empty_is_format_error=True)
    assert not b.format_ok and b.reason.startswith("format: empty answer")
