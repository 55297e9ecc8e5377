"""DeepSpeed's CPU all-reduce workspace in /dev/shm, released once every rank has mapped it.

On a CPU accelerator, `deepspeed.init_distributed` makes each rank create a shared-memory file
(`/dev/shm/deepspeed_allreduce_buffer_<uid>_<MASTER_ADDR>_<MASTER_PORT>_<rank>`, ~66 MiB) that its peers map, and
never removes it: /dev/shm is RAM, so every worker group that ever ran kept 66 MiB per rank until reboot (121 such
files, 7.8 GiB, on one development machine after a day of tests and runs). Once every rank has finished its
`init_distributed` (a barrier), each rank unlinks its own file: the mappings stay valid, and the memory is freed when
the last process that maps it exits, killed or not.
"""

from __future__ import annotations

import os
from pathlib import Path

SHM_DIR = Path("/dev/shm")
SHM_PREFIX = "deepspeed_allreduce_buffer"


def workspace_path(rank: int, *, addr: str | None = None, port: str | None = None) -> Path:
    """This rank's workspace file, named as DeepSpeed names it (from MASTER_ADDR and MASTER_PORT)."""
    addr = addr if addr is not None else os.environ.get("MASTER_ADDR", "")
    port = port if port is not None else os.environ.get("MASTER_PORT", "")
    return SHM_DIR / f"{SHM_PREFIX}_{os.getuid()}_{addr}_{port}_{rank}"


def release_workspace() -> bool:
    """After `deepspeed.init_distributed`: wait until every rank has mapped its peers' workspaces, then unlink this
    rank's file. True when a file was removed. A no-op where DeepSpeed made none (CUDA, no shm op)."""
    import torch.distributed as dist

    if not dist.is_available() or not dist.is_initialized():
        return False
    rank = dist.get_rank()
    path = workspace_path(rank)
    if dist.get_world_size() > 1:
        # A peer still opening our file would spin on ENOENT forever; DeepSpeed's shm_initialize returns only once
        # a rank has mapped every peer's file, so after this barrier nobody opens one again.
        dist.barrier()
    try:
        path.unlink()
    except FileNotFoundError:
        return False
    return True
