"""Where things lie in a run folder, and the two small files that say what state it is in.

    run_dir/SCHEMA                               {"schema_version": 3}
    run_dir/COMMITTED                            {"iteration": N, "checkpoint_id": ..., "committed_at": ...}
    run_dir/config.yaml                          the first session's resolved config (never replaced)
    run_dir/configs/session-NNNN-<time>.yaml     each session's resolved config, in order
    run_dir/tables/<table>/iteration=N/part-*.parquet
    run_dir/COMPACTED                            segments and the iterations they hold (azr_core.store.compaction)
    run_dir/segments/<table>/seg-A-B-*.parquet   iterations A..B of a table, merged

Readers need only this module (no pyarrow), so `azr sql` starts fast.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from azr_core.store.schema import PARTITION_COLUMN, READABLE_SCHEMA_VERSIONS, SCHEMA_VERSION, SchemaVersionError

SCHEMA_NAME = "SCHEMA"
COMMITTED_NAME = "COMMITTED"
LOCK_NAME = "WRITER.lock"
TABLES_DIR = "tables"
RESOLVED_CONFIG_NAME = "config.yaml"  # the run's first resolved config (configs/ holds each session's)


class StoreError(RuntimeError):
    """The run folder cannot be used as asked (not a run folder, locked by another writer, out-of-order commit)."""


@dataclass(frozen=True)
class CommitState:
    """What COMMITTED says: the last iteration whose rows readers may see, and its checkpoint."""

    iteration: int
    checkpoint_id: str | None
    committed_at: str
    schema_version: int = SCHEMA_VERSION


def partition_dir(run_dir: Path, table: str, iteration: int) -> Path:
    """Folder of one table's rows for one iteration."""
    return Path(run_dir) / TABLES_DIR / table / f"{PARTITION_COLUMN}={iteration}"


def partition_iteration(folder: Path) -> int | None:
    """The iteration of a partition folder's name (`iteration=N`), None for any other name."""
    prefix = f"{PARTITION_COLUMN}="
    digits = folder.name[len(prefix) :]
    return int(digits) if folder.name.startswith(prefix) and digits.lstrip("-").isdigit() else None


def sql_str(text: str) -> str:
    """`text` as a DuckDB string literal."""
    return "'" + text.replace("'", "''") + "'"


def read_partitions_sql(files: list[Path], *, by_name: bool = True) -> str:
    """`read_parquet` over per-iteration files, with `iteration` (INTEGER) taken from their folder names. `by_name`:
    files are united by column name, so files written before a column was added (schema.py's versions) read with it
    null; that reads every file's footer when the query binds, so a reader passes it only for a folder that holds
    files of an older schema (`mixed_schema`): elsewhere a damaged file fails only the queries that read it."""
    listed = ", ".join(sql_str(str(f)) for f in files)
    hive = f"hive_partitioning = true, hive_types = {{'{PARTITION_COLUMN}': INTEGER}}"
    return f"read_parquet([{listed}], {hive}{', union_by_name = true' if by_name else ''})"


def read_commit(run_dir: str | Path) -> CommitState | None:
    """The committed state of a run folder, or None when nothing has been committed yet."""
    path = Path(run_dir) / COMMITTED_NAME
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    return CommitState(**{k: data[k] for k in CommitState.__dataclass_fields__ if k in data})


def mixed_schema(run_dir: str | Path) -> bool:
    """Whether the folder may hold files of an older schema version than this code writes: it was written with one,
    or a writer upgraded it (`upgraded_from` in SCHEMA_NAME)."""
    try:
        data = json.loads((Path(run_dir) / SCHEMA_NAME).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return True
    return int(data.get("schema_version", 0)) < SCHEMA_VERSION or data.get("upgraded_from") is not None


def check_schema(run_dir: str | Path) -> int:
    """Raise unless `run_dir` is a run folder this azr can read (READABLE_SCHEMA_VERSIONS); return its version."""
    run_dir = Path(run_dir)
    path = run_dir / SCHEMA_NAME
    if not path.is_file():
        if not run_dir.is_dir():
            raise StoreError(f"{run_dir} does not exist (no run folder there)")
        raise StoreError(f"{run_dir} is not an azr run folder: it has no {SCHEMA_NAME} file")
    try:
        version = int(json.loads(path.read_text(encoding="utf-8"))["schema_version"])
    except (ValueError, KeyError, TypeError) as exc:
        raise SchemaVersionError(f"{path} is unreadable ({exc!r}); cannot tell which schema wrote this run") from None
    if version not in READABLE_SCHEMA_VERSIONS:
        raise SchemaVersionError(
            f"{run_dir} was written with store schema version {version}, but this azr reads version "
            f"{SCHEMA_VERSION} (and older {', '.join(map(str, READABLE_SCHEMA_VERSIONS[:-1]))}); use an azr release "
            "that matches, or start a new run folder"
        )
    return version
