"""`azr sql`: query a run folder's tables with DuckDB.

    azr sql "SELECT task_type, avg(correct::INT) FROM rollouts WHERE role = 'solve' GROUP BY ALL" --run runs/azr
    azr sql --schema --run runs/azr
    azr sql "SELECT * FROM tasks" --format parquet --output tasks.parquet

Views: proposals, tasks, rollouts, iterations (committed iterations only; safe while training writes). A bad query
prints DuckDB's error and exits with status 1; a missing or foreign run folder exits with status 2.
"""

from __future__ import annotations

import csv
import json
import os
import sys
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer

DEFAULT_RUN_DIR = "runs/azr"  # = RunConfig.run_dir's default; literal here to keep `azr sql` start-up light


class OutputFormat(StrEnum):
    table = "table"
    csv = "csv"
    json = "json"
    parquet = "parquet"


def _cell(value: Any, max_width: int) -> str:
    text = "NULL" if value is None else str(value)
    text = text.replace("\n", "\\n").replace("\t", "\\t")
    return text if max_width <= 0 or len(text) <= max_width else text[: max_width - 1] + "…"


def format_table(columns: list[str], rows: list[tuple[Any, ...]], *, max_width: int = 60) -> str:
    """Rows as an aligned text table (numbers right-aligned), with a row count under it."""
    cells = [[_cell(v, max_width) for v in row] for row in rows]
    widths = [max([len(c)] + [len(r[i]) for r in cells]) for i, c in enumerate(columns)]
    numeric = [
        bool(rows) and all(isinstance(r[i], int | float) or r[i] is None for r in rows) for i in range(len(columns))
    ]

    def line(values: list[str]) -> str:
        return "  ".join(v.rjust(w) if num else v.ljust(w) for v, w, num in zip(values, widths, numeric, strict=True))

    out = [line(columns), "  ".join("-" * w for w in widths), *(line(r) for r in cells)]
    out.append(f"({len(rows)} row{'s' if len(rows) != 1 else ''})")
    return "\n".join(s.rstrip() for s in out)


def _json_default(value: Any) -> Any:
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return str(value)


def _export(con: Any, query_rel: Any, fmt: OutputFormat, output: Path) -> None:
    """Write the result to `output` with DuckDB's COPY, atomically (temp file, rename)."""
    from azr_core.store.atomic import temp_path_for

    options = {OutputFormat.csv: "FORMAT csv, HEADER true", OutputFormat.json: "FORMAT json",
               OutputFormat.parquet: "FORMAT parquet, COMPRESSION zstd"}[fmt]  # fmt: skip
    output.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_path_for(output)
    query_rel.create_view("_azr_result", replace=True)
    try:
        con.execute(f"COPY (SELECT * FROM _azr_result) TO '{str(tmp).replace(chr(39), chr(39) * 2)}' ({options})")
        os.replace(tmp, output)
    finally:
        tmp.unlink(missing_ok=True)


def _print_schema(con: Any, run: Path, fmt: OutputFormat) -> None:
    from azr_core.store.layout import read_commit
    from azr_core.store.schema import PARTITION_COLUMN, TABLES
    from azr_core.store.views import describe

    views = describe(con)
    state = read_commit(run)
    if fmt is OutputFormat.json:
        data = {"committed_iteration": state.iteration if state else None,
                "views": {t: dict(cols) for t, cols in views.items()}}  # fmt: skip
        typer.echo(json.dumps(data, indent=2))
        return
    typer.echo(f"run {run}: committed iteration {state.iteration if state else 'none'}")
    for table, cols in views.items():
        meanings = {c.name: c.meaning for c in TABLES[table]}
        meanings[PARTITION_COLUMN] = "the iteration that committed the row (partition)"
        typer.echo(f"\n{table}")
        name_w = max(len(c) for c, _ in cols)
        type_w = max(len(t) for _, t in cols)
        for name, typ in cols:
            typer.echo(f"  {name.ljust(name_w)}  {typ.ljust(type_w)}  {meanings.get(name, '')}".rstrip())


_QUERY_HELP = "SQL to run over the views proposals, tasks, rollouts, iterations."
_FORMAT_HELP = "table (aligned text), csv, json (one object per line) or parquet (needs --output)."
_DEFAULT_RUN = Path(DEFAULT_RUN_DIR)


def sql(
    query: Annotated[str | None, typer.Argument(help=_QUERY_HELP)] = None,
    run: Annotated[Path, typer.Option("--run", "-r", envvar="AZR_RUN_DIR", help="Run folder to read.")] = _DEFAULT_RUN,
    fmt: Annotated[OutputFormat, typer.Option("--format", "-f", help=_FORMAT_HELP)] = OutputFormat.table,
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Write the result to this file instead of stdout.")
    ] = None,
    schema: Annotated[bool, typer.Option("--schema", help="List the views and their columns, then exit.")] = False,
    max_width: Annotated[int, typer.Option(help="table format: cut cells longer than this (0 = never).")] = 60,
) -> None:
    """Query a run's tables with DuckDB (only committed iterations are visible)."""
    import duckdb

    from azr_core.store.layout import StoreError
    from azr_core.store.schema import SchemaVersionError
    from azr_core.store.views import connect

    if not schema and not query:
        raise typer.BadParameter("give a query, or --schema")
    if fmt is OutputFormat.parquet and output is None:
        raise typer.BadParameter("--format parquet writes binary: give --output FILE")
    try:
        con = connect(run)
    except (StoreError, SchemaVersionError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    if schema:
        _print_schema(con, run, fmt)
        return
    try:
        rel = con.sql(query)
        if rel is None:  # a statement without a result (SET, CREATE VIEW, ...)
            return
        if output is not None and fmt is not OutputFormat.table:
            _export(con, rel, fmt, output)
            return
        columns, rows = list(rel.columns), rel.fetchall()
    except duckdb.Error as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None
    stream = open(output, "w", encoding="utf-8", newline="") if output else sys.stdout  # noqa: SIM115
    try:
        if fmt is OutputFormat.table:
            stream.write(format_table(columns, rows, max_width=max_width) + "\n")
        elif fmt is OutputFormat.csv:
            writer = csv.writer(stream, lineterminator="\n")
            writer.writerow(columns)
            writer.writerows(rows)
        else:
            for row in rows:
                stream.write(json.dumps(dict(zip(columns, row, strict=True)), default=_json_default) + "\n")
    finally:
        if output:
            stream.close()


def register(app: typer.Typer) -> None:
    """Add `azr sql` to the CLI."""
    app.command("sql")(sql)
