"""`azr sql`: query a run folder's tables with DuckDB.

    azr sql "SELECT task_type, avg(correct::INT) FROM rollouts WHERE role = 'solve' GROUP BY ALL" --run runs/azr
    azr sql --schema --run runs/azr
    azr sql "SELECT * FROM tasks" --format parquet --output tasks.parquet

Views: proposals, tasks, rollouts, iterations (committed iterations only; safe while training writes), and evals
(every evaluation written to the folder, `azr eval run --run`). A bad query
prints DuckDB's error and exits with status 1; a missing or foreign run folder exits with status 2.

This is the typer declaration (help, `azr --help`); `azr sql ...` itself runs through the same `run_sql` without
typer (`azr_core.commands.sql_core`), which starts faster.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from azr_core.commands.sql_core import (
    DEFAULT_RUN_DIR,
    FORMAT_HELP,
    MAX_WIDTH_HELP,
    OUTPUT_HELP,
    QUERY_HELP,
    RUN_ENVVAR,
    RUN_HELP,
    SCHEMA_HELP,
    OutputFormat,
    UsageError,
    format_table,
    run_sql,
)

__all__ = ["DEFAULT_RUN_DIR", "format_table", "register", "sql"]
_DEFAULT_RUN = Path(DEFAULT_RUN_DIR)


def sql(
    query: Annotated[str | None, typer.Argument(help=QUERY_HELP)] = None,
    run: Annotated[Path, typer.Option("--run", "-r", envvar=RUN_ENVVAR, help=RUN_HELP)] = _DEFAULT_RUN,
    fmt: Annotated[OutputFormat, typer.Option("--format", "-f", help=FORMAT_HELP)] = OutputFormat.table,
    output: Annotated[Path | None, typer.Option("--output", "-o", help=OUTPUT_HELP)] = None,
    schema: Annotated[bool, typer.Option("--schema", help=SCHEMA_HELP)] = False,
    max_width: Annotated[int, typer.Option(help=MAX_WIDTH_HELP)] = 60,
) -> None:
    """Query a run's tables with DuckDB (only committed iterations are visible)."""
    try:
        code = run_sql(query, run, fmt, output, schema, max_width)
    except UsageError as exc:
        raise typer.BadParameter(str(exc)) from None
    if code:
        raise typer.Exit(code)


def register(app: typer.Typer) -> None:
    """Add `azr sql` to the CLI."""
    app.command("sql")(sql)
