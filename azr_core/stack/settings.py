"""Where the local stack lives and how to reach it: the state folder, the ports and work pool (`StackSettings`),
and the environment a user's shell or a service gets. Plain data: no process is started here (see `stack.local`).
"""

from __future__ import annotations

import ipaddress
import json
import os
from dataclasses import dataclass
from pathlib import Path

HOST = "127.0.0.1"  # the services bind loopback unless `azr up --host` names another address
ALL_INTERFACES = ("0.0.0.0", "::")  # noqa: S104 - named so that binding them is always an explicit request
DEFAULT_PREFECT_PORT = 4200
DEFAULT_MLFLOW_PORT = 5000
DEFAULT_POOL = "azr-pool"
WORKER_NAME = "azr-worker"
SERVICES = ("prefect-server", "mlflow-ui", "prefect-worker")  # start order; stopped in reverse (worker first)
TELEMETRY_OPT_IN = "AZR_ALLOW_TELEMETRY"  # set to 1 to let Prefect and MLflow send their usage telemetry
_PACKAGE_ROOT = Path(__file__).resolve().parents[1]


def repo_root() -> Path | None:
    """The checkout this package runs from (editable install), or None for an installed wheel."""
    return _PACKAGE_ROOT if (_PACKAGE_ROOT / "pyproject.toml").is_file() else None


def resolve_state_dir(explicit: str | Path | None = None) -> Path:
    """The state folder: `explicit`, else $AZR_STATE_DIR, else `<repo>/.azr/stack` (or `./.azr/stack`)."""
    chosen = explicit or os.environ.get("AZR_STATE_DIR")
    if chosen:
        return Path(chosen).expanduser().resolve()
    return ((repo_root() or Path.cwd()) / ".azr" / "stack").resolve()


@dataclass(frozen=True)
class StackSettings:
    """Where the stack lives and which ports and pool it uses."""

    state_dir: Path
    prefect_port: int = DEFAULT_PREFECT_PORT
    mlflow_port: int = DEFAULT_MLFLOW_PORT
    pool: str = DEFAULT_POOL
    host: str = HOST  # the address the Prefect server and the MLflow UI listen on
    local_worker: bool = True  # False: a server host only; workers join from other hosts (`azr join`)

    def __post_init__(self) -> None:
        try:
            ipaddress.ip_address(self.host)
        except ValueError:
            raise ValueError(
                f"listen address {self.host!r} is not an IP address: give this host's address on the "
                "network the workers reach it by (e.g. --host 10.0.0.5), or 127.0.0.1"
            ) from None

    @classmethod
    def resolve(
        cls,
        state_dir: str | Path | None = None,
        prefect_port: int | None = None,
        mlflow_port: int | None = None,
        pool: str | None = None,
        host: str | None = None,
        local_worker: bool | None = None,
    ) -> StackSettings:
        """Arguments win, then the values the stack was last brought up with (`stack.json`), then the defaults."""
        root = resolve_state_dir(state_dir)
        saved = read_stack_file(root)
        return cls(
            state_dir=root,
            prefect_port=int(prefect_port or saved.get("prefect_port") or DEFAULT_PREFECT_PORT),  # type: ignore[arg-type]
            mlflow_port=int(mlflow_port or saved.get("mlflow_port") or DEFAULT_MLFLOW_PORT),  # type: ignore[arg-type]
            pool=str(pool or saved.get("pool") or DEFAULT_POOL),
            host=str(host or saved.get("host") or HOST),
            local_worker=bool(saved.get("local_worker", True) if local_worker is None else local_worker),
        )

    @property
    def connect_host(self) -> str:
        """The address clients use: the listen address, or loopback when the stack listens on all interfaces."""
        if self.host in ALL_INTERFACES:
            return "::1" if self.host == "::" else "127.0.0.1"
        return self.host

    def _base(self, port: int) -> str:
        host = self.connect_host
        return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"

    @property
    def prefect_url(self) -> str:
        return self._base(self.prefect_port)

    @property
    def prefect_api_url(self) -> str:
        return f"{self.prefect_url}/api"

    @property
    def mlflow_url(self) -> str:
        return self._base(self.mlflow_port)

    @property
    def mlflow_db_uri(self) -> str:
        return f"sqlite:///{self.state_dir / 'mlflow.db'}"

    def log_path(self, service: str) -> Path:
        return self.state_dir / "logs" / f"{service}.log"

    def pid_path(self, service: str) -> Path:
        return self.state_dir / "run" / f"{service}.json"

    def url(self, service: str) -> str:
        return self.mlflow_url if service == "mlflow-ui" else self.prefect_url

    def user_env(self) -> dict[str, str]:
        """What a user's shell needs to talk to this stack (also written to `env.sh`)."""
        return {"PREFECT_API_URL": self.prefect_api_url, "MLFLOW_TRACKING_URI": self.mlflow_url,
                "AZR_STATE_DIR": str(self.state_dir), **telemetry_env()}  # fmt: skip


def read_stack_file(state_dir: Path) -> dict[str, object]:
    """`<state>/stack.json` (what `azr up` last brought the stack up with, and its `stack_id`), or {}."""
    path = state_dir / "stack.json"
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}


def telemetry_env(environ: dict[str, str] | None = None) -> dict[str, str]:
    """Variables that turn Prefect's and MLflow's usage telemetry off, unless the user opted in.

    MLflow 3 reports usage (and its UI says so) unless MLFLOW_DISABLE_TELEMETRY or DO_NOT_TRACK is set; Prefect's
    client honours DO_NOT_TRACK and its server PREFECT_SERVER_ANALYTICS_ENABLED. Nothing leaves the machine by default.
    """
    environ = os.environ if environ is None else environ
    if environ.get(TELEMETRY_OPT_IN, "").lower() in ("1", "true", "yes"):
        return {}
    return {"DO_NOT_TRACK": "true", "MLFLOW_DISABLE_TELEMETRY": "true", "PREFECT_SERVER_ANALYTICS_ENABLED": "false"}
