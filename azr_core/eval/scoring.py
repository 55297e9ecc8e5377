"""Grading completions of one benchmark, and the pass@k estimator.

Code reasoning (CRUXEval) and code generation (HumanEval+, MBPP+) run through the sandboxed executor; math answers
go to math-verify in a child process (`azr_core.eval.mathgrade`). Every grade says why it is wrong.
"""

from __future__ import annotations

import ast
from collections.abc import Sequence
from dataclasses import dataclass
from math import comb

from azr_core.eval.answers import crux_input_answer, crux_output_answer, extract_answer, extract_code
from azr_core.eval.benchmarks import BENCHMARKS, Item
from azr_core.eval.codetests import CodeLimits, code_executor, grade_code
from azr_core.eval.mathgrade import grade_math
from azr_core.executor import Executor, ExecutorConfig, GradeRequest
from azr_core.lang.values import LiteralError, parse_literal, values_equal


@dataclass(frozen=True)
class Grade:
    """The verdict on one completion: the answer taken from it, and why it is wrong (None when correct)."""

    id: str
    correct: bool
    answer: str | None
    reason: str | None


class Graders:
    """The sandboxed executors grading needs, started on first use; a context manager that closes them.

    CRUXEval answers run with a short time limit (a wrong input may loop), benchmark programs with evalplus's
    limits; neither applies the self-play static checks (benchmark code legitimately imports what those refuse)."""

    def __init__(self, code_limits: CodeLimits = CodeLimits(), workers: int = 0) -> None:
        self.code_limits = code_limits
        self.workers = workers
        self._crux: Executor | None = None
        self._code: Executor | None = None

    @property
    def crux(self) -> Executor:
        if self._crux is None:
            self._crux = Executor(
                ExecutorConfig(static_checks=False, timeout_s=5.0, workers=self.workers, hash_seed=0)
            ).start()
        return self._crux

    @property
    def code(self) -> Executor:
        if self._code is None:
            self._code = code_executor(self.code_limits, self.workers).start()
        return self._code

    def executor_seconds(self) -> float:
        """Wall seconds spent in sandboxed executions so far (summed over executions running in parallel)."""
        return sum(ex.stats["exec_wall_s"] for ex in (self._crux, self._code) if ex is not None)

    def close(self) -> None:
        for ex in (self._crux, self._code):
            if ex is not None:
                ex.close()
        self._crux = self._code = None

    def __enter__(self) -> Graders:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def score(bench: str, items: Sequence[Item], completions: Sequence[str], graders: Graders) -> list[Grade]:
    """Grade `completions[i]` as an answer to `items[i]` (items may repeat: several samples of one item)."""
    kind = BENCHMARKS[bench].kind
    if len(items) != len(completions):
        raise ValueError(f"{len(items)} items but {len(completions)} completions")
    if kind == "math":
        answers = [extract_answer(c, prefer_boxed=True) for c in completions]
        verdicts = grade_math([(it.gold, a) for it, a in zip(items, answers, strict=True)])
        return [Grade(it.id, v.correct, a, v.reason) for it, a, v in zip(items, answers, verdicts, strict=True)]
    if kind == "code":
        pairs = zip(items, completions, strict=True)
        programs = [extract_code(c, it.extra["entry_point"], it.extra["prompt"]) for it, c in pairs]
        verdicts = grade_code(bench, list(items), programs, graders.code, graders.code_limits)
        return [Grade(it.id, v.correct, p, v.reason) for it, p, v in zip(items, programs, verdicts, strict=True)]
    answers = [extract_answer(c) for c in completions]
    grades = [Grade(it.id, False, None, "no answer: no <answer> block or \\boxed{}") for it in items]
    todo = [i for i, a in enumerate(answers) if a is not None]
    if kind == "crux-o":
        requests = [GradeRequest("deduction", crux_output_answer(answers[i]), output=items[i].extra["output"])
                    for i in todo]  # fmt: skip
        for i, req, res in zip(todo, requests, graders.crux.grade_many(requests), strict=True):
            grades[i] = Grade(items[i].id, res.correct, req.answer, res.reason)
        return grades
    for i in todo:
        answers[i] = crux_input_answer(answers[i])
    for i, (ok, reason) in zip(todo, _grade_inputs([(items[i], answers[i]) for i in todo], graders.crux),
                               strict=True):  # fmt: skip
        grades[i] = Grade(items[i].id, ok, answers[i], reason)
    return grades


# The runner calls `f()`; the first call runs the task's f on the answer's arguments, later ones (a recursive f calls
# itself by its global name) go straight to the task's f.
_INPUT_DRIVER = """{code}


_azr_f = f
_azr_first = [True]


def f(*args, **kwargs):
    if _azr_first:
        _azr_first.pop()
        return _azr_f({answer})
    return _azr_f(*args, **kwargs)
"""


def _grade_inputs(pairs: list[tuple[Item, str]], executor: Executor) -> list[tuple[bool, str | None]]:
    """CRUXEval-I: run f(<answer>) in the sandbox and compare its value with the gold output here.

    Some gold inputs are expressions (a lambda, `''.join([...])`), so the answer is not required to be a literal:
    it must parse as exactly the arguments of one call, so `1) or (1` cannot turn the call into something else,
    and it is evaluated only inside the sandbox."""
    out: list[tuple[bool, str | None] | None] = [None] * len(pairs)
    jobs, where = [], []
    for k, (it, answer) in enumerate(pairs):
        problem = _call_problem(answer)
        if problem:
            out[k] = (False, f"answer not an argument list: {problem}")
            continue
        program = _INPUT_DRIVER.format(code=it.extra["code"], answer=answer)
        jobs.append((program, "((), {})"))
        where.append(k)
    for k, run in zip(where, executor.run_many(jobs), strict=True):
        if run.status != "ok":
            out[k] = (False, f"{run.status}: {run.detail or ''}".rstrip(": "))
            continue
        try:
            same = values_equal(parse_literal(run.output or ""), parse_literal(pairs[k][0].extra["output"]))
        except LiteralError as exc:
            out[k] = (False, f"not literal: {exc}")
            continue
        out[k] = (True, None) if same else (False, f"wrong output {(run.output or '')[:80]}")
    return out  # type: ignore[return-value]


def _call_problem(answer: str) -> str | None:
    try:
        tree = ast.parse(f"_azr_f({answer})", mode="eval")
    except SyntaxError as exc:
        return f"syntax error: {exc.msg}"
    call = tree.body
    if not (isinstance(call, ast.Call) and isinstance(call.func, ast.Name) and call.func.id == "_azr_f"):
        return "it is not the arguments of a single call"
    if ast.get_source_segment(f"_azr_f({answer})", call) != f"_azr_f({answer})":
        return "it is not the arguments of a single call"
    return None


def pass_at_k(n: int, c: int, k: int) -> float:
    """The unbiased pass@k estimate from n samples of which c are correct: 1 - C(n-c, k) / C(n, k).

    >>> pass_at_k(10, 0, 1), pass_at_k(10, 5, 1), pass_at_k(10, 1, 10)
    (0.0, 0.5, 1.0)
    """
    if k > n:
        raise ValueError(f"pass@{k} needs at least {k} samples per item, got {n}")
    if n - c < k:
        return 1.0
    return 1.0 - comb(n - c, k) / comb(n, k)


def bench_score(grades: Sequence[Grade], k: int = 1) -> float:
    """Mean pass@k over items (grades of the same id are that item's samples); pass@1 with one sample = accuracy."""
    per: dict[str, list[bool]] = {}
    for g in grades:
        per.setdefault(g.id, []).append(g.correct)
    if not per:
        return 0.0
    return sum(pass_at_k(len(v), sum(v), k) for v in per.values()) / len(per)
