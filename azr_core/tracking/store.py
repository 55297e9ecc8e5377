"""Where MLflow keeps a run: the tracking settings, the store's URI (also the registry's) and a client for it.

mlflow is imported only inside functions: `azr_core.config` embeds TrackingConfig and must stay quick to import.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import TYPE_CHECKING

from pydantic import Field

from azr_core.common.config_base import Section
from azr_core.stack.settings import resolve_state_dir

if TYPE_CHECKING:
    from mlflow import MlflowClient


#: The registered model's name unless `tracking.registered_model` says otherwise.
DEFAULT_REGISTERED_MODEL = "azr-policy"


class TrackingConfig(Section):
    """MLflow tracking: where runs, metrics and model versions go."""

    enabled: bool = Field(True, description="Track the run in MLflow (False: every Tracker method does nothing).")
    tracking_uri: str | None = Field(
        None,
        description="MLflow tracking URI (also the registry URI). None: $MLFLOW_TRACKING_URI if set, else "
        "sqlite:///<state dir>/mlflow.db, the store `azr up` serves.",
    )
    experiment: str = Field("azr", min_length=1, description="MLflow experiment that holds the run.")
    registered_model: str = Field(
        DEFAULT_REGISTERED_MODEL, min_length=1, description="Registered model checkpoints become."
    )
    register_every: int = Field(
        10, ge=0, description="Register the checkpoint as a model version every K iterations (0 = never)."
    )
    http_retries: int = Field(
        2,
        ge=0,
        description="Retries of a request to an MLflow server (http[s] URI; MLflow's own default, 7 with backoff, "
        "stalls each call ~4 min while the server is down). $MLFLOW_HTTP_REQUEST_MAX_RETRIES wins when set.",
    )
    http_timeout_s: int = Field(
        30, ge=1, description="Seconds per request to an MLflow server. $MLFLOW_HTTP_REQUEST_TIMEOUT wins when set."
    )


def default_tracking_uri(state_dir: str | Path | None = None) -> str:
    """`sqlite:///<state dir>/mlflow.db` (absolute path, so the URI means the same from any working directory)."""
    return f"sqlite:///{resolve_state_dir(state_dir) / 'mlflow.db'}"


def resolve_tracking_uri(uri: str | None = None) -> str:
    """The URI given, else $MLFLOW_TRACKING_URI, else the state folder's SQLite store."""
    return uri or os.environ.get("MLFLOW_TRACKING_URI") or default_tracking_uri()


def mlflow_client(tracking_uri: str) -> MlflowClient:
    """An MLflow client whose registry is the tracking store (one store holds runs and model versions)."""
    from mlflow import MlflowClient

    return MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)


def read_client(tracking_uri: str) -> MlflowClient | None:
    """A client for reading, or None where opening one would create a store: MLflow creates a missing SQLite file
    with its tables and a default experiment, which a read-only command must not do."""
    if tracking_uri.startswith("sqlite:///"):
        db = Path(tracking_uri.removeprefix("sqlite:///"))
        if not db.is_file():
            return None
    return mlflow_client(tracking_uri)


def artifact_location(tracking_uri: str, experiment: str) -> str | None:
    """For a SQLite store, artifacts beside the database; else the server's default (None).

    Without this MLflow puts a SQLite store's artifacts in `./mlruns` of whatever directory the process runs in.
    """
    if not tracking_uri.startswith("sqlite:///"):
        return None
    db = Path(tracking_uri.removeprefix("sqlite:///")).resolve()  # relative: to the cwd, as SQLAlchemy reads it
    slug = re.sub(r"[^A-Za-z0-9_.-]+", "_", experiment)
    return (db.parent / "mlflow-artifacts" / slug).as_uri()
