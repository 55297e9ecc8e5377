"""`azr eval run` as a user calls it (the real CLI in a subprocess), on a tiny random model folder."""

from __future__ import annotations

import json
import subprocess
import sys

from azr_core.policy.tiny import make_tiny_model_dir
from azr_core.store import connect


def azr(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "azr_core.cli", *args], capture_output=True, text=True, timeout=600)


def test_eval_run_writes_the_evals_table_and_prints_scores(tmp_path):
    model = make_tiny_model_dir(tmp_path / "tiny", hidden=16, layers=1)
    run_dir = tmp_path / "run"
    done = azr("eval", "run", "--model", str(model), "--suite", "cruxeval-o,gsm8k", "--limit", "3", "--run",
               str(run_dir), "--max-new-tokens", "6", "--backend", "hf")  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    summary = json.loads(done.stdout.strip().splitlines()[-1])
    assert summary["model"] == str(model) and summary["version"] is None
    assert summary["n"] == {"cruxeval-o": 3, "gsm8k": 3}
    assert "cruxeval-o:" in done.stderr and "generation" in done.stderr  # progress goes to stderr, not stdout
    rows = (
        connect(run_dir)
        .execute("SELECT bench, item_id, sample, template, prompt, completion, correct, reason FROM evals ORDER BY ALL")
        .fetchall()
    )
    assert [(r[0], r[1]) for r in rows] == [("cruxeval-o", f"sample_{i}") for i in range(3)] + [
        ("gsm8k", str(i)) for i in range(3)
    ]
    for _, _, sample, template, prompt, completion, correct, reason in rows:
        assert sample == 0 and template == "raw" and prompt.startswith("A conversation between User and Assistant")
        assert isinstance(completion, str) and isinstance(correct, bool) and (correct or reason)
    accuracy = sum(r[6] for r in rows if r[0] == "gsm8k") / 3
    assert summary["scores"]["gsm8k"]["pass@1"] == accuracy


def test_eval_run_refuses_an_unknown_benchmark(tmp_path):
    done = azr("eval", "run", "--model", str(tmp_path), "--suite", "cruxeval-x")
    assert done.returncode == 2 and "unknown benchmark or suite 'cruxeval-x'" in done.stderr
