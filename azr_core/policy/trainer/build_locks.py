"""Stale torch extension build locks: found, and cleared when their owner is gone.

DeepSpeed's CPU accelerator loads a C++ helper (`deepspeed_shm_comm`) through torch's JIT extension loader on every
worker start. The loader takes `<extensions root>/<py>_cpu/<name>/lock` (torch's FileBaton: a file created with
O_EXCL, its descriptor held open, removed on release) even when the helper is already built. A worker killed while
holding it leaves the file behind, and every later start waits on it forever, silently. The file records no owner,
but its owner holds it open: a lock file that no process has open, twice over a second, with the same inode, is
stale and removed. (A live holder has it open from creation to release, except for the instant between its close and
its remove; the double check spans that instant.)
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path

log = logging.getLogger(__name__)


def extensions_root() -> Path:
    """Where torch builds JIT extensions: $TORCH_EXTENSIONS_DIR, else torch's default (~/.cache/torch_extensions/)."""
    if os.environ.get("TORCH_EXTENSIONS_DIR"):
        return Path(os.environ["TORCH_EXTENSIONS_DIR"])
    from torch.utils.cpp_extension import get_default_build_root

    return Path(get_default_build_root())


def build_locks(root: Path | None = None) -> list[Path]:
    """Lock files present under the extensions root (`<root>/<name>/lock` or `<root>/<py>_<dev>/<name>/lock`)."""
    root = root or extensions_root()
    if not root.is_dir():
        return []
    return sorted({*root.glob("*/lock"), *root.glob("*/*/lock")})


def holders(path: Path) -> list[int]:
    """Pids of the processes that have `path` open (those this user may inspect: the cache is per user)."""
    try:
        target = os.stat(path)
    except FileNotFoundError:
        return []
    found = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            for fd in os.scandir(f"/proc/{entry.name}/fd"):
                try:
                    st = os.stat(fd.path)
                except OSError:
                    continue
                if (st.st_dev, st.st_ino) == (target.st_dev, target.st_ino):
                    found.append(int(entry.name))
                    break
        except OSError:  # gone meanwhile, or not ours to inspect
            continue
    return found


def clear_stale_build_locks(root: Path | None = None, *, settle_s: float = 1.0) -> list[Path]:
    """Remove lock files under the extensions root that no process holds; return the paths removed."""
    candidates = {}
    for path in build_locks(root):
        try:
            ino = path.stat().st_ino
        except FileNotFoundError:
            continue
        if not holders(path):
            candidates[path] = ino
    if not candidates:
        return []
    time.sleep(settle_s)
    removed = []
    for path, ino in candidates.items():
        try:
            if path.stat().st_ino != ino or holders(path):
                continue  # released and taken again meanwhile, or held: not stale
            path.unlink()
        except FileNotFoundError:
            continue
        log.warning("removed a stale torch extension build lock %s (no process held it: its owner was killed)", path)
        removed.append(path)
    return removed
