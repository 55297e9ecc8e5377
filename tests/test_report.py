"""`azr report` on a small real run folder (the store's own writer, real Parquet and DuckDB), rendered in a real
headless browser (Debian's chromium-headless-shell)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest

from azr_core.eval.store import write_evals
from azr_core.store.run import open_run

BROWSER = shutil.which("chromium-headless-shell") or shutil.which("chromium")
TYPES = ("deduction", "abduction", "induction")


def make_run(run_dir: Path) -> None:
    store = open_run(run_dir)
    try:
        for it in (1, 2, 3):
            now = datetime.now(UTC)
            metrics = {"train/loss": 1.0 / it, "seconds/propose": 2.0 + it, "seconds/solve": 3.0}
            for t in TYPES:
                metrics |= {f"valid_rate/{t}": 0.1 * it, f"format_rate/propose/{t}": 0.2 * it,
                            f"solve_accuracy/{t}": 0.3, f"format_rate/solve/{t}": 0.5,
                            f"reward_mean/solve/{t}": -0.5 + 0.1 * it, f"reward_mean/propose/{t}": -1.0 + 0.2 * it,
                            f"invalid/{t}/check": 5.0 - it, f"invalid/{t}/error": 2.0}  # fmt: skip
            tasks = [{"task_id": f"{t}-{it}", "task_type": t, "program": "def f(x):\n" + "    x = x + 1\n" * it
                      + "    return x", "input": "1", "output": str(1 + it)} for t in TYPES]  # fmt: skip
            rollouts = [{"rollout_id": f"r{it}{t}{k}", "role": "solve", "task_type": t, "purpose": "solve",
                         "task_id": f"{t}-{it}", "completion": f"<think>add</think><answer>{k}</answer>",
                         "answer": str(k), "correct": k == 1 + it, "reward": 1.0 if k == 1 + it else -0.5}
                        for t in TYPES for k in (1 + it, 0)]  # fmt: skip
            with store.begin(it) as w:
                w.write("tasks", tasks)
                w.write("rollouts", rollouts)
                w.write("iterations", [{"stage": "train", "step": it, "started_at": now, "finished_at": now,
                                        "wall_s": 10.0, "metrics": metrics}])  # fmt: skip
                w.commit()
    finally:
        store.close()
    for version, acc in ((1, [True, False]), (2, [True, True])):
        rows = [{"eval_id": f"e{version}", "model": f"models:/azr-policy/{version}", "model_version": version,
                 "iteration": version, "bench": "cruxeval-o", "item_id": f"sample_{i}", "sample": 0,
                 "correct": c, "created_at": datetime.now(UTC)} for i, c in enumerate(acc)]  # fmt: skip
        write_evals(run_dir, f"e{version}", "cruxeval-o", rows)


def test_report_has_every_plot_and_renders_in_a_headless_browser(tmp_path):
    run_dir, out = tmp_path / "run", tmp_path / "report"
    make_run(run_dir)
    done = subprocess.run([sys.executable, "-m", "azr_core.cli", "report", str(run_dir), "--out", str(out),
                           "--champion", "2", "--no-mlflow"], capture_output=True, text=True, timeout=300)  # fmt: skip
    assert done.returncode == 0, done.stderr
    pngs = sorted(p.stem for p in out.glob("*.png"))
    assert pngs == sorted(["validity", "rejections", "solver", "rewards", "loss", "seconds", "task_mix",
                           "programs", "eval_scores"])  # fmt: skip
    page = (out / "index.html").read_text()
    assert page.count("data:image/png;base64,") == 9 and "v2 (champion)" in page
    assert "<td>0.500</td><td>1.000</td>" in page  # the score table: v1 half right, v2 all right
    assert "deduction task deduction-3" in page and "x = x + 1" in page  # an example task with its rollouts

    if BROWSER is None:
        pytest.fail("no headless browser: apt-get install -y --no-install-recommends chromium-headless-shell")
    dom = subprocess.run([BROWSER, "--headless", "--no-sandbox", "--disable-gpu", "--virtual-time-budget=5000",
                          "--dump-dom", (out / "index.html").as_uri()], capture_output=True, text=True,
                         timeout=120)  # fmt: skip
    assert 'data-images-ok="9/9"' in dom.stdout, dom.stderr[-2000:]


def test_report_of_a_missing_folder_says_so(tmp_path):
    done = subprocess.run([sys.executable, "-m", "azr_core.cli", "report", str(tmp_path / "nope"), "--no-mlflow"],
                          capture_output=True, text=True, timeout=120)  # fmt: skip
    assert done.returncode == 2 and "does not exist" in done.stderr
