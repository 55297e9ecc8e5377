"""Reading a run: DuckDB views named after the tables, over the committed iterations only.

No database file: each view is `read_parquet(glob, hive_partitioning = true)` filtered on `iteration <= N`, N read
from COMMITTED when the connection is made. DuckDB prunes the partitions above N by folder name without opening
them, so a reader never sees, nor trips over, an iteration being written. Any number of readers can run while the
trainer writes; a reader sees the run as of its connection. Needs no pyarrow.
"""

from __future__ import annotations

from pathlib import Path

import duckdb

from azr_core.store.layout import TABLES_DIR, check_schema, read_commit
from azr_core.store.schema import PARTITION_COLUMN, TABLES


def _sql_str(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _view_sql(run_dir: Path, table: str, committed: int) -> str:
    folder = run_dir / TABLES_DIR / table
    pattern = f"{PARTITION_COLUMN}=*/*.parquet"
    if committed >= 0 and any(folder.glob(pattern)):
        source = (
            f"read_parquet({_sql_str(str(folder / pattern))}, hive_partitioning = true, "
            f"hive_types = {{'{PARTITION_COLUMN}': INTEGER}})"
        )
        return f"CREATE OR REPLACE VIEW {table} AS SELECT * FROM {source} WHERE {PARTITION_COLUMN} <= {committed}"
    # No file yet: a typed empty view, so queries bind (and return no rows) instead of failing on an empty glob.
    cols = ", ".join(f"CAST(NULL AS {c.sql_type}) AS {c.name}" for c in TABLES[table])
    return f"CREATE OR REPLACE VIEW {table} AS SELECT {cols}, CAST(NULL AS INTEGER) AS {PARTITION_COLUMN} WHERE false"


def connect(run_dir: str | Path, con: duckdb.DuckDBPyConnection | None = None) -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB connection with one view per table (proposals, tasks, rollouts, iterations).

    Raises StoreError for a folder that is not a run, SchemaVersionError for one written by another schema version.
    """
    run_dir = Path(run_dir).resolve()
    check_schema(run_dir)
    state = read_commit(run_dir)
    committed = state.iteration if state else -1
    con = con or duckdb.connect()
    # Committed files never change, so their footers can be cached: a query that scans a table twice (a lineage
    # query reads `tasks` for the task and again for its references) opens each of its files once.
    con.execute("SET parquet_metadata_cache = true")
    for table in TABLES:
        con.execute(_view_sql(run_dir, table, committed))
    return con


def describe(con: duckdb.DuckDBPyConnection) -> dict[str, list[tuple[str, str]]]:
    """(column, DuckDB type) of every view, in table order."""
    return {
        table: [(name, str(typ)) for name, typ, *_ in con.execute(f"DESCRIBE {table}").fetchall()] for table in TABLES
    }
