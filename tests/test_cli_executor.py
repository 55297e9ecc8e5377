"""The real `azr validate` / `azr grade` commands, run as subprocesses on files."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.sandbox

AZR = str(Path(sys.executable).parent / "azr")
EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def azr(*args, timeout=120):
    return subprocess.run([AZR, *args], capture_output=True, text=True, timeout=timeout)


def lines(out):
    return [json.loads(line) for line in out.splitlines()]


def test_validate_examples():
    res = azr("validate", str(EXAMPLES / "tasks.jsonl"), "--timeout", "1")
    assert res.returncode == 0, res.stderr
    rows = {r["id"]: r for r in lines(res.stdout)}
    assert list(rows) == [json.loads(x)["id"] for x in (EXAMPLES / "tasks.jsonl").read_text().splitlines()]
    assert rows["double"] == {"id": "double", "valid": True, "output": "42", "reason": None}
    assert rows["loops-forever"]["reason"].startswith("timeout")
    assert rows["imports-os"]["reason"].startswith("check: banned module")
    assert rows["bare-raise"]["valid"] is False
    assert rows["injected-input"]["reason"].startswith("invalid input")
    assert set(rows["double"]) == {"id", "valid", "output", "reason"}


def test_grade_examples():
    res = azr("grade", str(EXAMPLES / "answers.jsonl"))
    assert res.returncode == 0, res.stderr
    got = {r["id"]: r["correct"] for r in lines(res.stdout)}
    assert got == {
        "ded-right": True,
        "ded-spacing": True,
        "ded-wrong": False,
        "abd-right": True,
        "abd-injection": False,
        "ind-right": True,
        "ind-rigged-eq": False,
    }


def test_malformed_line_is_named_and_nothing_runs(tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"id": 1, "program": "def f(x):\\n    return x", "input": "1"}\n{"id": 2, "program": 3}\n')
    res = azr("validate", str(bad))
    assert res.returncode == 2
    assert "line 2" in res.stderr and "program" in res.stderr
    assert res.stdout == ""
    bad.write_text("{not json\n")
    res = azr("grade", str(bad))
    assert res.returncode == 2 and "line 1" in res.stderr and "not valid JSON" in res.stderr
    bad.write_text('{"id": 1, "task_type": "guessing", "answer": "1"}\n')
    res = azr("grade", str(bad))
    assert res.returncode == 2 and "task_type" in res.stderr


def test_unreadable_file():
    res = azr("validate", "/nonexistent/tasks.jsonl")
    assert res.returncode == 2 and "cannot read" in res.stderr


def test_results_stream_before_the_batch_ends(tmp_path):
    # The first result must be printed while a later program is still stuck in its time limit.
    f = tmp_path / "t.jsonl"
    rows = [
        {"id": 0, "program": "def f(x):\n    return x", "input": "1"},
        {"id": 1, "program": "def f(x):\n    while True:\n        pass", "input": "1"},
    ]
    f.write_text("".join(json.dumps(r) + "\n" for r in rows))
    proc = subprocess.Popen(
        [AZR, "validate", str(f), "--timeout", "8"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    import time

    start = time.monotonic()
    first = proc.stdout.readline()
    first_at = time.monotonic() - start
    proc.communicate(timeout=60)
    assert json.loads(first)["id"] == 0
    assert first_at < 6, f"first result came only after {first_at:.1f}s"
