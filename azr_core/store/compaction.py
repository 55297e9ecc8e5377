"""Compaction: many per-iteration Parquet files become one segment file per table, so history queries stay fast.

A long run writes a folder per iteration and table; by iteration 500 a query over `rollouts` opens 500 files, and
the per-file cost dominates it (bench/bench_store.py). The writer therefore merges every `compact_every` committed
iterations into one segment per table:

    run_dir/segments/<table>/seg-<first>-<last>-<id>.parquet    rows of iterations first..last, `iteration` a column
    run_dir/COMPACTED                                           {"upto": N, "segments": {...}, "retired": [...]}

Protocol (crash-safe at every instant, like the iteration commit): segment files are written atomically, then
COMPACTED is rewritten atomically (the commit point), then the merged iteration folders are *retired*: readers skip
every folder at or below `upto` (views read segments for those iterations), and the folders are deleted only
`retire_grace_s` later, so a reader that connected before the compaction still finds its files. A crash before the
manifest leaves an orphan segment that the next open deletes; a crash after it leaves retired folders that no reader
counts twice and that a later open or compaction deletes.
"""

from __future__ import annotations

import json
import shutil
import time
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from azr_core.store.layout import partition_dir, read_partitions_sql, sql_str
from azr_core.store.schema import PARTITION_COLUMN, TABLES

if TYPE_CHECKING:
    from azr_core.store.run import RunStore

COMPACTED_NAME = "COMPACTED"
SEGMENTS_DIR = "segments"


@dataclass
class Retired:
    """Iteration folders first..last, merged into segments at `at` (epoch seconds), awaiting deletion."""

    first: int
    last: int
    at: float


@dataclass
class Compaction:
    """What COMPACTED says: iterations <= upto live in the listed segment files (paths relative to the run)."""

    upto: int = -1
    segments: dict[str, list[str]] = field(default_factory=dict)
    retired: list[Retired] = field(default_factory=list)

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=1)


def read_compaction(run_dir: str | Path) -> Compaction:
    """The compaction state of a run folder (empty when it was never compacted)."""
    from azr_core.store.layout import StoreError

    path = Path(run_dir) / COMPACTED_NAME
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        return Compaction(
            upto=int(data["upto"]),
            segments={t: list(v) for t, v in data.get("segments", {}).items()},
            retired=[Retired(**r) for r in data.get("retired", [])],
        )
    except FileNotFoundError:
        return Compaction()
    except (ValueError, KeyError, TypeError) as exc:
        # Written atomically, so this is damage from outside: guessing which segments exist could double or drop rows.
        raise StoreError(
            f"{path} is unreadable ({exc!r}); it lists the compacted segment files, so the run cannot be read "
            "safely without it: restore it from a backup of the run folder"
        ) from None


def _write_manifest(store: RunStore, state: Compaction) -> None:
    from azr_core.common.atomic import atomic_write_text

    atomic_write_text(store.run_dir / COMPACTED_NAME, state.to_json(), fsync=store.config.fsync)


def _upgrade_schema(store: RunStore) -> None:
    """A version-1 folder becomes version 2 before its first segment exists: readers that would miss segments refuse
    it from then on instead of reading part of it."""
    from azr_core.common.atomic import atomic_write_text
    from azr_core.store.layout import SCHEMA_NAME, check_schema
    from azr_core.store.schema import SCHEMA_VERSION

    if check_schema(store.run_dir) != SCHEMA_VERSION:
        atomic_write_text(
            store.run_dir / SCHEMA_NAME, json.dumps({"schema_version": SCHEMA_VERSION}), fsync=store.config.fsync
        )


def _write_segment(store: RunStore, table: str, first: int, last: int) -> str | None:
    """Merge the table's folders of iterations first..last into one segment file; its relative path (None: no rows).

    DuckDB does the merge: rows sorted by task id (then iteration), so each row group covers a narrow id range. That
    is what makes the history queries fast: a lookup of one task skips almost every row group on min/max
    statistics, and grouping by task reads long runs of one id (a prototype on 10 M rollouts, unsorted against sorted
    segments: the 20-hardest-tasks query 783 -> 182 ms, the lineage lookup 577 -> 411 ms). The sort spills to disk
    beyond `compact_memory_mb`.
    """
    import duckdb

    from azr_core.common.atomic import atomic_write
    from azr_core.store.schema import SCHEMA_VERSION

    files = [
        f for it in range(first, last + 1) for f in sorted(partition_dir(store.run_dir, table, it).glob("*.parquet"))
    ]
    if not files:
        return None
    cfg = store.config
    rel = f"{SEGMENTS_DIR}/{table}/seg-{first:06d}-{last:06d}-{uuid.uuid4().hex[:8]}.parquet"
    path = store.run_dir / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    order = "task_id, " if "task_id" in {c.name for c in TABLES[table]} else ""
    codec = cfg.compression if cfg.compression != "none" else "uncompressed"
    level = f", COMPRESSION_LEVEL {cfg.compression_level}" if codec == "zstd" and cfg.compression_level else ""
    source = read_partitions_sql(files)
    spill = path.parent / f".duckdb-spill-{uuid.uuid4().hex[:8]}"

    def _write(tmp: Path) -> None:
        con = duckdb.connect()
        try:
            con.execute(f"SET memory_limit = '{cfg.compact_memory_mb}MB'")
            con.execute(f"SET temp_directory = {sql_str(str(spill))}")
            con.execute(
                f"COPY (SELECT * FROM {source} ORDER BY {order}{PARTITION_COLUMN}) TO {sql_str(str(tmp))} "
                f"(FORMAT parquet, COMPRESSION {codec}{level}, ROW_GROUP_SIZE {cfg.segment_row_group_size}, "
                f"KV_METADATA {{'azr.schema_version': '{SCHEMA_VERSION}', 'azr.table': '{table}'}})"
            )
        finally:
            con.close()
            shutil.rmtree(spill, ignore_errors=True)

    atomic_write(path, _write, fsync=cfg.fsync)
    return rel


def compact(store: RunStore, upto: int | None = None) -> Compaction:
    """Merge the committed iterations after the last compaction, up to `upto` (default: the last committed)."""
    from azr_core.common.atomic import fsync_dir
    from azr_core.store.layout import StoreError

    state = read_compaction(store.run_dir)
    target = store.last_iteration if upto is None else upto
    if target > store.last_iteration:
        raise StoreError(f"cannot compact up to iteration {target}: the last committed is {store.last_iteration}")
    first = state.upto + 1
    if target < first:
        return state
    _upgrade_schema(store)
    new = {table: _write_segment(store, table, first, target) for table in TABLES}
    if store.config.fsync:
        for table in TABLES:
            if new[table]:
                fsync_dir(store.run_dir / SEGMENTS_DIR / table)
    segments = {t: [*state.segments.get(t, []), *([new[t]] if new[t] else [])] for t in TABLES}
    retired = [*state.retired, Retired(first, target, time.time())]
    state = Compaction(upto=target, segments=segments, retired=retired)
    _write_manifest(store, state)  # the commit point of the compaction
    return delete_retired(store, state)


def delete_retired(store: RunStore, state: Compaction | None = None, *, now: float | None = None) -> Compaction:
    """Delete retired iteration folders whose grace period has passed; return the (rewritten) state."""
    state = state or read_compaction(store.run_dir)
    now = time.time() if now is None else now
    keep = [r for r in state.retired if now - r.at < store.config.retire_grace_s]
    if len(keep) == len(state.retired):
        return state
    for r in state.retired:
        if r in keep:
            continue
        for table in TABLES:
            for it in range(r.first, r.last + 1):
                shutil.rmtree(partition_dir(store.run_dir, table, it), ignore_errors=True)
    state = Compaction(upto=state.upto, segments=state.segments, retired=keep)
    _write_manifest(store, state)
    return state


def remove_orphan_segments(store: RunStore) -> list[Path]:
    """Segment files that no manifest lists (a compaction that crashed before its commit point): delete them."""
    state = read_compaction(store.run_dir)
    listed = {store.run_dir / p for paths in state.segments.values() for p in paths}
    removed = []
    for path in (store.run_dir / SEGMENTS_DIR).glob("*/*"):
        if path.is_file() and path not in listed:
            path.unlink()
            removed.append(path)
        elif path.is_dir() and path.name.startswith(".duckdb-spill-"):  # the sort's spill folder, after a crash
            shutil.rmtree(path, ignore_errors=True)
            removed.append(path)
    return removed


def maybe_compact(store: RunStore) -> Compaction | None:
    """Compact when `compact_every` committed iterations have piled up since the last compaction (0: never)."""
    every = store.config.compact_every
    if every <= 0:
        return None
    state = read_compaction(store.run_dir)
    if store.last_iteration - state.upto < every:
        return None
    return compact(store)
