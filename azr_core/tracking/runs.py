"""MLflow tracking of a run folder: one MLflow run per run folder, resumed across processes; params, metrics, models.

    tracker = Tracker(run_dir, TrackingConfig())           # opens or resumes the run folder's MLflow run
    tracker.log_config(config)                             # the resolved config, flattened to dotted params
    tracker.log_metrics({"solve/accuracy": 0.4}, step=3)   # one log_batch per call, step = iteration
    mv = tracker.register_checkpoint(ckpt_dir, iteration=3)  # a version of `azr-policy`, tagged
    folder = registry.load_model_folder(f"models:/azr-policy/{mv.version}")  # azr_core/tracking/registry.py

The run folder keeps `mlflow_run.json`: a key made once for the folder (also an MLflow tag on the run, so the run is
found again through any URI of the same store, e.g. SQLite directly or the `azr up` server) and the run id per
tracking URI. Checkpoints are logged as plain artifacts (no MLflow flavor: `mlflow.transformers` would load the model
into a pipeline just to save it) and registered from the run's artifact URI, so `models:/...` resolves to the files.

mlflow is imported only inside functions, so importing this module stays quick (the settings and the store's URI
are in `azr_core.tracking.store`, which `azr_core.config` embeds).
Never imports prefect; the Prefect flow run id comes as an argument or from the `PREFECT__FLOW_RUN_ID` variable
that Prefect sets in a flow run's process.
"""

from __future__ import annotations

import json
import logging
import os
import re
import subprocess
import uuid
from collections.abc import Mapping
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel

from azr_core.common.atomic import atomic_write_text
from azr_core.tracking.store import (  # noqa: F401 - TrackingConfig and the URI are part of this API
    TrackingConfig,
    artifact_location,
    default_tracking_uri,
    mlflow_client,
    resolve_tracking_uri,
)

if TYPE_CHECKING:
    from mlflow.entities.model_registry import ModelVersion

log = logging.getLogger(__name__)

RUN_FILE = "mlflow_run.json"
TAG_RUN_KEY = "azr.run_key"  # identifies the run folder across tracking URIs of one store
TAG_RUN_DIR = "azr.run_dir"
TAG_ITERATION = "azr.iteration"
TAG_FLOW_RUN = "azr.prefect_flow_run_id"
TAG_GIT_COMMIT = "azr.git_commit"
TAG_GIT_DIRTY = "azr.git_dirty"
TAG_END_REASON = "azr.end_reason"
END_STATUSES = ("FINISHED", "FAILED", "KILLED")
# How a stopped process shows up as an exception (by class name: azr_core never imports prefect): Prefect raises
# TerminationSignal on SIGTERM (a cancelled or stopped flow run), Python KeyboardInterrupt on SIGINT.
_KILLED_BY = {"TerminationSignal", "ExternalSignal", "KeyboardInterrupt", "CancelledError", "Abort"}
CHANGED_PARAM_PREFIX = "changed_param."  # tag prefix: params are immutable in MLflow, tags hold later values
_URI_PASSWORD = re.compile(r"(?<=://)([^/:@\s]+):[^/@\s]+@")  # user:password@ in a URI (a database URL, say)
_METRIC_NAME_BAD = re.compile(r"[^A-Za-z0-9_\-. /:]")  # MLflow's allowed metric-name characters
REPO_ROOT = Path(__file__).resolve().parents[1]


def flatten_params(tree: Mapping[str, Any], prefix: str = "") -> dict[str, str]:
    """Nested dicts to `a.b.c` keys with string values (lists as compact JSON), cut to MLflow's length limit.

    A password inside a URI (`postgresql://user:secret@host/db`) is masked: params are readable by anyone with the UI.

    >>> flatten_params({"trainer": {"lr": 1e-6, "betas": [0.9, 0.99]}, "name": None})
    {'trainer.lr': '1e-06', 'trainer.betas': '[0.9,0.99]', 'name': 'None'}
    """
    from mlflow.utils.validation import MAX_PARAM_VAL_LENGTH

    out: dict[str, str] = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            out.update(flatten_params(value, name + "."))
            continue
        if isinstance(value, list | tuple):
            text = json.dumps(value, separators=(",", ":"), default=str)
        else:
            text = _URI_PASSWORD.sub(r"\1:***@", str(value))
        if len(text) > MAX_PARAM_VAL_LENGTH:  # MLflow rejects longer values (or truncates, depending on a flag)
            text = text[: MAX_PARAM_VAL_LENGTH - 3] + "..."
        out[name] = text
    return out


@cache
def git_commit(repo: Path = REPO_ROOT) -> tuple[str | None, bool | None]:
    """(HEAD commit, working tree dirty) of `repo`, or (None, None) when it is not a git checkout or git is missing."""
    try:
        head = subprocess.run(["git", "-C", str(repo), "rev-parse", "HEAD"], capture_output=True, text=True,
                              timeout=10, check=True).stdout.strip()  # fmt: skip
        status = subprocess.run(["git", "-C", str(repo), "status", "--porcelain", "--untracked-files=no"],
                                capture_output=True, text=True, timeout=10, check=True).stdout  # fmt: skip
    except (OSError, subprocess.SubprocessError):
        return None, None
    return head or None, bool(status.strip())


def end_status(exc: BaseException | None) -> str:
    """The MLflow status a session ends with: FINISHED without an exception, KILLED when a signal or a cancellation
    stopped it, FAILED for any other exception.

    >>> end_status(None), end_status(KeyboardInterrupt()), end_status(ValueError("x"))
    ('FINISHED', 'KILLED', 'FAILED')
    """
    if exc is None:
        return "FINISHED"
    if any(cls.__name__ in _KILLED_BY for cls in type(exc).__mro__):
        return "KILLED"
    return "FAILED"


def _chunks(items: list[Any], size: int) -> list[list[Any]]:
    return [items[i : i + size] for i in range(0, len(items), size)]


class Tracker:
    """The MLflow run of one run folder. With `config.enabled` False every method is a no-op."""

    def __init__(
        self,
        run_dir: str | Path,
        config: TrackingConfig | None = None,
        *,
        run_name: str | None = None,
        tags: Mapping[str, str] | None = None,
    ) -> None:
        self.config = config or TrackingConfig()
        self.run_dir = Path(run_dir).resolve()
        self.tracking_uri = resolve_tracking_uri(self.config.tracking_uri)
        self.run_id: str | None = None
        self.experiment_id: str | None = None
        self._closed = False
        if not self.config.enabled:
            return
        if self.tracking_uri.startswith(("http://", "https://")):  # bounded waits on a server that is down
            os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", str(self.config.http_retries))
            os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", str(self.config.http_timeout_s))
        self.client = mlflow_client(self.tracking_uri)
        self.experiment_id = self._experiment_id()
        self.run_id = self._open_run(run_name, dict(tags or {}))

    # ---- the run -------------------------------------------------------------------------------------------

    def _experiment_id(self) -> str:
        from mlflow.exceptions import MlflowException

        name = self.config.experiment
        exp = self.client.get_experiment_by_name(name)
        if exp is None:
            try:
                return self.client.create_experiment(name, artifact_location(self.tracking_uri, name))
            except MlflowException:  # created meanwhile by another process
                exp = self.client.get_experiment_by_name(name)
                if exp is None:
                    raise
        if exp.lifecycle_stage == "deleted":
            raise RuntimeError(
                f"MLflow experiment {name!r} is deleted in {self.tracking_uri}: restore it "
                f"(`mlflow experiments restore --experiment-id {exp.experiment_id}`) or pick another name"
            )
        return exp.experiment_id

    def _read_run_file(self) -> dict[str, Any]:
        path = self.run_dir / RUN_FILE
        if path.exists():
            return json.loads(path.read_text(encoding="utf-8"))
        return {}

    def _write_run_file(self, data: dict[str, Any]) -> None:
        atomic_write_text(self.run_dir / RUN_FILE, json.dumps(data, indent=2, sort_keys=True) + "\n")

    def _live_run(self, run_id: str) -> bool:
        from mlflow.exceptions import MlflowException

        try:
            run = self.client.get_run(run_id)
        except MlflowException:
            return False
        return run.info.lifecycle_stage != "deleted" and run.info.experiment_id == self.experiment_id

    def _open_run(self, run_name: str | None, tags: dict[str, str]) -> str:
        """Resume the folder's run (by recorded id, then by the folder's key tag), else create one."""
        data = self._read_run_file()
        if "run_key" not in data:
            # The key is written before the run exists: a crash right after create_run still finds it by tag.
            data = {"run_key": uuid.uuid4().hex, "runs": {}}
            self.run_dir.mkdir(parents=True, exist_ok=True)
            self._write_run_file(data)
        key = data["run_key"]
        recorded = data.get("runs", {}).get(self.tracking_uri, {}).get("run_id")
        run_id = recorded if recorded and self._live_run(recorded) else None
        if run_id is None:
            found = self.client.search_runs([self.experiment_id], f"tags.`{TAG_RUN_KEY}` = '{key}'", max_results=1,
                                            order_by=["attributes.start_time DESC"])  # fmt: skip
            run_id = found[0].info.run_id if found else None
        if run_id is None:
            commit, dirty = git_commit()
            run_tags = {TAG_RUN_KEY: key, TAG_RUN_DIR: str(self.run_dir), **tags}
            if commit:
                run_tags |= {"mlflow.source.git.commit": commit, TAG_GIT_COMMIT: commit, TAG_GIT_DIRTY: str(dirty)}
            run = self.client.create_run(self.experiment_id, tags=run_tags, run_name=run_name or self.run_dir.name)
            run_id = run.info.run_id
            log.info("MLflow run %s created for %s in %s", run_id, self.run_dir, self.tracking_uri)
        else:
            self.client.update_run(run_id, status="RUNNING")
            if tags:
                self.set_tags(tags, run_id=run_id)
            log.info("MLflow run %s resumed for %s", run_id, self.run_dir)
        if recorded != run_id:
            data.setdefault("runs", {})[self.tracking_uri] = {"run_id": run_id, "experiment_id": self.experiment_id,
                                                              "experiment": self.config.experiment}  # fmt: skip
            self._write_run_file(data)
        return run_id

    def close(self, status: str = "FINISHED", *, reason: str | None = None) -> None:
        """End the session's MLflow run as FINISHED (success only), FAILED or KILLED; a later Tracker on the folder
        sets it RUNNING again. `reason` (say the exception) goes to the tag `azr.end_reason`. Idempotent.

        A flow decides the status from how it ended: `Tracker.close(end_status(exc), reason=...)`, or use the tracker
        as a context manager, which does exactly that.
        """
        if status not in END_STATUSES:
            raise ValueError(f"MLflow run status {status!r}: use one of {', '.join(END_STATUSES)}")
        if self.run_id is None or self._closed:
            return
        self.set_tags({TAG_END_REASON: (reason or status.lower())[:500]})
        self.client.set_terminated(self.run_id, status=status)
        self._closed = True

    def __enter__(self) -> Tracker:
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        self.close(end_status(exc), reason=None if exc is None else f"{type(exc).__name__}: {exc}")

    # ---- params, metrics, tags -----------------------------------------------------------------------------

    def set_tags(self, tags: Mapping[str, Any], *, run_id: str | None = None) -> None:
        """Set run tags (mutable, unlike params)."""
        from mlflow.entities import RunTag
        from mlflow.utils.validation import MAX_PARAMS_TAGS_PER_BATCH, MAX_TAG_VAL_LENGTH

        run_id = run_id or self.run_id
        if run_id is None or not tags:
            return
        items = [RunTag(str(k), str(v)[:MAX_TAG_VAL_LENGTH]) for k, v in tags.items()]
        for chunk in _chunks(items, MAX_PARAMS_TAGS_PER_BATCH):
            self.client.log_batch(run_id, tags=chunk, synchronous=True)

    def log_config(self, config: BaseModel | Mapping[str, Any]) -> dict[str, tuple[str, str]]:
        """Log the resolved config as flattened params; returns {key: (logged, new)} for values that changed.

        MLflow params are write-once, so on resume a changed value (say a longer `run.iterations`) stays as first
        logged; the new value goes to the tag `changed_param.<key>` and a warning names it.
        """
        from mlflow.entities import Param
        from mlflow.utils.validation import MAX_PARAMS_TAGS_PER_BATCH

        if self.run_id is None:
            return {}
        tree = config.model_dump(mode="json") if isinstance(config, BaseModel) else dict(config)
        params = flatten_params(tree)
        existing = self.client.get_run(self.run_id).data.params
        new = [Param(k, v) for k, v in params.items() if k not in existing]
        changed = {k: (existing[k], v) for k, v in params.items() if k in existing and existing[k] != v}
        for chunk in _chunks(new, MAX_PARAMS_TAGS_PER_BATCH):
            self.client.log_batch(self.run_id, params=chunk, synchronous=True)
        if changed:
            log.warning("config changed since the run's params were logged (kept as tags %s*): %s",
                        CHANGED_PARAM_PREFIX, ", ".join(sorted(changed)))  # fmt: skip
            self.set_tags({CHANGED_PARAM_PREFIX + k: new_v for k, (_, new_v) in changed.items()})
        return changed

    def log_metrics(self, metrics: Mapping[str, float], step: int, *, timestamp_ms: int | None = None) -> None:
        """Log a flat dict of numbers at `step` (the iteration) in as few `log_batch` calls as MLflow allows.

        Names with characters MLflow refuses get them replaced by `_`; NaN and inf are logged as MLflow stores them.
        """
        import time

        from mlflow.entities import Metric
        from mlflow.utils.validation import MAX_METRICS_PER_BATCH

        if self.run_id is None or not metrics:
            return
        ts = timestamp_ms if timestamp_ms is not None else int(time.time() * 1000)
        items = []
        for key, value in metrics.items():
            # float() also takes numpy / torch scalars; strings are refused, not parsed.
            if isinstance(value, str | bytes) or not hasattr(value, "__float__"):
                raise TypeError(f"metric {key!r}: {value!r} is not a number")
            items.append(Metric(_METRIC_NAME_BAD.sub("_", str(key)), float(value), ts, int(step)))
        for chunk in _chunks(items, MAX_METRICS_PER_BATCH):
            self.client.log_batch(self.run_id, metrics=chunk, synchronous=True)

    # ---- model versions ------------------------------------------------------------------------------------

    def should_register(self, iteration: int, *, final: bool = False) -> bool:
        """True on every `register_every`-th iteration, and on the final one of a session when `final`."""
        every = self.config.register_every
        return self.config.enabled and every > 0 and (final or iteration % every == 0)

    def registered_version(self, iteration: int) -> ModelVersion | None:
        """The model version this run registered for `iteration`, if any."""
        if self.run_id is None:
            return None
        name = self.config.registered_model
        for mv in self.client.search_model_versions(f"name = '{name}' and run_id = '{self.run_id}'"):
            if mv.tags.get(TAG_ITERATION) == str(iteration):
                return mv
        return None

    def register_checkpoint(
        self,
        folder: str | Path,
        iteration: int,
        *,
        flow_run_id: str | None = None,
        tags: Mapping[str, str] | None = None,
    ) -> ModelVersion | None:
        """Log an HF model folder as run artifacts and register it as a new version of `registered_model`.

        `folder` is the HF folder (config.json, safetensors, tokenizer) or a trainer checkpoint holding one in `hf/`
        (its optimiser state is not uploaded). Idempotent per (run, iteration): a resumed iteration that registers
        again gets the version already made. Tags: run folder, iteration, Prefect flow run id, git commit.
        """
        from mlflow.exceptions import MlflowException

        if self.run_id is None:
            return None
        src = _hf_folder(Path(folder))
        name = self.config.registered_model
        existing = self.registered_version(iteration)
        if existing is not None:
            return existing
        artifact_path = f"checkpoints/iteration-{iteration:06d}"
        self.client.log_artifacts(self.run_id, str(src), artifact_path)
        try:
            self.client.create_registered_model(name, description="AZR policy checkpoints (HF folders).")
        except MlflowException as exc:
            if exc.error_code != "RESOURCE_ALREADY_EXISTS":
                raise
        commit, dirty = git_commit()
        flow_run_id = flow_run_id or os.environ.get("PREFECT__FLOW_RUN_ID")
        mv_tags = {TAG_RUN_DIR: str(self.run_dir), TAG_ITERATION: str(iteration), **(tags or {})}
        if flow_run_id:
            mv_tags[TAG_FLOW_RUN] = flow_run_id
        if commit:
            mv_tags |= {TAG_GIT_COMMIT: commit, TAG_GIT_DIRTY: str(dirty)}
        source = f"{self.client.get_run(self.run_id).info.artifact_uri}/{artifact_path}"
        mv = self.client.create_model_version(name, source, run_id=self.run_id, tags=mv_tags,
                                              description=f"{self.run_dir.name} iteration {iteration}")  # fmt: skip
        self.set_tags({"azr.last_registered_version": mv.version})
        log.info("registered %s version %s (iteration %d)", name, mv.version, iteration)
        return mv


def _hf_folder(folder: Path) -> Path:
    if (folder / "config.json").is_file():
        return folder
    if (folder / "hf" / "config.json").is_file():
        return folder / "hf"
    raise FileNotFoundError(f"{folder} is not an HF model folder (no config.json in it or in its hf/ subfolder)")
