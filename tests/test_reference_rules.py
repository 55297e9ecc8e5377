"""The reference code's rules are the default, and each deliberate deviation is a setting (docs/fidelity.md, issue 19):
how answers are read and graded, broken-format proposals, inputs written as expressions (evaluated only in the
sandbox), the banned list the prompt shows, the time limit, induction messages, learnability gradings."""

from __future__ import annotations

import pytest

from azr_core.algo.prompts import proposer_messages
from azr_core.algo.proposals import parse_answer, parse_proposal, validate_candidates
from azr_core.algo.rewards import learnability_reward
from azr_core.algo.tasks import Task, TaskType, seed_tasks
from azr_core.config import load_config
from azr_core.executor import Executor, ExecutorConfig
from azr_core.executor.checks import BANNED_ATTRS, BANNED_MODULES, BANNED_NAMES
from azr_core.executor.executor import GradeRequest, GradeResult, _Spec
from azr_core.executor.pool import RunResult

PROGRAM = "def f(x):\n    return x * 2"


def _answer(*blocks: str) -> str:
    return "".join(f"<answer>{b}</answer>" for b in blocks)


# ---- rows 2 and 3: how an answer is read -------------------------------------------------------------------------


def test_the_last_answer_block_is_graded_and_extra_blocks_keep_the_format():
    text = "thinking</think>\n<answer>```output\n1\n```</answer>\n<answer>```output\n2\n```</answer>"
    got = parse_answer("deduction", text)
    assert (got.format_ok, got.answer) == (True, "2")
    strict = parse_answer("deduction", text, parsing="strict")  # today's rule before: exactly one answer block
    assert strict.format_ok is False and strict.answer is None


def test_the_last_output_block_inside_the_answer_is_graded():
    text = "t</think><answer>```output\n1\n```\n```output\n3\n```</answer>"
    assert parse_answer("deduction", text).answer == "3"
    assert parse_answer("deduction", text, parsing="strict").answer == "1"


def test_format_needs_think_then_whitespace_then_answer():
    assert parse_answer("deduction", "t</think>  \n<answer>1</answer> trailing").format_ok
    assert not parse_answer("deduction", "t</think> text <answer>1</answer>").format_ok
    assert parse_answer("deduction", "<think>t</think><answer>1</answer>", think_prefilled=False).format_ok
    assert not parse_answer("deduction", "t</think><answer>1</answer>", think_prefilled=False).format_ok


def test_induction_answer_is_the_last_fence_of_any_tag_and_no_fence_is_a_format_error():
    text = "t</think><answer>```python\ndef f(x):\n    return 0\n```\n```\ndef f(x):\n    return x\n```</answer>"
    assert parse_answer("induction", text).answer == "def f(x):\n    return x"
    bare = parse_answer("induction", "t</think><answer>def f(x):\n    return x</answer>")
    assert bare.format_ok is False and bare.answer is None and bare.reason.startswith("format:")
    # strict: only a python fence is code; the bare text is graded (and fails as a wrong answer, not a format error)
    strict = parse_answer("induction", "t</think><answer>def f(x):\n    return x</answer>", parsing="strict")
    assert strict.format_ok is True and strict.answer == "def f(x):\n    return x"


# ---- row 4: a valid program whose format is broken joins the buffer with reward -1 ---------------------------------


class _FakeValidator:
    def validate_many(self, items):
        from azr_core.executor.executor import ValidationResult

        return [ValidationResult(True, "6", None) for _ in items]


def test_a_valid_program_with_a_broken_format_is_buffered_and_rewarded_as_a_format_error():
    # no </think> before the answer: the format is broken, the answer block is still read
    text = "plan <answer>```python\n" + PROGRAM + "\n```\n```input\n3\n```</answer>"
    c = parse_proposal("deduction", text)
    assert c.format_ok is False and c.reason is None and c.program == PROGRAM
    (outcome,) = validate_candidates(_FakeValidator(), [c], iteration=1)
    assert outcome.valid and outcome.task is not None  # a task: the stage adds it to the buffers
    assert learnability_reward(["x"], format_ok=[False], valid=[True], solve_rate=[0.5]) == [-1.0]
    refused = parse_proposal("deduction", text, buffer_broken_format=False)
    assert refused.reason.startswith("format:") and not refused.parsed


def test_the_stage_buffers_broken_format_proposals_by_default():
    cfg = load_config(profile="default")
    assert cfg.selfplay.buffer_broken_format is True and cfg.selfplay.answer_parsing == "reference"


# ---- row 5: inputs are expressions, evaluated only in the sandbox --------------------------------------------------


def test_expression_inputs_pass_the_trusted_parse_unevaluated():
    text = "t</think><answer>```python\n" + PROGRAM + "\n```\n```input\n'a-b'.split('-')\n```</answer>"
    c = parse_proposal("deduction", text)
    assert c.reason is None and c.input == "'a-b'.split('-')"  # shown to the solver as written
    literal = parse_proposal("deduction", text, inputs="literal")
    assert literal.reason.startswith("input:")
    hostile = parse_proposal("deduction", text.replace("'a-b'.split('-')", "().__class__"))
    assert hostile.reason == "input: banned attribute: .__class__ (line 1)"


@pytest.mark.sandbox
def test_expression_inputs_run_in_the_sandbox_and_hostile_ones_are_refused_there():
    program = "class P:\n    def __init__(self, a):\n        self.a = a\ndef f(p, r):\n    return p.a + sum(r)"
    with Executor(ExecutorConfig(timeout_s=2.0)) as ex:
        ok, upper, bomb, loop, banned = ex.validate_many(
            [
                (program, "P(1), range(100, 103)"),  # a class of the program: only the sandbox knows it
                ("def f(s):\n    return s", "'$78'.upper()"),
                ("def f(s):\n    return len(s)", "'x' * 10 ** 10"),  # memory: fails in the child, not here
                ("def f(s):\n    return s", "sum(1 for _ in iter(int, 1))"),  # never ends: the time limit
                ("def f(s):\n    return s", "open('/etc/passwd').read()"),
            ]
        )
        assert (ok.valid, ok.output) == (True, "304")
        assert (upper.valid, upper.output) == (True, "'$78'")
        assert not bomb.valid and bomb.reason.startswith("error: MemoryError")
        assert not loop.valid and loop.reason.startswith("timeout")
        assert banned.reason == "invalid input: banned name: open (line 1)"
        # abduction answers and induction pairs take expressions too
        abd, ind = ex.grade_many(
            [
                GradeRequest("abduction", "range(3)", program="def f(x):\n    return sum(x)", output="3"),
                GradeRequest("induction", "def f(x):\n    return len(x)", tests=[("range(4)", "4")]),
            ]
        )
        assert abd.correct and ind.correct
    with Executor(ExecutorConfig(inputs="literal")) as ex:
        (lit,) = ex.validate_many([("def f(s):\n    return s", "'$78'.upper()")])
        assert not lit.valid and lit.reason.startswith("invalid input:")


# ---- row 6: the banned list the prompt shows is the list the checks enforce ------------------------------------


def _shown_names(prompt: str) -> set[str]:
    section = prompt.split("The checks refuse a program that uses any of these:\n", 1)[1].split("\n\n", 1)[0]
    names: set[str] = set()
    for line in section.splitlines():
        category, _, listed = line.strip().removeprefix("- ").partition(": ")
        if category.startswith("modules (") or category.startswith("built-in") or category == "attributes":
            names |= {n.strip() for n in listed.split(",") if n.strip() and " " not in n.strip()}
    return names


@pytest.mark.parametrize("task_type", ["deduction", "abduction"])
def test_prompt_lists_exactly_what_the_checks_enforce(task_type):
    prompt = proposer_messages(task_type, seed_tasks()[:1])[1]["content"]
    assert _shown_names(prompt) == set(BANNED_MODULES) | set(BANNED_NAMES) | set(BANNED_ATTRS)
    assert "print" not in _shown_names(prompt)  # shown before, never enforced
    compact = proposer_messages(task_type, seed_tasks()[:1], compact=True)[1]["content"]
    for name in BANNED_MODULES | BANNED_NAMES | BANNED_ATTRS:
        assert name in compact


# ---- rows 7 and 10 -------------------------------------------------------------------------------------------------


def test_time_limit_and_induction_message_follow_the_reference():
    cfg = load_config(profile="default")
    assert cfg.executor.timeout_s == 10.0
    assert cfg.selfplay.reject_revealing_message is False
    assert "within 10 seconds" in proposer_messages("deduction", [])[1]["content"]


# ---- row 1: learnability rollouts ----------------------------------------------------------------------------------


def _drive(plan, runs):
    """Run an executor plan by hand, answering its requests with the given RunResults."""
    specs = next(plan)
    assert all(isinstance(s, _Spec) for s in specs)
    try:
        plan.send(runs[: len(specs)])
    except StopIteration as stop:
        return stop.value
    raise AssertionError("the plan asked for more runs")


def test_a_grading_the_sandbox_lost_is_marked_crashed_and_induction_drops_lost_pairs():
    ex = Executor(ExecutorConfig())
    lost = RunResult("crashed", None, "sandbox worker died while running this program", 0)
    killed = RunResult("crashed", None, "program crashed: killed by SIGSEGV", 0)
    ok = RunResult("ok", "4", None, 0)
    req = GradeRequest("abduction", "4", program="def f(x):\n    return x", output="4")
    assert _drive(ex._grade_plan(req), [lost]).crashed is True
    assert _drive(ex._grade_plan(req), [killed]).crashed is False  # the program's own crash is a wrong answer
    ind = GradeRequest("induction", "def f(x):\n    return x", tests=[("4", "4"), ("5", "5")])
    assert _drive(ex._grade_plan(ind), [ok, lost]) == GradeResult(True, None)  # the lost pair is left out
    all_lost = _drive(ex._grade_plan(ind), [lost, lost])
    assert all_lost.crashed and not all_lost.correct


class _FakeGrader:
    def __init__(self, results):
        self.results = results

    def grade_many(self, requests):
        return self.results[: len(requests)]


def _rollout(purpose: str, text: str):
    from azr_core.policy.rollout.base import Completion
    from azr_core.selfplay.records import SolveRollout

    task = Task(TaskType.DEDUCTION, PROGRAM, "3", "6")
    return SolveRollout(task, purpose, "prompt", [1], Completion(text, [1], [-0.1], "stop"))


@pytest.mark.parametrize("needs_format", [False, True])
def test_learnability_counts_the_answer_without_the_format_by_default(needs_format):
    import types

    from azr_core.selfplay import stages

    cfg = load_config(profile="default", overrides=[f"selfplay.learnability_needs_format={needs_format}"])
    broken = "no think here <answer>```output\n6\n```</answer>"  # the answer read, the format broken
    rollouts = [_rollout("learnability", broken), _rollout("solve", broken), _rollout("learnability", "```output\n6")]
    s = types.SimpleNamespace(cfg=cfg, executor=_FakeGrader([GradeResult(True, None)] * 3))
    stages._grade(s, rollouts)
    probe, solve, untagged = rollouts
    assert probe.correct is (not needs_format)  # the reference grades the answer alone
    assert solve.correct is False  # a batch solve's verdict is the reward's: the format counts
    assert untagged.correct is False and untagged.answer.answer is None  # no <answer>: nothing read, unsolved
    lost = _rollout("learnability", "t</think><answer>```output\n6\n```</answer>")
    stages._grade(types.SimpleNamespace(cfg=cfg, executor=_FakeGrader([GradeResult(False, "x", crashed=True)])),
                  [lost])  # fmt: skip
    assert lost.grade_crashed and not lost.correct
