"""HumanEval+ and MBPP+ grading: every program, the canonical ones included, runs in the sandboxed executor.

A task's program is run once per (task, candidate) in one sandboxed process by a small driver that calls the entry
point on each test input in turn, under evalplus's time-limit rule: input i may take max(min_time_limit,
factor x the canonical solution's time on it) seconds (a SIGALRM in the sandboxed child), the whole task at most
`task_timeout_s`. The driver returns each output as its `repr` text; the trusted process parses the texts as
literals and compares values there (exactly, or within `atol` for floats, as evalplus does), so nothing the
program returns is ever evaluated here.

Expected outputs come from running the canonical solution the same way; they are cached per data file under
`~/.cache/azr/eval/oracles/` (AZR_CACHE moves it), since they never change.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from azr_core.common.atomic import atomic_write_text
from azr_core.eval.codevalues import deserialize_inputs, outputs_match, py_text
from azr_core.executor import Executor, ExecutorConfig
from azr_core.lang.values import LiteralError, parse_literal

DRIVER_VERSION = "4"  # bump when the driver changes: cached oracles are keyed by it
_MAX_TEXT = 16_000_000
DIGEST_OVER = 10_000  # outputs whose repr is longer are compared by SHA-256 of the repr (exact match only)
_NOT_LITERAL = object()

# The driver runs after the candidate's code, in its module: it captures the entry point first (a candidate may
# itself be named `f`), then defines the `f` the sandbox runner calls. Its imports are the sandbox's own business.
_DRIVER = """

_azr_entry = {entry}


def _azr_plain(v):
    # Subclasses of plain types (Counter, OrderedDict, defaultdict, namedtuple) compare equal to the plain value,
    # as evalplus's `==` does; their repr is no literal, so they travel as the plain type.
    t = type(v)
    if t in (int, float, complex, str, bytes, bool, type(None)):
        return v
    if isinstance(v, dict):
        return {_azr_plain(k): _azr_plain(x) for k, x in v.items()}
    if isinstance(v, (list, tuple, set, frozenset)):
        base = next(b for b in (list, tuple, set, frozenset) if isinstance(v, b))
        return base(_azr_plain(x) for x in v)
    for base in (bool, int, float, str, bytes):
        if isinstance(v, base):
            return base(v)
    return v


def f(_azr_inputs, _azr_limits, _azr_not_none):
    import hashlib as _azr_hashlib
    import signal as _azr_signal
    import sys as _azr_sys
    import time as _azr_time

    _azr_sys.set_int_max_str_digits(0)  # outputs of thousands of digits are fine (HumanEval/83)

    class _AzrTimeout(BaseException):
        pass

    def _azr_alarm(*_):
        raise _AzrTimeout()

    _azr_signal.signal(_azr_signal.SIGALRM, _azr_alarm)
    _azr_out = []
    for _azr_i, _azr_args in enumerate(_azr_inputs):
        _azr_start = _azr_time.perf_counter()
        try:
            if _azr_limits is not None:
                _azr_signal.setitimer(_azr_signal.ITIMER_REAL, _azr_limits[_azr_i])
            _azr_value = _azr_entry(*_azr_args)
            _azr_signal.setitimer(_azr_signal.ITIMER_REAL, 0)
            if _azr_not_none:
                _azr_value = _azr_value is not None
            _azr_text = repr(_azr_plain(_azr_value))
            if len(_azr_text) > {digest_over}:  # a huge output (HumanEval/15) travels as its digest
                _azr_text = _azr_hashlib.sha256(_azr_text.encode("utf-8", "surrogatepass")).hexdigest()
                _azr_out.append(("digest", _azr_text, _azr_time.perf_counter() - _azr_start))
            else:
                _azr_out.append(("ok", _azr_text, _azr_time.perf_counter() - _azr_start))
        except _AzrTimeout:
            _azr_wall = _azr_time.perf_counter() - _azr_start
            _azr_out.append(("timeout", "time limit of %.3gs" % _azr_limits[_azr_i], _azr_wall))
            break
        except BaseException as _azr_exc:
            _azr_signal.setitimer(_azr_signal.ITIMER_REAL, 0)
            _azr_out.append(("error", (type(_azr_exc).__name__ + ": " + str(_azr_exc))[:200], 0.0))
            if _azr_limits is not None:
                break  # a candidate that raises has failed: the rest would only cost time
    return _azr_out
"""

#: MBPP+ entry points whose expected output is only "not None" (they return match objects), and the special oracles
#: evalplus applies (facts of the benchmark, from evalplus's evaluator).
MBPP_NOT_NONE = frozenset({"check_str", "text_match_three", "text_starta_endb"})


@dataclass(frozen=True)
class CodeLimits:
    """evalplus's time-limit rule and the per-task cap."""

    gt_time_limit_factor: float = 4.0
    min_time_limit_s: float = 1.0
    task_timeout_s: float = 60.0


@dataclass(frozen=True)
class CodeVerdict:
    correct: bool
    reason: str | None
    base_passed: bool = False
    tests: int = 0


def code_executor(limits: CodeLimits = CodeLimits(), workers: int = 0) -> Executor:
    """A sandboxed executor for benchmark code: the same firejail workers, without the self-play static checks
    (benchmark programs import sys, use eval, ...), with room for a whole test list's outputs, and one hash seed
    for all workers (canonical and candidate must see the same set order, as they do in evalplus's one process)."""
    return Executor(ExecutorConfig(static_checks=False, timeout_s=limits.task_timeout_s + 5.0,
                                   max_output_chars=_MAX_TEXT, max_input_chars=_MAX_TEXT, memory_mb=2048,
                                   workers=workers, deprioritize_after_s=0, hash_seed=0))  # fmt: skip


def _call_text(inputs: list[Any], limits: list[float] | None, not_none: bool) -> str:
    return f"(({py_text(inputs)}, {py_text(limits)}, {not_none!r}), {{}})"


def _driver_program(code: str, entry: str) -> str:
    return code + _DRIVER.replace("{entry}", entry).replace("{digest_over}", str(DIGEST_OVER))


# ---- oracles ----------------------------------------------------------------------------------------------------


def _cache_dir() -> Path:
    root = os.environ.get("AZR_CACHE")
    return (Path(root) if root else Path.home() / ".cache" / "azr") / "eval" / "oracles"


def _oracle_key(bench: str, items: list) -> str:
    h = hashlib.sha256(f"{DRIVER_VERSION}\0{bench}".encode())
    for it in items:
        h.update(json.dumps([it.id, it.extra["canonical"], it.extra["base_input"], it.extra["plus_input"]],
                            sort_keys=True, default=str).encode())  # fmt: skip
    return h.hexdigest()[:16]


def oracles(bench: str, items: list, executor: Executor) -> dict[str, dict[str, Any]]:
    """Expected outputs (repr texts) and canonical times of every input of `items`, from the canonical solutions
    run in the sandbox; cached. An input whose canonical run fails or returns a non-literal is dropped (counted)."""
    path = _cache_dir() / f"{bench.replace('+', 'plus')}-{_oracle_key(bench, items)}.json"
    if path.is_file():
        return json.loads(path.read_text(encoding="utf-8"))
    jobs, keys = [], []
    for it in items:
        not_none = bench == "mbpp+" and it.extra["entry_point"] in MBPP_NOT_NONE
        for split in ("base", "plus"):
            inputs = deserialize_inputs(bench, it.id, it.extra[f"{split}_input"])
            jobs.append((_driver_program(it.extra["canonical"], it.extra["entry_point"]),
                         _call_text(inputs, None, not_none)))  # fmt: skip
            keys.append((it.id, split))
    out: dict[str, dict[str, Any]] = {it.id: {} for it in items}
    for (task_id, split), run in zip(keys, executor.run_many(jobs), strict=True):
        entry = out[task_id]
        results = _parse_driver_output(run)
        if isinstance(results, str):
            entry[split] = {"statuses": [], "outputs": [], "times": [], "keep": [], "error": results}
            continue
        keep = [
            i
            for i, (status, text, _) in enumerate(results)
            if status == "digest" or (status == "ok" and _literal(text) is not _NOT_LITERAL)
        ]
        entry[split] = {
            "statuses": [r[0] for r in results],
            "outputs": [r[1] for r in results],
            "times": [r[2] for r in results],
            "keep": keep,
            "error": None if len(keep) == len(results) else f"{len(results) - len(keep)} inputs dropped",
        }
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, json.dumps(out))
    return out


def _parse_driver_output(run) -> list[tuple[str, str, float]] | str:
    if run.status != "ok":
        return f"{run.status}: {run.detail or ''}".rstrip(": ")
    try:
        value = parse_literal(run.output or "", max_chars=_MAX_TEXT * 2)
    except LiteralError as exc:
        return f"driver output not literal: {exc}"
    return [tuple(r) for r in value]


def _literal(text: str) -> Any:
    """The value of a repr text, or _NOT_LITERAL. Integers of any length parse (the limit is lifted meanwhile)."""
    import sys

    old = sys.get_int_max_str_digits()
    sys.set_int_max_str_digits(0)
    try:
        return parse_literal(text, max_chars=_MAX_TEXT)
    except LiteralError:
        return _NOT_LITERAL
    finally:
        sys.set_int_max_str_digits(old)


# ---- grading ----------------------------------------------------------------------------------------------------


def grade_code(bench: str, items: list, programs: list[str], executor: Executor,
               limits: CodeLimits = CodeLimits()) -> list[CodeVerdict]:  # fmt: skip
    """Grade one program per item (in order) on the item's base and plus tests."""
    oracle = oracles(bench, list({it.id: it for it in items}.values()), executor)
    jobs, plans = [], []
    for it, program in zip(items, programs, strict=True):
        o = oracle[it.id]
        not_none = bench == "mbpp+" and it.extra["entry_point"] in MBPP_NOT_NONE
        plan = []
        for split in ("base", "plus"):
            keep = o[split]["keep"]
            inputs = [deserialize_inputs(bench, it.id, it.extra[f"{split}_input"])[i] for i in keep]
            times = [o[split]["times"][i] for i in keep]
            tl = [max(limits.min_time_limit_s, limits.gt_time_limit_factor * t) for t in times]
            plan.append((split, keep, inputs))
            jobs.append((_driver_program(program, it.extra["entry_point"]), _call_text(inputs, tl, not_none)))
        plans.append(plan)
    runs = executor.run_many(jobs)
    verdicts = []
    for k, (it, plan) in enumerate(zip(items, plans, strict=True)):
        passed, reason, tests = {}, None, 0
        for j, (split, keep, inputs) in enumerate(plan):
            if not keep and it.extra[f"{split}_input"]:
                passed[split] = False  # never a vacuous pass: the canonical solution gave nothing to compare with
                reason = reason or f"{split}: no usable tests ({oracle[it.id][split]['error']})"
                continue
            o_split = oracle[it.id][split]
            expected = [(o_split["statuses"][i], o_split["outputs"][i]) for i in keep]
            tests += len(expected)
            ok, why = _check_split(bench, it, runs[2 * k + j], inputs, expected)
            passed[split] = ok
            if not ok and reason is None:
                reason = f"{split}: {why}"
        verdicts.append(CodeVerdict(passed["base"] and passed["plus"], reason, passed["base"], tests))
    return verdicts


def _check_split(bench: str, it, run, inputs: list[Any], expected: list[tuple[str, str]]) -> tuple[bool, str | None]:
    results = _parse_driver_output(run)
    if isinstance(results, str):
        return False, results
    if len(results) > len(expected):
        return False, "driver returned more results than inputs"
    atol = it.extra["atol"]
    entry = it.extra["entry_point"]
    for i, (exp_status, exp_text) in enumerate(expected):
        if i >= len(results):
            return False, f"test {i}: not run (an earlier test failed)"
        status, text, _ = results[i]
        if status == "digest" or exp_status == "digest":
            if status == exp_status and text == exp_text:
                continue
            return False, f"test {i}: wrong output (a long one, compared by digest)"
        if status != "ok":
            return False, f"test {i}: {status}: {text}"
        got = _literal(text)
        if got is _NOT_LITERAL:
            return False, f"test {i}: output is not a literal: {text[:80]}"
        exp = _literal(exp_text)
        if not outputs_match(bench, entry, inputs[i], got, exp, atol):
            return False, f"test {i}: wrong output {text[:80]}"
    return True, None
