"""The MLflow model registry outside any training run: aliases, and registered versions as local model folders.

set_alias("azr-policy", "champion", 7)
folder = load_model_folder("models:/azr-policy@champion")  # a folder AutoModelForCausalLM loads
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

from azr_core.tracking.store import mlflow_client, resolve_tracking_uri

if TYPE_CHECKING:
    from mlflow.entities.model_registry import ModelVersion


def set_alias(name: str, alias: str, version: int | str, *, tracking_uri: str | None = None) -> None:
    """Point `models:/<name>@<alias>` at `version` (moving the alias if it pointed elsewhere)."""
    mlflow_client(resolve_tracking_uri(tracking_uri)).set_registered_model_alias(name, alias, str(version))


def get_version_by_alias(name: str, alias: str, *, tracking_uri: str | None = None) -> ModelVersion:
    """The model version `alias` points at (raises MlflowException when the alias is not set)."""
    return mlflow_client(resolve_tracking_uri(tracking_uri)).get_model_version_by_alias(name, alias)


def model_download_uri(uri: str, *, tracking_uri: str | None = None) -> str:
    """The artifact URI behind `models:/<name>/<version>`, `models:/<name>@<alias>` or `models:/<name>/latest`
    (with an optional `/sub/path`); any other URI is returned unchanged.

    Resolved here because MLflow 3.17's `models:/` repository asks the process-global registry URI, ignoring the
    one passed to `download_artifacts`.
    """
    if not uri.startswith("models:/"):
        return uri
    client = mlflow_client(resolve_tracking_uri(tracking_uri))
    parts = uri.removeprefix("models:/").strip("/").split("/")
    if "@" in parts[0]:
        name, alias = parts[0].split("@", 1)
        version, sub = str(client.get_model_version_by_alias(name, alias).version), parts[1:]
    elif len(parts) >= 2:
        name, version, sub = parts[0], parts[1], parts[2:]
        if version == "latest":
            versions = client.search_model_versions(f"name = '{name}'")
            if not versions:
                raise FileNotFoundError(f"{uri}: registered model {name!r} has no versions")
            version = str(max(int(v.version) for v in versions))
    else:
        raise ValueError(f"{uri}: expected models:/<name>/<version>, models:/<name>@<alias> or models:/<name>/latest")
    base = client.get_model_version_download_uri(name, version)
    return "/".join([base.rstrip("/"), *sub]) if sub else base


def load_model_folder(uri: str, dst: str | Path | None = None, *, tracking_uri: str | None = None) -> Path:
    """Download `models:/<name>/<version>`, `models:/<name>@<alias>` (or any artifact URI) to a local HF folder.

    The files land under `dst` (default: a new temporary folder, which the caller owns); the returned path is the
    model folder itself (for a registered checkpoint `dst/iteration-NNNNNN`), ready for
    `transformers.AutoModelForCausalLM.from_pretrained(path)`.
    """
    from mlflow.artifacts import download_artifacts

    target = Path(dst) if dst is not None else Path(tempfile.mkdtemp(prefix="azr-model-"))
    uri_t = resolve_tracking_uri(tracking_uri)
    source = model_download_uri(uri, tracking_uri=uri_t)
    path = Path(download_artifacts(artifact_uri=source, dst_path=str(target), tracking_uri=uri_t, registry_uri=uri_t))
    if not (path / "config.json").is_file():
        raise FileNotFoundError(f"{uri} downloaded to {path} holds no config.json: not an HF model folder")
    return path
