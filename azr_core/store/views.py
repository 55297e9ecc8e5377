"""Reading a run: DuckDB views named after the tables, over the committed iterations only.

No database file: each view reads, with `read_parquet`, the compacted segment files that COMPACTED lists (iterations
up to its `upto`; see `azr_core.store.compaction`) and the per-iteration files of the iterations after `upto` up to
N, N read from COMMITTED when the connection is made. Both lists are taken at connection time, so a reader never
sees, nor trips over, an iteration being written, and never counts a merged iteration twice. Any number of readers
can run while the trainer writes; a reader sees the run as of its connection. Needs no pyarrow.
"""

from __future__ import annotations

from pathlib import Path

import duckdb

from azr_core.store.compaction import Compaction, read_compaction
from azr_core.store.layout import (
    TABLES_DIR,
    check_schema,
    mixed_schema,
    partition_iteration,
    read_commit,
    read_partitions_sql,
    sql_str,
)
from azr_core.store.schema import PARTITION_COLUMN, SIDE_TABLES, TABLES


def _view_sql(run_dir: Path, table: str, committed: int, compaction: Compaction, by_name: bool = True) -> str:
    # The first part is a typed empty row set with every column of the schema: united by name with the files, it
    # gives the view all of today's columns in schema order, and a column that older files lack (written before it
    # existed, see schema.py's versions) reads as null instead of missing from the view or failing the query.
    cols = ", ".join(f"CAST(NULL AS {c.sql_type}) AS {c.name}" for c in TABLES[table])
    parts = [f"SELECT {cols}, CAST(NULL AS INTEGER) AS {PARTITION_COLUMN} WHERE false"]
    segments = [str(run_dir / p) for p in compaction.segments.get(table, [])]
    if committed >= 0 and segments:
        files = ", ".join(sql_str(f) for f in segments)
        parts.append(
            f"SELECT * FROM read_parquet([{files}]{', union_by_name = true' if by_name else ''}) "
            f"WHERE {PARTITION_COLUMN} <= {committed}"
        )
    folder = run_dir / TABLES_DIR / table
    # The live files are listed now, not globbed at query time: folders merged into segments (awaiting deletion)
    # and iterations above the commit are never read, and a committed iteration's files never change.
    live = []
    for f in sorted(folder.glob(f"{PARTITION_COLUMN}=*/*.parquet")):
        it = partition_iteration(f.parent)
        if it is not None and compaction.upto < it <= committed:
            live.append(f)
    if live:
        parts.append(f"SELECT * FROM {read_partitions_sql(live, by_name=by_name)}")
    # (No file yet: the empty part alone, so queries bind and return no rows instead of failing on an empty glob.)
    return f"CREATE OR REPLACE VIEW {table} AS " + " UNION ALL BY NAME ".join(parts)


def _side_view_sql(run_dir: Path, table: str) -> str:
    # Side tables (evals) are flat, and each file is complete once renamed into place: all of them are read.
    files = sorted((run_dir / table).glob("part-*.parquet"))
    if files:
        listed = ", ".join(sql_str(str(f)) for f in files)
        return f"CREATE OR REPLACE VIEW {table} AS SELECT * FROM read_parquet([{listed}], union_by_name = true)"
    cols = ", ".join(f"CAST(NULL AS {c.sql_type}) AS {c.name}" for c in SIDE_TABLES[table])
    return f"CREATE OR REPLACE VIEW {table} AS SELECT {cols} WHERE false"


def connect(run_dir: str | Path, con: duckdb.DuckDBPyConnection | None = None) -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB connection with one view per table (proposals, tasks, rollouts, iterations, evals).

    Raises StoreError for a folder that is not a run, SchemaVersionError for one written by another schema version.
    """
    run_dir = Path(run_dir).resolve()
    check_schema(run_dir)
    state = read_commit(run_dir)
    committed = state.iteration if state else -1
    compaction = read_compaction(run_dir)  # read after COMMITTED: segments are filtered to <= committed anyway
    con = con or duckdb.connect()
    # Committed files never change, so their footers can be cached: a query that scans a table twice (a lineage
    # query reads `tasks` for the task and again for its references) opens each of its files once.
    con.execute("SET parquet_metadata_cache = true")
    by_name = mixed_schema(run_dir)  # only a folder with files of an older schema pays for uniting by name
    for table in TABLES:
        con.execute(_view_sql(run_dir, table, committed, compaction, by_name))
    for table in SIDE_TABLES:
        con.execute(_side_view_sql(run_dir, table))
    return con


def describe(con: duckdb.DuckDBPyConnection) -> dict[str, list[tuple[str, str]]]:
    """(column, DuckDB type) of every view, in table order."""
    return {
        table: [(name, str(typ)) for name, typ, *_ in con.execute(f"DESCRIBE {table}").fetchall()]
        for table in [*TABLES, *SIDE_TABLES]
    }
