"""Checkpoints that resume exactly: HF weights, DeepSpeed optimiser + scheduler state, every rank's RNG state.

Layout of a checkpoint folder:
    hf/                      the model as a plain Hugging Face folder (safetensors + config + tokenizer)
    deepspeed/state/         DeepSpeed's own files: module, optimiser (ZeRO partitions per rank), lr scheduler
    rng/rank{r}.pt           python, numpy, torch (and CUDA) generator states of rank r
    trainer.json             step, world size, ZeRO stage
The folder is written under a temporary name and renamed once every rank is done, so a crash never leaves a
half checkpoint under the final name. Several nodes need the folder on a shared filesystem.
"""

from __future__ import annotations

import json
import os
import random
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from azr_core.policy.integrity import check_checkpoint

if TYPE_CHECKING:
    from azr_core.policy.trainer.engine import PolicyTrainer

_TAG = "state"


def _barrier() -> None:
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.barrier()


def rng_state() -> dict[str, Any]:
    """Every random generator a step may draw from."""
    state: dict[str, Any] = {"python": random.getstate(), "torch": torch.get_rng_state()}
    try:
        import numpy as np

        state["numpy"] = np.random.get_state()
    except ImportError:
        pass
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Inverse of `rng_state`."""
    random.setstate(state["python"])
    torch.set_rng_state(state["torch"])
    if "numpy" in state:
        import numpy as np

        np.random.set_state(state["numpy"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_checkpoint(trainer: PolicyTrainer, path: Path) -> Path:
    """Write the checkpoint of `trainer` to `path` (collective: every rank calls it)."""
    path = Path(path)
    tmp = path.parent / f".{path.name}.partial"
    if trainer.rank == 0:
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
    _barrier()
    trainer.engine.save_checkpoint(str(tmp / "deepspeed"), tag=_TAG)
    (tmp / "rng").mkdir(exist_ok=True)
    torch.save(rng_state(), tmp / "rng" / f"rank{trainer.rank}.pt")
    _save_hf(trainer, tmp / "hf")
    if trainer.rank == 0:
        meta = {"step": trainer.step, "world_size": trainer.world_size, "zero_stage": trainer.zero_stage}
        (tmp / "trainer.json").write_text(json.dumps(meta, indent=2) + "\n")
    _barrier()
    if trainer.rank == 0:
        if path.exists():
            shutil.rmtree(path)
        os.replace(tmp, path)
    _barrier()
    return path


def _save_hf(trainer: PolicyTrainer, folder: Path) -> None:
    # Under ZeRO-3 the full weights exist only after gathering; every rank must join the gather.
    state = {name: t.cpu() for name, t in trainer.named_weights()} if trainer.zero_stage == 3 else None
    if trainer.rank != 0:
        return
    module = trainer.module
    if state is None:
        module.save_pretrained(folder, safe_serialization=True)
    else:
        module.save_pretrained(folder, state_dict=state, safe_serialization=True)
    if trainer.tokenizer is not None:
        trainer.tokenizer.save_pretrained(folder)


def load_checkpoint(trainer: PolicyTrainer, path: Path) -> None:
    """Restore module, optimiser, scheduler and this rank's RNG state from `path` (collective)."""
    path = Path(path)
    meta = check_checkpoint(path)  # a damaged file: one clear error here, not a torch traceback in a worker
    if meta["world_size"] != trainer.world_size and trainer.zero_stage > 0:
        # ZeRO partitions the optimiser state by rank: a different world size cannot reuse the partitions.
        raise ValueError(
            f"checkpoint {path} was written by {meta['world_size']} ranks with ZeRO-{meta['zero_stage']}; "
            f"this trainer has {trainer.world_size}: resume with the same number of workers"
        )
    loaded, _ = trainer.engine.load_checkpoint(
        str(path / "deepspeed"), tag=_TAG, load_optimizer_states=True, load_lr_scheduler_states=True
    )
    if loaded is None:
        raise FileNotFoundError(f"no DeepSpeed state under {path / 'deepspeed'}")
    rng_file = path / "rng" / f"rank{trainer.rank}.pt"
    if rng_file.is_file():
        set_rng_state(torch.load(rng_file, weights_only=False))
    _barrier()
