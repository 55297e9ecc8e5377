"""`azr validate`, `azr grade` and `azr sandbox-setup`: the executor from the command line.

Both batch commands read JSON lines, stream one JSON line per input to stdout as results come in (in input order),
and show progress on stderr. Invalid tasks and wrong answers are results (exit 0); an unreadable file or a malformed
line is an error (exit 2) that names the line, and is reported before anything runs.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from azr_core.executor import Executor, ExecutorConfig, GradeRequest, SandboxUnavailable, setup_sandbox_user

_err = Console(stderr=True)
PROGRESS_MIN_ITEMS = 20  # no bar for a handful of lines


class InputFileError(ValueError):
    """The input file cannot be used; the message names the file and line."""


def register(app: typer.Typer) -> None:
    app.command("validate")(validate)
    app.command("grade")(grade)
    app.command("sandbox-setup")(sandbox_setup)


def _executor_options(workers: int, timeout: float, unsafe_no_sandbox: bool, inputs: str) -> ExecutorConfig:
    if inputs not in ("expression", "literal"):
        _fail(f"--inputs must be expression or literal, not {inputs!r}")
    return ExecutorConfig(
        workers=workers, timeout_s=timeout, sandbox="none" if unsafe_no_sandbox else "firejail", inputs=inputs
    )


WORKERS = typer.Option(0, "--workers", help="Sandbox worker processes (0 = auto: 16 per core, at most 64).")
TIMEOUT = typer.Option(
    ExecutorConfig.model_fields["timeout_s"].default, "--timeout", help="Wall-clock time limit of one execution, s."
)
INPUTS = typer.Option(
    ExecutorConfig.model_fields["inputs"].default,
    "--inputs",
    help="expression: an input may be any expression the static checks accept, evaluated in the sandbox; literal: "
    "Python literals only, built outside the sandbox.",
)
UNSAFE = typer.Option(
    False, "--unsafe-no-sandbox", help="Run programs WITHOUT firejail (static checks and rlimits only). Unsafe."
)


def validate(
    file: Path = typer.Argument(..., help='JSON lines, each {"id", "program", "input"}.'),
    workers: int = WORKERS,
    timeout: float = TIMEOUT,
    unsafe_no_sandbox: bool = UNSAFE,
    inputs: str = INPUTS,
) -> None:
    """Validate proposed tasks: print {"id", "valid", "output", "reason"} per line."""
    rows = _read_jsonl(file, required={"id": None, "program": str, "input": str})
    cfg = _executor_options(workers, timeout, unsafe_no_sandbox, inputs)

    def run(ex: Executor) -> Iterator[tuple[int, dict[str, Any]]]:
        for i, res in ex.iter_validate((r["program"], r["input"]) for r in rows):
            yield i, {"id": rows[i]["id"], "valid": res.valid, "output": res.output, "reason": res.reason}

    _stream(cfg, len(rows), run, "validating")


def grade(
    file: Path = typer.Argument(
        ..., help='JSON lines, each {"id", "task_type", "program", "input", "output", "answer", "tests"}.'
    ),
    workers: int = WORKERS,
    timeout: float = TIMEOUT,
    unsafe_no_sandbox: bool = UNSAFE,
    inputs: str = INPUTS,
) -> None:
    """Grade answers (deduction, abduction, induction): print {"id", "correct", "reason"} per line."""
    rows = _read_jsonl(file, required={"id": None, "task_type": str, "answer": str})
    try:
        requests = [_grade_request(r, r["_line"]) for r in rows]
    except InputFileError as exc:
        _fail(f"{file}: {exc}")
    cfg = _executor_options(workers, timeout, unsafe_no_sandbox, inputs)

    def run(ex: Executor) -> Iterator[tuple[int, dict[str, Any]]]:
        for i, res in ex.iter_grade(requests):
            yield i, {"id": rows[i]["id"], "correct": res.correct, "reason": res.reason}

    _stream(cfg, len(rows), run, "grading")


def sandbox_setup(
    user: str = typer.Option("azr-sandbox", help="Name of the unprivileged sandbox user."),
) -> None:
    """Create the unprivileged sandbox user firejail runs programs as (needs root; idempotent)."""
    try:
        done = setup_sandbox_user(user)
    except SandboxUnavailable as exc:
        _fail(str(exc))
    print("\n".join(done) if done else f"sandbox user {user} is ready (nothing to do)")


def _grade_request(row: dict[str, Any], line: int) -> GradeRequest:
    task_type = row["task_type"]
    if task_type not in ("deduction", "abduction", "induction"):
        raise_line(line, f"task_type must be deduction, abduction or induction, not {task_type!r}")
    tests = row.get("tests") or []
    if not isinstance(tests, list) or not all(
        isinstance(t, list) and len(t) == 2 and all(isinstance(x, str) for x in t) for t in tests
    ):
        raise_line(line, 'tests must be a list of [input, output] pairs of strings, e.g. [["1", "2"]]')
    for key in ("program", "input", "output"):
        if row.get(key) is not None and not isinstance(row[key], str):
            raise_line(line, f"{key} must be a string or null")
    return GradeRequest(
        task_type=task_type,
        answer=row["answer"],
        program=row.get("program"),
        input=row.get("input"),
        output=row.get("output"),
        tests=[(a, b) for a, b in tests],
    )


def raise_line(line: int, message: str) -> None:
    raise InputFileError(f"line {line}: {message}")


MAX_LINE_BYTES = 8 << 20  # a task line is a few KiB (program <= 10k chars); far longer is hostile or not a task file
MAX_JSON_DEPTH = 64  # tasks nest lists a few levels deep; json recursion would crash at ~1000


def _json_depth_ok(line: bytes) -> bool:
    # Count bracket depth outside strings before json.loads, which would hit RecursionError on `[[[[...`.
    depth, in_str, escaped = 0, False, False
    for byte in line:
        if in_str:
            if escaped:
                escaped = False
            elif byte == 0x5C:  # backslash
                escaped = True
            elif byte == 0x22:  # quote
                in_str = False
        elif byte == 0x22:
            in_str = True
        elif byte in (0x5B, 0x7B):  # [ {
            depth += 1
            if depth > MAX_JSON_DEPTH:
                return False
        elif byte in (0x5D, 0x7D):
            depth -= 1
    return True


def _read_jsonl(file: Path, required: dict[str, type | None]) -> list[dict[str, Any]]:
    # Read and check the whole file first: a malformed line stops the command before any program runs. Lines are
    # read with a length bound and decoded one by one, so a hostile file (one huge line, invalid UTF-8, deep nesting)
    # gets one clear error with its line number instead of a memory blow-up or a traceback.
    rows = []
    try:
        with open(file, "rb") as fh:
            n = 0
            while raw := fh.readline(MAX_LINE_BYTES + 1):
                n += 1
                if len(raw) > MAX_LINE_BYTES and not raw.endswith(b"\n"):
                    raise_line(n, f"longer than {MAX_LINE_BYTES >> 20} MiB: split the task or shorten it")
                try:
                    line = raw.decode("utf-8")
                except UnicodeDecodeError as exc:
                    raise_line(n, f"not UTF-8 (byte {exc.start + 1} of the line): save the file as UTF-8")
                if not line.strip():
                    continue
                if not _json_depth_ok(raw):
                    raise_line(n, f"JSON nested deeper than {MAX_JSON_DEPTH} levels: flatten it")
                try:
                    row = json.loads(line)
                except json.JSONDecodeError as exc:
                    raise_line(n, f"not valid JSON: {exc.msg} (column {exc.colno})")
                if not isinstance(row, dict):
                    raise_line(n, "each line must be a JSON object")
                for key, kind in required.items():
                    if key not in row:
                        raise_line(n, f"missing field {key!r}")
                    if kind is not None and not isinstance(row[key], kind):
                        raise_line(n, f"field {key!r} must be a {kind.__name__}")
                row["_line"] = n
                rows.append(row)
    except OSError as exc:
        _fail(f"cannot read {file}: {exc}")
    except InputFileError as exc:
        _fail(f"{file}: {exc}")
    return rows


def _stream(
    cfg: ExecutorConfig, total: int, run: Callable[[Executor], Iterator[tuple[int, dict[str, Any]]]], verb: str
) -> None:
    """Print results in input order as soon as each is ready, with a progress bar on stderr for long files."""
    out = sys.stdout
    show = total >= PROGRESS_MIN_ITEMS and _err.is_terminal
    progress = Progress(
        TextColumn(f"[bold]{verb}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        console=_err,
        disable=not show,
    )
    ready: dict[int, dict[str, Any]] = {}
    next_index = 0
    try:
        with Executor(cfg) as ex, progress:
            bar = progress.add_task(verb, total=total)
            for i, record in run(ex):
                ready[i] = record
                progress.advance(bar)
                while next_index in ready:
                    out.write(json.dumps(ready.pop(next_index)) + "\n")
                    next_index += 1
                out.flush()
    except SandboxUnavailable as exc:
        _fail(str(exc))
    if not show and total >= PROGRESS_MIN_ITEMS:
        _err.print(f"{verb}: {total} done")


def _fail(message: str) -> None:
    _err.print(f"[red]error:[/red] {message}", highlight=False)
    raise typer.Exit(2)
