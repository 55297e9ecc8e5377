"""Cheap integrity checks of a model folder and a trainer checkpoint, before anything loads them.

A truncated safetensors file or a half-written `config.json` otherwise surfaces deep inside transformers or DeepSpeed
(or, for a checkpoint, as a worker crash with a torch traceback). These checks read only headers and sizes, so they
cost milliseconds, and raise one error naming the file, the problem and the fix.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path


class CorruptFolderError(ValueError):
    """A model folder or checkpoint is missing a file or holds a damaged one; the message names it and the fix."""


def check_json_object(path: Path, fix: str) -> dict:
    """`path` parsed as a JSON object, or CorruptFolderError."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise CorruptFolderError(f"{path} is missing: {fix}") from None
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise CorruptFolderError(f"{path} is unreadable or not JSON ({exc}): {fix}") from None
    if not isinstance(data, dict):
        raise CorruptFolderError(f"{path} holds {type(data).__name__}, not a JSON object: {fix}")
    return data


def check_safetensors(path: Path, fix: str) -> None:
    """The header of a safetensors file parses and the file is as long as the header says (no truncation)."""
    try:
        size = path.stat().st_size
        with open(path, "rb") as fh:
            head = fh.read(8)
            if len(head) < 8:
                raise CorruptFolderError(f"{path} is {size} bytes, too short for a safetensors file: {fix}")
            (n,) = struct.unpack("<Q", head)
            if n > min(size - 8, 100 << 20):
                raise CorruptFolderError(f"{path} has a damaged safetensors header (length {n}): {fix}")
            header = json.loads(fh.read(n))
    except OSError as exc:
        raise CorruptFolderError(f"{path} is unreadable ({exc}): {fix}") from None
    except ValueError as exc:
        raise CorruptFolderError(f"{path} has a damaged safetensors header ({exc}): {fix}") from None
    ends = [t["data_offsets"][1] for k, t in header.items() if k != "__metadata__" and isinstance(t, dict)]
    need = 8 + n + max(ends, default=0)
    if size < need:
        raise CorruptFolderError(f"{path} is truncated ({size} of {need} bytes): {fix}")


def check_model_folder(folder: Path, fix: str) -> None:
    """An HF model folder: config.json is a JSON object and every safetensors file is whole."""
    check_json_object(folder / "config.json", fix)
    weights = sorted(folder.glob("*.safetensors"))
    if not weights and not any(folder.glob("*.bin")):
        raise CorruptFolderError(f"{folder} holds no weights (*.safetensors or *.bin): {fix}")
    for path in weights:
        check_safetensors(path, fix)


def check_checkpoint(path: Path) -> dict:
    """A trainer checkpoint (trainer.json, hf/, deepspeed/): whole and readable; returns trainer.json's content."""
    path = Path(path)
    fix = (
        "restore this checkpoint folder from a backup, or start a new run folder (the committed tables are "
        "untouched; a checkpoint is only written whole and renamed into place, so damage came from outside)"
    )
    if not path.is_dir():
        raise CorruptFolderError(f"checkpoint {path} does not exist: {fix}")
    meta = check_json_object(path / "trainer.json", fix)
    for key in ("step", "world_size", "zero_stage"):
        if not isinstance(meta.get(key), int) or isinstance(meta.get(key), bool):
            raise CorruptFolderError(f"{path / 'trainer.json'} lacks an integer {key!r}: {fix}")
    check_model_folder(path / "hf", fix)
    states = [p for p in (path / "deepspeed").rglob("*.pt") if p.is_file()]
    if not states:
        raise CorruptFolderError(f"{path / 'deepspeed'} holds no DeepSpeed state files: {fix}")
    for state in states:
        _check_torch_zip(state, fix)
    return meta


def _check_torch_zip(path: Path, fix: str) -> None:
    # torch.save writes a zip archive; its end-of-central-directory record sits in the last bytes, so a truncated
    # or overwritten file lacks it. zipfile reads only the directory, not the tensors.
    import zipfile

    try:
        with zipfile.ZipFile(path) as zf:
            zf.infolist()
    except (OSError, zipfile.BadZipFile) as exc:
        raise CorruptFolderError(f"{path} is damaged ({exc}): {fix}") from None
