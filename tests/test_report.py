"""`azr report` on a small real run folder (the store's own writer, real Parquet and DuckDB), rendered in a real
headless browser (Debian's chromium-headless-shell)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys

import pytest
from reportutil import make_registry, make_run

BROWSER = shutil.which("chromium-headless-shell") or shutil.which("chromium")


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


def test_the_evaluation_section_renders_with_the_champion_and_the_gates_p_values(tmp_path):
    """Scores per version with the champion (read from the registry's alias) marked, and the promotion decisions with
    their p-values, as a real headless browser renders the page."""
    run_dir, out = tmp_path / "run", tmp_path / "report"
    make_run(run_dir)
    uri = make_registry(run_dir, tmp_path / "mlflow")
    env = {**os.environ, "MLFLOW_TRACKING_URI": uri}
    done = subprocess.run([sys.executable, "-m", "azr_core.cli", "report", str(run_dir), "--out", str(out)],
                          capture_output=True, text=True, timeout=300, env=env)  # fmt: skip
    assert done.returncode == 0, done.stderr
    if BROWSER is None:
        pytest.fail("no headless browser: apt-get install -y --no-install-recommends chromium-headless-shell")
    dom = subprocess.run([BROWSER, "--headless", "--no-sandbox", "--disable-gpu", "--virtual-time-budget=5000",
                          "--dump-dom", (out / "index.html").as_uri()], capture_output=True, text=True,
                         timeout=120).stdout  # fmt: skip
    assert 'data-images-ok="9/9"' in dom
    section = dom[dom.index('<section id="evaluation">') : dom.index("</section>")]
    assert '<p id="champion">champion: version 1</p>' in section
    assert '<th class="champ">v1 (champion)</th><th>v2</th>' in section  # the scores table, champion marked
    assert "<td>0.500</td><td>1.000</td>" in section
    rows = re.findall(r"<tr( class=\"champ\")?><td>(\d)</td><td>(\d)</td><td>([a-z-]+)</td><td>([^<]*)</td>"
                      r"<td>([^<]*)</td><td>([^<]*)</td>", section)  # fmt: skip
    assert [r[1:] for r in rows] == [("1", "1", "first-champion", "-", "-", "-"),
                                     ("2", "2", "rejected", "1", "0.000000", "0.42")], rows  # fmt: skip
    assert rows[0][0] and not rows[1][0]  # the champion's row is marked


def test_iteration_axes_have_whole_numbers_only(tmp_path):
    """Two iterations: matplotlib alone would label 1.0, 1.2, ... 2.0; the report's axes carry integers."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from azr_core.report.build import _integer_ticks

    fig, ax = plt.subplots()
    ax.plot([1, 2], [0.1, 0.3])
    fig.canvas.draw()
    assert any(t != int(t) for t in ax.get_xticks())  # the default locator puts fractions on a short run
    _integer_ticks(ax)
    fig.canvas.draw()
    assert all(t == int(t) for t in ax.get_xticks()), ax.get_xticks()
    plt.close(fig)
