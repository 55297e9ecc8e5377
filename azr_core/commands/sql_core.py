"""`azr sql` without typer: the query runner and a plain argparse front end that `azr sql` takes by default.

Kept free of typer (and so of pydantic, which typer imports): `azr sql` is often scripted, and those imports were a
third of its start-up. `azr_core.commands.sql` wraps the same `run_sql` as the typer command that `azr --help` and
`azr sql --help` show; a test keeps the two option lists equal.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import sys
from enum import StrEnum
from pathlib import Path
from typing import Any, TextIO

DEFAULT_RUN_DIR = "runs/azr"  # = RunConfig.run_dir's default; literal here to keep `azr sql` start-up light
QUERY_HELP = "SQL to run over the views proposals, tasks, rollouts, iterations."
FORMAT_HELP = "table (aligned text), csv, json (one object per line) or parquet (needs --output)."
RUN_HELP = "Run folder to read."
OUTPUT_HELP = "Write the result to this file instead of stdout."
SCHEMA_HELP = "List the views and their columns, then exit."
MAX_WIDTH_HELP = "table format: cut cells longer than this (0 = never)."
RUN_ENVVAR = "AZR_RUN_DIR"


class OutputFormat(StrEnum):
    table = "table"
    csv = "csv"
    json = "json"
    parquet = "parquet"


class UsageError(ValueError):
    """The options contradict each other (exit 2, like any usage error)."""


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
    from azr_core.common.atomic import temp_path_for

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


def _print_schema(con: Any, run: Path, fmt: OutputFormat, out: TextIO) -> None:
    from azr_core.store.layout import read_commit
    from azr_core.store.schema import PARTITION_COLUMN, SIDE_TABLES, TABLES
    from azr_core.store.views import describe

    views = describe(con)
    state = read_commit(run)
    if fmt is OutputFormat.json:
        data = {"committed_iteration": state.iteration if state else None,
                "views": {t: dict(cols) for t, cols in views.items()}}  # fmt: skip
        out.write(json.dumps(data, indent=2) + "\n")
        return
    out.write(f"run {run}: committed iteration {state.iteration if state else 'none'}\n")
    for table, cols in views.items():
        meanings = {c.name: c.meaning for c in (TABLES.get(table) or SIDE_TABLES[table])}
        if table in TABLES:
            meanings[PARTITION_COLUMN] = "the iteration that committed the row (partition)"
        out.write(f"\n{table}\n")
        name_w = max(len(c) for c, _ in cols)
        type_w = max(len(t) for _, t in cols)
        for name, typ in cols:
            out.write(f"  {name.ljust(name_w)}  {typ.ljust(type_w)}  {meanings.get(name, '')}".rstrip() + "\n")


def run_sql(
    query: str | None,
    run: Path,
    fmt: OutputFormat = OutputFormat.table,
    output: Path | None = None,
    schema: bool = False,
    max_width: int = 60,
    *,
    out: TextIO | None = None,
    err: TextIO | None = None,
) -> int:
    """Run `query` (or list the schema) over the run folder `run`; return the exit status.

    0 done; 1 DuckDB refused the query (its error on `err`); 2 the run folder is missing or of another schema.
    Raises UsageError for contradictory options.
    """
    out, err = out or sys.stdout, err or sys.stderr
    if not schema and not query:
        raise UsageError("give a query, or --schema")
    if fmt is OutputFormat.parquet and output is None:
        raise UsageError("--format parquet writes binary: give --output FILE")
    import duckdb

    from azr_core.store.layout import StoreError
    from azr_core.store.schema import SchemaVersionError
    from azr_core.store.views import connect

    try:
        con = connect(run)
    except (StoreError, SchemaVersionError) as exc:
        err.write(f"error: {exc}\n")
        return 2
    if schema:
        _print_schema(con, run, fmt, out)
        return 0
    try:
        rel = con.sql(query)
        if rel is None:  # a statement without a result (SET, CREATE VIEW, ...)
            return 0
        if output is not None and fmt is not OutputFormat.table:
            _export(con, rel, fmt, output)
            return 0
        columns, rows = list(rel.columns), rel.fetchall()
    except duckdb.Error as exc:
        err.write(f"error: {exc}\n{_corrupt_file_hint(str(exc), run)}")
        return 1
    stream = open(output, "w", encoding="utf-8", newline="") if output else out  # noqa: SIM115
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
    return 0


def _corrupt_file_hint(message: str, run: Path) -> str:
    """The fix for a damaged Parquet file of the run folder (DuckDB names the file but not what to do)."""
    import re

    if not re.search(r"magic bytes|not a parquet file|corrupt|invalid parquet|could not read", message, re.I):
        return ""
    found = re.search(r"'([^']+\.parquet)'", message)
    where = found.group(1) if found else "a Parquet file"
    return (
        f"hint: {where} (run folder {run}) is damaged (files are only ever renamed into place whole, so this came from "
        "outside azr). Restore it from a backup, or move it out of the run folder to query the rest (its rows are "
        "then missing); a query filtered to other iterations (WHERE iteration <> N) still works.\n"
    )


def fast_parser() -> argparse.ArgumentParser:
    """The options of `azr sql`, as argparse (the typer command declares the same; a test compares them)."""
    ap = argparse.ArgumentParser(prog="azr sql", description="Query a run's tables with DuckDB.")
    ap.add_argument("query", nargs="?", default=None, help=QUERY_HELP)
    ap.add_argument(
        "--run", "-r", type=Path, default=Path(os.environ.get(RUN_ENVVAR) or DEFAULT_RUN_DIR), help=RUN_HELP
    )
    ap.add_argument(
        "--format", "-f", dest="fmt", type=OutputFormat, choices=list(OutputFormat), default=OutputFormat.table,
        help=FORMAT_HELP,
    )  # fmt: skip
    ap.add_argument("--output", "-o", type=Path, default=None, help=OUTPUT_HELP)
    ap.add_argument("--schema", action="store_true", help=SCHEMA_HELP)
    ap.add_argument("--max-width", type=int, default=60, help=MAX_WIDTH_HELP)
    return ap


def fast_main(argv: list[str], *, out: TextIO | None = None, err: TextIO | None = None) -> int:
    """`azr sql ARGS` without typer; returns the exit status (argparse exits 2 itself on unknown options)."""
    ns = fast_parser().parse_args(argv)
    try:
        return run_sql(ns.query, ns.run, ns.fmt, ns.output, ns.schema, ns.max_width, out=out, err=err)
    except UsageError as exc:
        (err or sys.stderr).write(f"Usage: azr sql [OPTIONS] [QUERY]\nerror: {exc}\n")
        return 2
