"""`azr report RUN_DIR [--out DIR]`: a self-contained HTML page of a run (plots embedded) plus the PNGs.

azr report runs/azr --out /tmp/azr-report && xdg-open /tmp/azr-report/index.html
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

CHAMPION_HELP = "Version to mark as champion (default: the registry's champion alias)."
MLFLOW_HELP = "Also log the page and plots to the run's MLflow run as artifacts."


def report_cmd(
    run_dir: Annotated[Path, typer.Argument(help="The run folder.")],
    out: Annotated[Path | None, typer.Option("--out", help="Output folder (default: RUN_DIR/report).")] = None,
    champion: Annotated[int | None, typer.Option(help=CHAMPION_HELP)] = None,
    mlflow: Annotated[bool, typer.Option("--mlflow/--no-mlflow", help=MLFLOW_HELP)] = True,
) -> None:  # fmt: skip
    """Learning curves, evaluation scores, task mix, program statistics and example rollouts of a run."""
    from azr_core.report import build_report
    from azr_core.store import StoreError

    try:
        page = build_report(run_dir, out, champion=champion, log_mlflow=mlflow)
    except StoreError as exc:
        print(f"azr report: {exc}", file=sys.stderr)
        raise typer.Exit(2) from None
    print(page)


def register(app: typer.Typer) -> None:
    """Add `azr report` to the CLI."""
    app.command("report")(report_cmd)
