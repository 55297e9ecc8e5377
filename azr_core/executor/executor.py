"""Validation of proposed tasks and grading of answers, on top of the sandbox worker pool.

Each item becomes a small plan (a generator) that yields the executions it needs and receives their results, so one
driver can run thousands of items with every worker busy: a determinism check asks for its second run only after the
first succeeded, an induction grade asks for all held-out pairs at once.

Outputs the model wrote are parsed here, in the trusted process, as literals, and values are compared here too.
Inputs (call arguments) are literals built here (`executor.inputs=literal`), or expressions that pass the static
checks here and are evaluated only inside the sandbox (`expression`, the reference's behaviour).
Reasons are `category: detail`, so history queries can group on the part before the colon.
"""

from __future__ import annotations

import functools
from collections.abc import Generator, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, Literal

from azr_core.executor.checks import CheckError, CheckLimits, check_call_expression, check_program
from azr_core.executor.config import ExecutorConfig
from azr_core.executor.pool import Job, RunResult, WorkerPool
from azr_core.executor.sandbox import warn_unsafe
from azr_core.lang.parsing import InputError, extract_program, parse_call_args
from azr_core.lang.values import LiteralError, parse_literal, values_equal

TaskType = Literal["deduction", "abduction", "induction"]


@dataclass(frozen=True)
class ValidationResult:
    """A proposed (program, input): valid with its gold output (a repr string), or invalid with a reason."""

    valid: bool
    output: str | None
    reason: str | None


@dataclass(frozen=True)
class GradeResult:
    """Whether an answer is correct; reason says why not (None when correct). `crashed`: the grading itself failed
    (the sandbox worker died or stopped answering, not the answer's program), so the verdict says nothing about the
    answer; the learnability estimate leaves such gradings out of its mean, as the reference does."""

    correct: bool
    reason: str | None
    crashed: bool = False


@dataclass(frozen=True)
class GradeRequest:
    """One answer to grade. deduction: program + input + output (gold), answer = predicted output.
    abduction: program + output (gold), answer = predicted input. induction: tests = [(input, output), ...],
    answer = a program (raw or in a ```python block)."""

    task_type: TaskType
    answer: str
    program: str | None = None
    input: str | None = None
    output: str | None = None
    tests: list[tuple[str, str]] = field(default_factory=list)


@dataclass(frozen=True)
class _Spec:
    program: str
    call: str
    avoid_worker: int | None = None
    args: str | None = None  # an input expression, evaluated in the sandbox (then `call` is unused)


Plan = Generator[list[_Spec], list[RunResult], Any]


class Executor:
    """Validates tasks and grades answers in sandboxed workers. Use as a context manager, or call close().

    >>> with Executor() as ex:                                                            # doctest: +SKIP
    ...     ex.validate_many([("def f(x):\\n    return x * 2", "21")])
    [ValidationResult(valid=True, output='42', reason=None)]
    """

    def __init__(self, cfg: ExecutorConfig | None = None) -> None:
        self.cfg = cfg or ExecutorConfig()
        self._pool: WorkerPool | None = None
        self._limits = CheckLimits(self.cfg.max_program_chars, self.cfg.max_ast_nodes)
        self.stats = {"executions": 0, "timeouts": 0, "crashes": 0, "exec_wall_s": 0.0}

    # -- lifecycle ------------------------------------------------------------------------------------------------
    def start(self) -> Executor:
        """Start the workers now (otherwise the first call does); raises SandboxUnavailable with the fix."""
        if self._pool is None:
            if self.cfg.sandbox == "none":
                warn_unsafe()
            self._pool = WorkerPool(self.cfg)
        return self

    def close(self) -> None:
        if self._pool is not None:
            self._pool.close()
            self._pool = None

    def __enter__(self) -> Executor:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def worker_restarts(self) -> int:
        return self._pool.restarts if self._pool else 0

    # -- validation -----------------------------------------------------------------------------------------------
    def validate_many(self, items: Iterable[tuple[str, str]]) -> list[ValidationResult]:
        """Validate (program, input) pairs; results in input order."""
        return _in_order(self.iter_validate(items))

    def iter_validate(self, items: Iterable[tuple[str, str]]) -> Iterator[tuple[int, ValidationResult]]:
        """Validate (program, input) pairs, yielding (index, result) as each finishes (not in order)."""
        return self._drive(self._validate_plan(program, input_text) for program, input_text in items)

    # -- grading --------------------------------------------------------------------------------------------------
    def grade_many(self, requests: Iterable[GradeRequest]) -> list[GradeResult]:
        """Grade answers; results in input order."""
        return _in_order(self.iter_grade(requests))

    def iter_grade(self, requests: Iterable[GradeRequest]) -> Iterator[tuple[int, GradeResult]]:
        """Grade answers, yielding (index, result) as each finishes."""
        return self._drive(self._grade_plan(r) for r in requests)

    # -- raw execution --------------------------------------------------------------------------------------------
    def run_many(self, items: Iterable[tuple[str, str]]) -> list[RunResult]:
        """Run `f(*args, **kwargs)` of each (program, call) once, as given: no static check, no parsing of the
        output. For trusted driver programs built by the caller (benchmark test harnesses); results in input order.
        `call` is the text of `(args, kwargs)` made of literals."""
        return _in_order(self._drive(_run_plan(program, call) for program, call in items))

    # -- plans ----------------------------------------------------------------------------------------------------
    def _validate_plan(self, program: str, input_text: str) -> Plan:
        problem = self._static_problem(program)
        if problem:
            return ValidationResult(False, None, problem)
        try:
            spec = self._spec(program, input_text)
        except InputError as exc:
            return ValidationResult(False, None, f"invalid input: {exc}")
        (first,) = yield [spec]
        if first.status != "ok":
            return ValidationResult(False, None, _run_reason(first))
        try:
            value = parse_literal(first.output or "", max_chars=self.cfg.max_output_chars)
        except LiteralError as exc:
            return ValidationResult(False, None, f"not literal: {exc}")
        avoid = first.worker
        for run in range(2, self.cfg.determinism_runs + 1):
            (again,) = yield [_Spec(program, spec.call, avoid_worker=avoid, args=spec.args)]
            if again.status != "ok":
                return ValidationResult(False, None, f"nondeterministic: run {run} ended in {_run_reason(again)}")
            try:
                same = values_equal(value, parse_literal(again.output or "", max_chars=self.cfg.max_output_chars))
            except LiteralError:
                same = False
            if not same:
                return ValidationResult(
                    False,
                    None,
                    f"nondeterministic: run 1 returned {_clip(first.output)}, run {run} {_clip(again.output)}",
                )
            avoid = again.worker
        return ValidationResult(True, first.output, None)

    def _grade_plan(self, req: GradeRequest) -> Plan:
        if req.task_type == "deduction":
            return (yield from self._grade_deduction(req))
        if req.task_type == "abduction":
            return (yield from self._grade_abduction(req))
        if req.task_type == "induction":
            return (yield from self._grade_induction(req))
        return GradeResult(False, f"bad request: unknown task_type {req.task_type!r}")

    def _grade_deduction(self, req: GradeRequest) -> Plan:
        gold = req.output
        if gold is None:  # no gold given: compute it by running the program
            if req.program is None or req.input is None:
                return GradeResult(False, "bad request: deduction needs output, or program and input")
            valid = yield from self._validate_plan(req.program, req.input)
            if not valid.valid:
                return GradeResult(False, f"bad task: {valid.reason}")
            gold = valid.output or ""
        try:
            predicted = parse_literal(req.answer, max_chars=self.cfg.max_output_chars)
        except LiteralError as exc:
            return GradeResult(False, f"answer not literal: {exc}")
        try:
            expected = parse_literal(gold, max_chars=self.cfg.max_output_chars)
        except LiteralError as exc:
            return GradeResult(False, f"bad task: gold output not literal: {exc}")
        return GradeResult(True, None) if values_equal(predicted, expected) else GradeResult(False, "wrong output")
        yield  # pragma: no cover  (makes this a generator even when it never runs anything)

    def _grade_abduction(self, req: GradeRequest) -> Plan:
        if req.program is None or req.output is None:
            return GradeResult(False, "bad request: abduction needs program and output")
        try:
            spec = self._spec(req.program, req.answer)
        except InputError as exc:
            return GradeResult(False, f"answer not an argument list: {exc}")
        try:
            expected = parse_literal(req.output, max_chars=self.cfg.max_output_chars)
        except LiteralError as exc:
            return GradeResult(False, f"bad task: gold output not literal: {exc}")
        problem = self._static_problem(req.program)
        if problem:
            return GradeResult(False, f"bad task: {problem}")
        (run,) = yield [spec]
        return _compare_run(run, expected, self.cfg.max_output_chars)

    def _grade_induction(self, req: GradeRequest) -> Plan:
        program = extract_program(req.answer) or req.answer
        problem = self._static_problem(program)
        if problem:
            return GradeResult(False, f"program rejected: {problem}")
        if not req.tests:
            return GradeResult(False, "bad request: induction needs held-out tests")
        specs, expected = [], []
        for i, (input_text, output_text) in enumerate(req.tests):
            try:
                specs.append(self._spec(program, input_text))
                expected.append(parse_literal(output_text, max_chars=self.cfg.max_output_chars))
            except (InputError, LiteralError) as exc:
                return GradeResult(False, f"bad task: test {i}: {exc}")
        runs = yield specs
        # Pairs whose grading crashed are left out (the reference drops them from the mean); all crashed: no verdict.
        graded = [(i, run, exp) for i, (run, exp) in enumerate(zip(runs, expected, strict=True)) if not _lost(run)]
        if not graded:
            return GradeResult(False, f"grading crashed on all {len(runs)} tests: {_run_reason(runs[0])}", crashed=True)
        failed = [i for i, run, exp in graded if not _compare_run(run, exp, 10**9).correct]
        if failed:
            first = _compare_run(runs[failed[0]], expected[failed[0]], self.cfg.max_output_chars)
            return GradeResult(False, f"failed {len(failed)}/{len(runs)} tests (test {failed[0]}: {first.reason})")
        return GradeResult(True, None)

    # -- driver ---------------------------------------------------------------------------------------------------
    def _drive(self, plans: Iterable[Plan]) -> Iterator[tuple[int, Any]]:
        pool = self.start()._pool
        assert pool is not None
        window = 4 * pool.size
        source = enumerate(plans)
        active: dict[int, tuple[Plan, list[RunResult | None]]] = {}
        exhausted = False

        def advance(idx: int, plan: Plan, sent: list[RunResult] | None) -> Any:
            try:
                specs = plan.send(sent) if sent is not None else next(plan)
            except StopIteration as stop:
                active.pop(idx, None)
                return stop.value
            active[idx] = (plan, [None] * len(specs))
            for j, s in enumerate(specs):
                pool.submit(Job(key=(idx, j), program=s.program, call=s.call, avoid_worker=s.avoid_worker, args=s.args))
            return _PENDING

        while True:
            while not exhausted and len(active) < window:
                try:
                    idx, plan = next(source)
                except StopIteration:
                    exhausted = True
                    break
                result = advance(idx, plan, None) if hasattr(plan, "send") else plan
                if result is not _PENDING:
                    yield idx, result
            if not active:
                if exhausted:
                    return
                continue
            for job, res in pool.poll():
                idx, j = job.key
                self._count(res)
                plan, results = active[idx]
                results[j] = res
                if all(r is not None for r in results):
                    result = advance(idx, plan, results)  # type: ignore[arg-type]
                    if result is not _PENDING:
                        yield idx, result

    def _count(self, res: RunResult) -> None:
        self.stats["executions"] += 1
        self.stats["exec_wall_s"] += res.wall
        self.stats["timeouts"] += res.status == "timeout"
        self.stats["crashes"] += res.status == "crashed"

    def _spec(self, program: str, input_text: str) -> _Spec:
        """One execution of `f(<input_text>)`: the input built here as literals, or (`inputs=expression`) checked
        here and evaluated in the sandbox. Raises InputError naming what is wrong with the input."""
        if self.cfg.inputs == "literal":
            return _Spec(program, parse_call_args(input_text, max_chars=self.cfg.max_input_chars).to_literal())
        if not isinstance(input_text, str):
            raise InputError(f"input must be text, got {type(input_text).__name__}")
        problem = _input_problem_cached(input_text.strip(), self.cfg.max_input_chars)  # even without static_checks
        if problem:
            raise InputError(problem)
        return _Spec(program, "", args=input_text.strip())

    def _static_problem(self, program: str) -> str | None:
        if not self.cfg.static_checks:
            return None
        return _static_problem_cached(program, self._limits)


_PENDING = object()


def _run_plan(program: str, call: str) -> Plan:
    (run,) = yield [_Spec(program, call)]
    return run


@functools.lru_cache(maxsize=4096)
def _static_problem_cached(program: str, limits: CheckLimits) -> str | None:
    try:
        check_program(program, limits)
    except CheckError as exc:
        return f"check: {exc}"
    return None


@functools.lru_cache(maxsize=4096)
def _input_problem_cached(input_text: str, max_chars: int) -> str | None:
    try:
        check_call_expression(input_text, max_chars=max_chars)
    except CheckError as exc:
        return str(exc)
    return None


def _run_reason(run: RunResult) -> str:
    names = {"no_f": "check", "not_literal": "not literal", "too_large": "output too large"}
    return f"{names.get(run.status, run.status)}: {run.detail or ''}".rstrip(": ")


def _lost(run: RunResult) -> bool:
    """The execution was lost to the sandbox itself (its worker died or hung), not ended by the program."""
    return run.status == "crashed" and (run.detail or "").startswith("sandbox worker")


def _compare_run(run: RunResult, expected: Any, max_chars: int) -> GradeResult:
    if run.status != "ok":
        return GradeResult(False, _run_reason(run), crashed=_lost(run))
    try:
        got = parse_literal(run.output or "", max_chars=max_chars)
    except LiteralError as exc:
        return GradeResult(False, f"not literal: {exc}")
    return (
        GradeResult(True, None)
        if values_equal(got, expected)
        else GradeResult(False, f"wrong output {_clip(run.output)}")
    )


def _clip(text: str | None, limit: int = 80) -> str:
    text = text or ""
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _in_order(pairs: Iterable[tuple[int, Any]]) -> list[Any]:
    found = dict(pairs)
    return [found[i] for i in range(len(found))]
