"""What the report shows from the MLflow registry, read-only: the champion, and the promotion gate's decision on each
version the run registered (outcome, the version it was judged against, the gap and the p-value).

Nothing is written: a SQLite store that does not exist is not created (`read_client`), and the run's status is
left as it is (no `Tracker`, which would set the run RUNNING again)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from azr_core.tracking.store import DEFAULT_REGISTERED_MODEL, read_client, resolve_tracking_uri


@dataclass
class Registry:
    """The registry's view of one run; `note` says why a part is missing."""

    champion: int | None = None
    decisions: list[dict[str, str]] = field(default_factory=list)  # one per version of the run, oldest first
    note: str | None = None


def registered_name(run_dir: str | Path) -> str:
    """The name the run registers its versions under: `tracking.registered_model` of its resolved config."""
    import yaml

    from azr_core.config import RESOLVED_CONFIG_NAME

    try:
        cfg = yaml.safe_load((Path(run_dir) / RESOLVED_CONFIG_NAME).read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError):
        return DEFAULT_REGISTERED_MODEL
    return ((cfg.get("tracking") or {}).get("registered_model")) or DEFAULT_REGISTERED_MODEL


def read_registry(run_dir: str | Path, tracking_uri: str | None = None, name: str | None = None) -> Registry:
    """The champion and the promotion decisions of the run's versions (of registered model `name`, default the run's
    own `tracking.registered_model`); never raises for an unreachable store."""
    from azr_core.outcome import run_record

    name = name or registered_name(run_dir)
    uri = resolve_tracking_uri(tracking_uri)
    client = read_client(uri)
    if client is None:
        return Registry(note=f"no MLflow store at {uri}")
    out = Registry()
    try:
        try:
            out.champion = int(client.get_model_version_by_alias(name, "champion").version)
        except Exception:  # noqa: BLE001 - no registered model or no alias yet: nothing to mark
            out.champion = None
        found = run_record(Path(run_dir).resolve(), client, uri)
        if found is None:
            out.note = f"the run has no MLflow run in {uri}"
            return out
        versions = client.search_model_versions(f"name = '{name}' and run_id = '{found[1]}'")
    except Exception as exc:  # noqa: BLE001 - an unreachable server: the page says so
        return Registry(note=f"MLflow at {uri} did not answer: {type(exc).__name__}: {str(exc)[:200]}")
    for mv in sorted(versions, key=lambda v: int(v.version)):
        keys = ("decision", "against", "delta", "p_value", "test", "reason", "at")
        row = {k: mv.tags.get(f"azr.promotion.{k}", "") for k in keys}
        out.decisions.append({"version": str(mv.version), "iteration": mv.tags.get("azr.iteration", ""), **row})
    return out
