"""Atomic file writes: a temp name in the same folder, fsync, rename, fsync the folder.

A reader (or a crash) sees either the old file or the whole new one, never a torn one. Temp names start with `~` and
end in `.tmp`, so no glob of the store (`**/*.parquet`) can ever match them: DuckDB's glob matches dot-files such as
`.x.parquet`, which a half-written file must never be.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable
from pathlib import Path

TEMP_PREFIX = "~"
TEMP_SUFFIX = ".tmp"


def temp_path_for(path: Path) -> Path:
    """A unique temp path beside `path` that no `*.parquet` / `*.json` glob matches."""
    return path.with_name(f"{TEMP_PREFIX}{path.name}.{uuid.uuid4().hex[:12]}{TEMP_SUFFIX}")


def is_temp(path: Path) -> bool:
    """True for a leftover of an interrupted atomic write."""
    return path.name.startswith(TEMP_PREFIX) and path.name.endswith(TEMP_SUFFIX)


def fsync_dir(path: Path) -> None:
    """Make a rename or unlink in `path` durable (POSIX needs the directory itself synced)."""
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write(path: Path, write: Callable[[Path], None], *, fsync: bool = True) -> Path:
    """Call `write(temp_path)` to produce the file, then move it into place atomically.

    `write` must create the file at the path it is given. On any error the temp file is removed and the error
    re-raised; `path` is untouched.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_path_for(path)
    try:
        write(tmp)
        if fsync:
            fd = os.open(tmp, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    if fsync:
        fsync_dir(path.parent)
    return path


def atomic_write_bytes(path: Path, data: bytes, *, fsync: bool = True) -> Path:
    """Write `data` to `path` atomically."""
    return atomic_write(path, lambda tmp: tmp.write_bytes(data), fsync=fsync)


def atomic_write_text(path: Path, text: str, *, fsync: bool = True) -> Path:
    """Write UTF-8 `text` to `path` atomically."""
    return atomic_write_bytes(path, text.encode("utf-8"), fsync=fsync)
