"""What a run came to, read-only: where to look (the URLs of its MLflow run and of the Prefect flow run that last
trained it), its newest registered model version, that version's quick-suite scores, the aliases it holds and the
promotion gate's decision; and a bounded wait for the evaluation flow run of that version.

    o = read_outcome("runs/self-play", StackSettings.resolve())
    print(format_outcome(o))

`azr status --run DIR [--wait-eval S]` prints it, and the main job (`infra/run-selfplay.sh`) ends with it. Nothing
here writes: MLflow is only read (a SQLite store that does not exist is not created), Prefect is asked over its REST
API (no prefect import: azr_core stays framework-free).
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from azr_core.stack.settings import StackSettings
from azr_core.tracking.store import read_client, resolve_tracking_uri

EVAL_FLOW = "azr-eval"
TERMINAL = ("COMPLETED", "FAILED", "CRASHED", "CANCELLED")
_TAG_FLOW_RUN = "azr.prefect_flow_run_id"  # azr_core.tracking.runs.TAG_FLOW_RUN (not imported: that module is heavier)
_TAG_ITERATION = "azr.iteration"


def mlflow_run_url(ui: str, experiment_id: str, run_id: str) -> str:
    """The MLflow UI's page of one run (its metrics, params, artifacts), not the UI's home page."""
    return f"{ui.rstrip('/')}/#/experiments/{experiment_id}/runs/{run_id}"


def mlflow_version_url(ui: str, name: str, version: int | str) -> str:
    return f"{ui.rstrip('/')}/#/models/{name}/versions/{version}"


def prefect_flow_run_url(ui: str, flow_run_id: str) -> str:
    """The Prefect UI's page of one flow run (its task graph and logs)."""
    return f"{ui.rstrip('/')}/runs/flow-run/{flow_run_id}"


@dataclass
class Outcome:
    """A run folder's state as the trackers hold it; None where a part is unknown (`notes` says why)."""

    run_dir: Path
    mlflow_run_url: str | None = None
    mlflow_status: str | None = None
    flow_run_url: str | None = None
    model: str | None = None  # models:/<name>/<version> of the run's newest version
    version: int | None = None
    iteration: int | None = None
    version_url: str | None = None
    aliases: list[str] = field(default_factory=list)
    scores: dict[str, tuple[float, int | None]] = field(default_factory=dict)  # bench -> (pass@1, items)
    promotion: dict[str, str] = field(default_factory=dict)  # decision, against, p_value, delta, test, reason
    eval_flow_run: dict[str, str] | None = None  # state, url
    on_register: bool = True  # the run's evaluation.on_register: is an evaluation flow run to be expected?
    notes: list[str] = field(default_factory=list)


def run_record(run_dir: Path, client, uri: str) -> tuple[str, str] | None:
    """(experiment id, run id) of the run folder's MLflow run in this store: the record made for this URI, else any
    record whose run carries the folder's key (the same store reached through another URI)."""
    path = run_dir / "mlflow_run.json"
    if not path.is_file():
        return None
    data = json.loads(path.read_text(encoding="utf-8"))
    runs = data.get("runs", {})
    ordered = [runs[uri]] if uri in runs else []
    ordered += [r for u, r in runs.items() if u != uri]
    for rec in ordered:
        try:
            run = client.get_run(rec["run_id"])
        except Exception:  # noqa: BLE001 - a record of another store: not found here
            continue
        if run.data.tags.get("azr.run_key") == data.get("run_key"):
            return run.info.experiment_id, run.info.run_id
    return None


def _on_register(run_dir: Path) -> bool:
    """evaluation.on_register of the newest session's resolved config (True when unknown, the default)."""
    sessions = sorted((run_dir / "configs").glob("session-*.yaml"))
    if not sessions:
        return True
    cfg = yaml.safe_load(sessions[-1].read_text(encoding="utf-8")) or {}
    return bool(cfg.get("evaluation", {}).get("on_register", True))


def read_outcome(run_dir: str | Path, settings: StackSettings, *, tracking_uri: str | None = None,
                 registered_model: str = "azr-policy") -> Outcome:  # fmt: skip
    """Read the run's MLflow run, its newest model version (tags and aliases) and that version's evaluation flow
    run. Only reads."""
    run_dir = Path(run_dir).resolve()
    o = Outcome(run_dir=run_dir, on_register=_on_register(run_dir))
    uri = resolve_tracking_uri(tracking_uri)
    client = read_client(uri)
    if client is None:
        o.notes.append(f"no MLflow store at {uri}")
        return o
    try:
        found = run_record(run_dir, client, uri)
        if found is None:
            o.notes.append(f"{run_dir} has no MLflow run in {uri} (not trained yet?)")
            return o
        experiment_id, run_id = found
        run = client.get_run(run_id)
        o.mlflow_run_url = mlflow_run_url(settings.mlflow_url, experiment_id, run_id)
        o.mlflow_status = run.info.status
        flow_run_id = run.data.tags.get(_TAG_FLOW_RUN)
        if flow_run_id:
            o.flow_run_url = prefect_flow_run_url(settings.prefect_url, flow_run_id)
        versions = client.search_model_versions(f"name = '{registered_model}' and run_id = '{run_id}'")
    except Exception as exc:  # noqa: BLE001 - an unreachable server, a refused request: say so, do not fail
        o.notes.append(f"MLflow at {uri} did not answer: {type(exc).__name__}: {str(exc)[:200]}")
        return o
    if not versions:
        o.notes.append(f"no version of {registered_model} registered by this run yet")
        return o
    mv = max(versions, key=lambda v: int(v.version))
    _version_into(o, client, registered_model, mv)
    return o


def _version_into(o: Outcome, client, name: str, mv) -> None:
    o.version = int(mv.version)
    o.model = f"models:/{name}/{mv.version}"
    it = mv.tags.get(_TAG_ITERATION)
    o.iteration = int(it) if it is not None else None
    o.version_url = mlflow_version_url(_ui_of(o.mlflow_run_url), name, mv.version)
    # search_model_versions leaves aliases out in some stores: ask for the version itself.
    full = client.get_model_version(name, str(mv.version))
    o.aliases = sorted(full.aliases or [])
    tags = full.tags
    o.scores = {}
    for key, value in tags.items():
        bench = key.removeprefix("azr.eval.")
        if key.startswith("azr.eval.") and "." not in bench and bench != "last_eval_id":
            n = tags.get(f"azr.eval.{bench}.n")
            o.scores[bench] = (float(value), int(n) if n else None)
    o.promotion = {k.removeprefix("azr.promotion."): v for k, v in tags.items()
                   if k.startswith("azr.promotion.") and k.count(".") == 2}  # fmt: skip


def _ui_of(url: str | None) -> str:
    return url.split("/#/")[0] if url else ""


# ---- the evaluation flow run (Prefect's REST API) -----------------------------------------------------------------


def _post(url: str, body: dict[str, Any], timeout: float = 10.0) -> Any:
    req = urllib.request.Request(url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=timeout) as resp:  # noqa: S310 - the stack's loopback API
        return json.loads(resp.read().decode("utf-8"))


def find_eval_flow_run(settings: StackSettings, model: str, run_dir: str | Path | None = None) -> dict[str, str] | None:
    """The newest `azr-eval` flow run whose `model` parameter is `model` (and whose `run_dir`, when it has one, is
    `run_dir`: a store made afresh numbers its versions from 1 again): {id, state_type, state, url}, or None."""
    body = {"flows": {"name": {"any_": [EVAL_FLOW]}}, "sort": "EXPECTED_START_TIME_DESC", "limit": 200}
    runs = _post(f"{settings.prefect_api_url}/flow_runs/filter", body)
    for r in runs:
        params = r.get("parameters") or {}
        other_run = run_dir is not None and params.get("run_dir") and Path(params["run_dir"]) != Path(run_dir)
        if params.get("model") == model and not other_run:
            state = (r.get("state") or {}).get("name") or r.get("state_name") or "?"
            return {"id": r["id"], "state_type": r.get("state_type") or "?", "state": state,
                    "url": prefect_flow_run_url(settings.prefect_url, r["id"])}  # fmt: skip
    return None


def wait_for_evaluation(o: Outcome, settings: StackSettings, timeout_s: float, *, echo: Callable[[str], None] = print,
                        poll_s: float = 5.0, tracking_uri: str | None = None) -> Outcome:  # fmt: skip
    """Wait (at most `timeout_s`) for the evaluation flow run of the run's newest version to end, then read the
    outcome again (its scores, aliases and promotion are set by then). Says what it waits for, and how it ended."""
    if o.model is None or timeout_s <= 0:
        return o
    if not o.on_register:
        o.notes.append("evaluation.on_register is false: no evaluation flow run follows a registration")
        return o
    echo(f"[azr] waiting up to {timeout_s:.0f} s for the {EVAL_FLOW}/evaluate flow run of {o.model} "
         "(its quick-suite scores and the promotion gate)")  # fmt: skip
    deadline, found, shown = time.monotonic() + timeout_s, None, None
    while True:
        try:
            found = find_eval_flow_run(settings, o.model, o.run_dir)
        except (urllib.error.URLError, OSError, ValueError) as exc:
            found = None
            if time.monotonic() > deadline:
                o.notes.append(f"the Prefect API at {settings.prefect_api_url} did not answer: {exc}")
                return o
        if found and found["state"] != shown:
            shown = found["state"]
            echo(f"[azr]   evaluation flow run: {shown}  {found['url']}")
        if (found and found["state_type"] in TERMINAL) or time.monotonic() > deadline:
            break
        time.sleep(poll_s)
    o = read_outcome(o.run_dir, settings, tracking_uri=tracking_uri)
    o.eval_flow_run = found
    if found is None:
        o.notes.append(f"no {EVAL_FLOW} flow run of {o.model} appeared in {timeout_s:.0f} s: is the "
                       "evaluate deployment registered (`prefect --no-prompt deploy --all`)?")  # fmt: skip
    elif found["state_type"] not in TERMINAL:
        o.notes.append(f"the evaluation flow run is still {found['state']} after {timeout_s:.0f} s: it goes on; "
                       f"see {found['url']}, then `azr status --run {o.run_dir}`")  # fmt: skip
    return o


# ---- the message --------------------------------------------------------------------------------------------------


def format_outcome(o: Outcome, *, azr: str = "azr") -> str:
    """The run's outcome as lines for a terminal: links, the version, its scores and alias, commands to go further."""
    lines = [f"run {o.run_dir}"]
    if o.mlflow_run_url:
        lines.append(f"  MLflow run ({o.mlflow_status}; metrics per iteration): {o.mlflow_run_url}")
    if o.flow_run_url:
        lines.append(f"  Prefect flow run that trained it last (each iteration's tasks, logs): {o.flow_run_url}")
    if o.version is not None:
        lines.append(f"  model: {o.model} (iteration {o.iteration})  {o.version_url}")
        if o.eval_flow_run:
            lines.append(f"  evaluation flow run: {o.eval_flow_run['state']}  {o.eval_flow_run['url']}")
        if o.scores:
            text = ", ".join(f"{b} {s:.3f}" + (f" ({n} items)" if n else "") for b, (s, n) in sorted(o.scores.items()))
            lines.append(f"  quick-suite scores (pass@1): {text}")
        else:
            lines.append("  quick-suite scores: none yet")
        lines.append(f"  aliases: {', '.join(o.aliases) if o.aliases else 'none'}")
        p = o.promotion
        if p.get("decision"):
            pv = f", p = {p['p_value']}" if p.get("p_value") else ""
            against = f" against version {p['against']}" if p.get("against") else ""
            lines.append(f"  promotion: {p['decision']}{against}{pv} ({p.get('reason', '')})")
    lines += [f"  note: {n}" for n in o.notes]
    run = str(o.run_dir)
    lines += [
        "  look further:",
        f'    {azr} sql --run {run} "SELECT bench, model_version, avg(correct::INT) AS score, count(*) AS n '
        'FROM evals GROUP BY ALL ORDER BY ALL"',
        f"    {azr} report {run}          # plots, the scores per version and the promotion decisions",
        f"    {azr} promote --rollback    # champion back to the version that held it before",
    ]
    return "\n".join(lines)


def flow_closing_message(run_dir: str | Path, first: int, last: int, registered: dict[str, Any] | None,
                         mlflow_url: str | None, flow_run_url: str | None) -> str:  # fmt: skip
    """The self-play flow run's last words: what it trained, the version it left and where its evaluation shows."""
    lines = [f"trained iterations {first}-{last} of {run_dir}" if last >= first else f"no iteration trained: {run_dir}"]
    reg = registered or {}
    if reg.get("model_version") is not None:
        if reg.get("announced"):
            how = ("announced for evaluation: the azr-eval/evaluate deployment evaluates it in its own flow run "
                   "(and, with evaluation.promote, runs the promotion gate)")  # fmt: skip
        elif not reg.get("new"):
            how = "registered by the last commit, which announced it for evaluation"
        else:
            how = "not announced for evaluation (evaluation.on_register is false)"
        lines.append(f"model version {reg['model_version']} (iteration {last}): {how}")
    elif reg.get("error"):
        lines.append(f"no model version registered: {reg['error']}; the next flow run registers it")
    if mlflow_url:
        lines.append(f"MLflow run: {mlflow_url}")
    if flow_run_url:
        lines.append(f"this flow run: {flow_run_url}")
    lines.append(f"then: azr status --run {run_dir} --wait-eval 1800 (the version's scores and alias)")
    return "\n".join(lines)
