"""Grading through the real sandbox, including the exploits the reference grader fell for."""

import pytest

from azr_core.executor import GradeRequest

pytestmark = pytest.mark.sandbox

IDENTITY = "def f(x):\n    return x"
ADD = "def f(a, b):\n    return a + b"


def grade(executor, **kw):
    return executor.grade_many([GradeRequest(**kw)])[0]


def test_deduction(executor):
    assert grade(executor, task_type="deduction", output="[1, 2]", answer="[1,2]").correct
    assert grade(executor, task_type="deduction", output="{1, 2}", answer="{2, 1}").correct
    assert not grade(executor, task_type="deduction", output="1", answer="True").correct
    assert not grade(executor, task_type="deduction", output="[1, 2]", answer="[2, 1]").correct
    wrong = grade(executor, task_type="deduction", output="3", answer="__import__('os').system('id')")
    assert not wrong.correct and wrong.reason.startswith("answer not literal")
    # no gold given: it is computed by running the program in the sandbox
    assert grade(executor, task_type="deduction", program=ADD, input="[1], [2]", answer="[1, 2]").correct


def test_abduction(executor):
    assert grade(executor, task_type="abduction", program=ADD, output="10", answer="3, 7").correct
    assert grade(executor, task_type="abduction", program=ADD, output="10", answer="b=7, a=3").correct
    assert not grade(executor, task_type="abduction", program=ADD, output="10", answer="3, 8").correct
    injection = grade(executor, task_type="abduction", program=IDENTITY, output="[0]", answer="[0]) or (1")
    assert not injection.correct and injection.reason.startswith("answer not an argument list")
    # An answer is an expression (the reference's rule): it is evaluated in the sandbox only, where print() returns
    # None to /dev/null; what reaches the trusted process is the call's result, compared as a value.
    side_effect = grade(executor, task_type="abduction", program=IDENTITY, output="None", answer="print('x')")
    assert side_effect.correct
    escape = grade(executor, task_type="abduction", program=IDENTITY, output="0", answer="__import__('os').getpid()")
    assert not escape.correct and escape.reason.startswith("answer not an argument list: banned name: __import__")
    crash = grade(executor, task_type="abduction", program=ADD, output="1", answer="1, 'a'")
    assert not crash.correct and crash.reason.startswith("error: TypeError")


def test_abduction_literal_inputs_never_run_code():
    from azr_core.executor import Executor, ExecutorConfig

    with Executor(ExecutorConfig(inputs="literal")) as ex:
        side_effect = grade(ex, task_type="abduction", program=IDENTITY, output="None", answer="print('x')")
    assert not side_effect.correct and side_effect.reason.startswith("answer not an argument list")


def test_induction(executor):
    tests = [("1", "2"), ("41", "42"), ("-1", "0")]
    assert grade(
        executor, task_type="induction", answer="```python\ndef f(x):\n    return x + 1\n```", tests=tests
    ).correct
    partial = grade(executor, task_type="induction", answer="def f(x):\n    return 2 if x == 1 else 42", tests=tests)
    assert not partial.correct and partial.reason.startswith("failed 1/3 tests")
    banned = grade(executor, task_type="induction", answer="import os\ndef f(x):\n    return x + 1", tests=tests)
    assert not banned.correct and "banned module" in banned.reason
    loops = grade(executor, task_type="induction", answer="def f(x):\n    while True:\n        pass", tests=tests[:1])
    assert not loops.correct and "timeout" in loops.reason


def test_rigged_eq_object_scores_zero(executor):
    rigged = "class A:\n    def __eq__(self, other):\n        return True\ndef f(x):\n    return A()"
    assert not grade(executor, task_type="induction", answer=rigged, tests=[("1", "2")]).correct
    subclass = "class I(int):\n    def __eq__(self, other):\n        return True\ndef f(x):\n    return I(0)"
    assert not grade(executor, task_type="induction", answer=subclass, tests=[("1", "2")]).correct
    rigged_abduction = "class A:\n    def __eq__(self, o):\n        return True\ndef f(x):\n    return A() if x else 0"
    assert not grade(executor, task_type="abduction", program=rigged_abduction, output="5", answer="1").correct


def test_bad_requests_are_results_not_exceptions(executor):
    assert not grade(executor, task_type="abduction", answer="1").correct
    assert not grade(executor, task_type="induction", answer=IDENTITY, tests=[]).correct
    assert not grade(executor, task_type="deduction", answer="1").correct
