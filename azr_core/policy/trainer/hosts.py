"""A worker group over several hosts: the hostfile's nodes, and the launcher command line(s) that start the ranks on
them (DeepSpeed's own pdsh/ssh launch, or one launcher per node through `trainer.node_launch`, in DeepSpeed's
--no_ssh mode). See docs/multi-host.md."""

from __future__ import annotations

import shlex
import sys
from collections.abc import Sequence
from pathlib import Path

from azr_core.policy.config import TrainerConfig
from azr_core.policy.trainer.records import free_port


def hostfile_nodes(path: str | Path) -> list[tuple[str, int]]:
    """A DeepSpeed hostfile's nodes in order: (host, slots) per `HOST slots=N` line (comments and blanks skipped)."""
    nodes = []
    for line in Path(path).read_text().splitlines():
        line = line.split("#")[0].strip()
        if line:
            host, _, rest = line.partition(" ")
            nodes.append((host, int(rest.split("slots=")[1].split()[0]) if "slots=" in rest else 1))
    if not nodes:
        raise ValueError(f"the hostfile {path} names no host: one `HOST slots=N` line per node")
    return nodes


def launcher_commands(
    t: TrainerConfig, connect: str, token_file: Path, launcher_args: Sequence[str] = ()
) -> list[list[str]]:
    """The `deepspeed` launcher command lines (run with this interpreter, so the same venv): one, or one per node
    through `trainer.node_launch` (--no_ssh, each with its --node_rank). `connect` is the driver's HOST:PORT.

    They name the file holding the channel's token, never the token: a command line is readable by every user
    (`ps`) and the launcher prints it into workers.log. On several nodes the file must be on storage they share (it
    sits beside the worker log, in the run folder)."""
    master_port = t.master_port or free_port()
    base = [sys.executable, "-m", "deepspeed.launcher.runner", "--master_port", str(master_port)]
    tail = [*launcher_args, "--module", "azr_core.policy.trainer.workers", "--connect", connect,
            "--token-file", str(token_file)]  # fmt: skip
    if t.hostfile is None:
        if t.node_launch is not None:
            raise ValueError("trainer.node_launch needs trainer.hostfile: the nodes to launch on")
        return [[*base, "--num_gpus", str(t.num_workers), *tail]]
    if t.node_launch is None:
        return [[*base, "--hostfile", str(t.hostfile), *(["--master_addr", t.master_addr] if t.master_addr else []),
                 *tail]]  # fmt: skip
    nodes = hostfile_nodes(t.hostfile)
    addr = ["--master_addr", t.master_addr or nodes[0][0]]
    return [
        [*shlex.split(t.node_launch.format(host=host, node=k + 1, node_rank=k)), *base,
         "--hostfile", str(t.hostfile), "--no_ssh", "--node_rank", str(k), *addr, *tail]
        for k, (host, _slots) in enumerate(nodes)
    ]  # fmt: skip
