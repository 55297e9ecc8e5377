"""The run folder as a crash-safe store: one writer, any number of readers, commit per iteration.

Layout: see `azr_core.store.layout`. Commit protocol: every Parquet file is written atomically (temp name, fsync,
rename); COMMITTED is rewritten atomically *last*. Readers filter on `iteration <= COMMITTED.iteration`, so they never
see half an iteration. A writer that opens the folder (a resume) first deletes every partition above the committed
iteration and every temp file: a crash at any instant loses nothing committed, and a retried iteration duplicates
nothing.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import socket
import uuid
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import pyarrow as pa
import pyarrow.parquet as pq

from azr_core.common.atomic import atomic_write, atomic_write_text, fsync_dir, is_temp
from azr_core.store.compaction import (
    SEGMENTS_DIR,
    Compaction,
    compact,
    delete_retired,
    maybe_compact,
    remove_orphan_segments,
)
from azr_core.store.layout import (
    COMMITTED_NAME,
    LOCK_NAME,
    RESOLVED_CONFIG_NAME,
    SCHEMA_NAME,
    TABLES_DIR,
    CommitState,
    StoreError,
    check_schema,
    partition_dir,
    partition_iteration,
    read_commit,
)
from azr_core.store.schema import BLOOM_COLUMNS, SCHEMA_VERSION, SORTED_TABLES, TABLES, to_arrow

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping, Sequence

    from azr_core.store.config import StoreConfig


class IterationWriter:
    """Writes the rows of one iteration; nothing is visible to readers until `commit`."""

    def __init__(self, store: RunStore, iteration: int) -> None:
        self.store = store
        self.iteration = iteration
        self._dirs: set[Path] = set()
        self._closed = False
        self.files: list[Path] = []

    def write(self, table: str, rows: pa.Table | Iterable[Mapping[str, Any]]) -> Path | None:
        """Append rows to `table` for this iteration as one new Parquet file (atomic). No rows, no file."""
        if self._closed:
            raise StoreError(f"iteration {self.iteration} is already committed or aborted")
        data = to_arrow(table, rows)
        if data.num_rows == 0:
            return None
        folder = partition_dir(self.store.run_dir, table, self.iteration)
        new_dir = not folder.exists()
        path = folder / f"part-{len(self.files):05d}-{uuid.uuid4().hex[:8]}.parquet"
        cfg = self.store.config
        codec = cfg.compression if cfg.compression != "none" else None
        # Bloom filters on the id columns let a lookup of one task skip every file that does not hold it; rows sorted
        # by task id in small row groups let it skip the rest of a file that does (min/max statistics).
        blooms = {c: {"ndv": max(data.num_rows, 1), "fpp": 0.01} for c in BLOOM_COLUMNS[table]} if cfg.bloom else None
        if cfg.sort_by_task and table in SORTED_TABLES:
            data = data.sort_by([("task_id", "ascending")])

        def _write(tmp: Path) -> None:
            pq.write_table(
                data,
                tmp,
                compression=codec,
                compression_level=cfg.compression_level if codec else None,
                row_group_size=cfg.row_group_size,
                bloom_filter_options=blooms,
            )

        atomic_write(path, _write, fsync=cfg.fsync)
        if new_dir:
            self._dirs.add(folder.parent)  # the table folder gained an entry: sync it before the commit
        self.files.append(path)
        return path

    def commit(self, checkpoint_id: str | None = None) -> CommitState:
        """Make this iteration visible: sync the new folders, then rewrite COMMITTED (the single commit point)."""
        if self._closed:
            raise StoreError(f"iteration {self.iteration} is already committed or aborted")
        if self.store.config.fsync:
            for d in sorted(self._dirs):
                fsync_dir(d)
        state = CommitState(self.iteration, checkpoint_id, datetime.now(UTC).isoformat())
        atomic_write_text(self.store.run_dir / COMMITTED_NAME, json.dumps(asdict(state)), fsync=self.store.config.fsync)
        self.store.committed = state
        self._closed = True
        return state

    def abort(self) -> None:
        """Drop everything written for this iteration."""
        if not self._closed:
            self.store._remove_partitions(self.iteration)
            self._closed = True

    def __enter__(self) -> IterationWriter:
        return self

    def __exit__(self, exc_type: object, *_: object) -> None:
        # Leaving the block without commit (an error, or a forgotten commit) must not leave rows to resurface.
        if not self._closed:
            self.abort()


class RunStore:
    """The single writer of a run folder. Opening it takes an exclusive lock and removes uncommitted leftovers."""

    def __init__(self, run_dir: str | Path, config: StoreConfig | None = None) -> None:
        from azr_core.store.config import StoreConfig

        self.run_dir = Path(run_dir)
        self.config = config or StoreConfig()
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self._lock_fd = os.open(self.run_dir / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o644)
        # flock, not a pid file: the kernel drops it when its holder dies (kill -9 included), so a lock of a dead
        # process can never block a resume. The holder's identity is written into the file for the error below.
        try:
            fcntl.flock(self._lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _read_holder(self._lock_fd)
            os.close(self._lock_fd)
            raise StoreError(
                f"{self.run_dir} is being written by another process ({holder}; lock {self.run_dir / LOCK_NAME}): "
                "wait for it to finish or stop it; the lock frees itself the moment that process exits"
            ) from None
        _write_holder(self._lock_fd)
        try:
            if (self.run_dir / SCHEMA_NAME).exists():
                older = check_schema(self.run_dir)
                if older < SCHEMA_VERSION:  # it gets this version's columns (schema.py); readers unite by name
                    marker = {"schema_version": SCHEMA_VERSION, "upgraded_from": older}
                    atomic_write_text(self.run_dir / SCHEMA_NAME, json.dumps(marker))
            else:
                atomic_write_text(self.run_dir / SCHEMA_NAME, json.dumps({"schema_version": SCHEMA_VERSION}))
            self.committed: CommitState | None = read_commit(self.run_dir)
            self.removed_on_open = self.recover()
        except BaseException:
            self.close()
            raise

    @property
    def last_iteration(self) -> int:
        """The last committed iteration, -1 when none."""
        return self.committed.iteration if self.committed else -1

    def recover(self) -> list[Path]:
        """Delete partitions above the committed iteration, leftover temp files, segments of a compaction that never
        reached its manifest, and retired folders past their grace period; return what was removed."""
        removed: list[Path] = []
        root = self.run_dir / TABLES_DIR
        for table in TABLES:
            tdir = root / table
            if not tdir.is_dir():
                continue
            for part in tdir.iterdir():
                it = partition_iteration(part) if part.is_dir() else None
                if it is not None and it > self.last_iteration:
                    shutil.rmtree(part)
                    removed.append(part)
        for path in [*self.run_dir.glob("*"), *root.glob("*/*/*"), *(self.run_dir / SEGMENTS_DIR).glob("*/*")]:
            if is_temp(path):
                path.unlink(missing_ok=True)
                removed.append(path)
        removed += remove_orphan_segments(self)
        delete_retired(self)
        return removed

    def compact(self, upto: int | None = None) -> Compaction:
        """Merge committed iterations into segment files now (see `azr_core.store.compaction`)."""
        return compact(self, upto)

    def maybe_compact(self) -> Compaction | None:
        """Compact when `config.compact_every` iterations have been committed since the last compaction."""
        return maybe_compact(self)

    def begin(self, iteration: int | None = None) -> IterationWriter:
        """Start writing the next iteration (the one after the last committed)."""
        expected = self.last_iteration + 1
        if iteration is None:
            iteration = expected
        if iteration != expected:
            raise StoreError(f"cannot write iteration {iteration}: the next one is {expected} (commits are in order)")
        self._remove_partitions(iteration)  # leftovers of an aborted attempt in this process
        return IterationWriter(self, iteration)

    def _remove_partitions(self, iteration: int) -> None:
        for table in TABLES:
            shutil.rmtree(partition_dir(self.run_dir, table, iteration), ignore_errors=True)

    def close(self) -> None:
        """Release the writer lock."""
        if self._lock_fd >= 0:
            fcntl.flock(self._lock_fd, fcntl.LOCK_UN)
            os.close(self._lock_fd)
            self._lock_fd = -1

    def __enter__(self) -> RunStore:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()


SESSION_CONFIGS = "configs"


class RunConfig(Protocol):
    """What the store reads of a run's config: its store settings and its YAML text (the run config, AZRConfig, is
    one). The store knows nothing else of it."""

    @property
    def store(self) -> StoreConfig: ...

    def to_yaml(self) -> str: ...


def save_session_config(config: RunConfig, run_dir: str | Path, *, fsync: bool = True) -> Path:
    """Keep the run's config history: `config.yaml` is the first resolved config (written once, never replaced) and
    `configs/session-NNNN-<UTC time>.yaml` each session's, in order. Returns this session's file.

    A resumed run may change settings (more iterations, another budget); the history shows what each session ran
    with, and the first file what the run began as.
    """
    run_dir = Path(run_dir)
    text = config.to_yaml()
    if not (run_dir / RESOLVED_CONFIG_NAME).exists():
        atomic_write_text(run_dir / RESOLVED_CONFIG_NAME, text, fsync=fsync)
    folder = run_dir / SESSION_CONFIGS
    folder.mkdir(exist_ok=True)
    numbers = [int(p.name.split("-")[1]) for p in folder.glob("session-*-*.yaml") if p.name.split("-")[1].isdigit()]
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    return atomic_write_text(folder / f"session-{max(numbers, default=0) + 1:04d}-{stamp}.yaml", text, fsync=fsync)


def _write_holder(fd: int) -> None:
    info = {"pid": os.getpid(), "host": socket.gethostname(), "since": datetime.now(UTC).isoformat(timespec="seconds")}
    os.ftruncate(fd, 0)
    os.pwrite(fd, json.dumps(info).encode(), 0)


def _read_holder(fd: int) -> str:
    try:
        info = json.loads(os.pread(fd, 4096, 0) or b"{}")
        return f"pid {info['pid']} on {info['host']} since {info['since']}"
    except (OSError, ValueError, KeyError, TypeError):
        return "holder unknown"


def open_run(
    run_dir: str | Path, config: RunConfig | None = None, seed_rows: Sequence[Mapping[str, Any]] = ()
) -> RunStore:
    """Open (or create) a run folder for writing: save the resolved config, recover, commit the seed iteration.

    Iteration 0 holds `seed_rows`, rows of the `tasks` table (the zero triplets of the run's task types:
    `azr_core.algo.buffers.task_to_row`), and a `seed` row in `iterations`; it is committed once, when the folder is
    new, so a resumed run finds its buffers seeded.
    """
    store = RunStore(run_dir, config.store if config else None)
    try:
        if config is not None:
            save_session_config(config, store.run_dir, fsync=store.config.fsync)
        if store.committed is None:
            now = datetime.now(UTC)
            seed_row = {"stage": "seed", "step": 0, "started_at": now, "finished_at": now, "wall_s": 0.0,
                        "metrics": {"tasks_added": float(len(seed_rows))}}  # fmt: skip
            with store.begin(0) as w:
                w.write("tasks", list(seed_rows))
                w.write("iterations", [seed_row])
                w.commit()
    except BaseException:
        store.close()
        raise
    return store
