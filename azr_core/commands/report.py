"""`azr report RUN_DIR [--out DIR]`: a self-contained HTML page of a run (plots embedded) plus the PNGs.

azr report runs/azr --out /tmp/azr-report && xdg-open /tmp/azr-report/index.html

Read-only: it writes only its output folder (default `reports/<run name>/`, never inside the run folder), and it
writes nothing to MLflow unless `--mlflow` asks to log the page there.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

CHAMPION_HELP = "Version to mark as champion (default: the registry's champion alias)."
MLFLOW_HELP = "Also log the page and plots to the run's MLflow run as artifacts (a write; off by default)."


def report_cmd(
    run_dir: Annotated[Path, typer.Argument(help="The run folder.")],
    out: Annotated[Path | None, typer.Option("--out", help="Output folder (default: reports/<run name>).")] = None,
    champion: Annotated[int | None, typer.Option(help=CHAMPION_HELP)] = None,
    mlflow: Annotated[bool, typer.Option("--mlflow/--no-mlflow", help=MLFLOW_HELP)] = False,
) -> None:  # fmt: skip
    """Learning curves, evaluation scores per version (champion marked), promotion decisions, task mix, program
    statistics and example rollouts of a run."""
    import os

    from azr_core.report import build_report
    from azr_core.store import StoreError

    # The registry is only consulted: an MLflow server that is down must not hold the page for minutes of retries.
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "1")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "10")

    try:
        page = build_report(run_dir, out, champion=champion, log_mlflow=mlflow)
    except (StoreError, FileNotFoundError) as exc:
        print(f"azr report: {exc}", file=sys.stderr)
        raise typer.Exit(2) from None
    print(page)


def register(app: typer.Typer) -> None:
    """Add `azr report` to the CLI."""
    app.command("report")(report_cmd)
