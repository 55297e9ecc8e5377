"""The `azr` flow: open the run, then iterations of seed -> propose -> execute-validate -> solve -> reward -> update ->
commit (`azr_core.selfplay.iteration.run_iteration`, each stage a Prefect task) until the run's iteration target,
this flow run's iteration budget or its wall-clock budget is reached; then `register` (the last committed iteration
as a model version, announced for evaluation) and a closing message with the URLs. Pure sequencing.

    prefect deployment run azr/self-play -p iterations=3
"""

from __future__ import annotations

import time

from prefect import flow, runtime
from prefect.states import Completed, State
from prefect.utilities.annotations import quote
from prefect.utilities.urls import url_for

from azr_core.config import load_config
from azr_core.outcome import flow_closing_message, mlflow_run_url
from azr_core.selfplay.iteration import run_iteration
from azr_core.stack.join import check_run_folder_shared
from azr_core.stack.settings import StackSettings
from azr_core.store import read_commit
from tasks import selfplay as t


def _finished(run_dir: object, iterations: int) -> str:
    return f"run {run_dir} has reached run.iterations={iterations}: nothing left to train"


@flow(name="azr", log_prints=True)
def self_play(
    config: str | None = None,
    overrides: list[str] | None = None,
    profile: str | None = None,
    run_dir: str | None = None,
    iterations: int | None = None,
    max_wall_s: float | None = None,
) -> dict | State:
    """Self-play on one run folder, resuming from its last committed iteration.

    config: YAML file; overrides: `key.sub=value` items; profile: default | cpu-tiny; run_dir overrides run.run_dir;
    iterations: at most this many iterations in this flow run (0 runs none); max_wall_s: no new iteration once this
    budget could be exceeded (0 runs none). None for either means the config's value (run.max_iterations_per_session,
    run.max_wall_s), whose None means no limit.

    A run folder that has reached run.iterations is not opened (no workers start): the flow run ends in the Completed
    state named "Nothing to train", whose message says so and how to train on.
    """
    extra = list(overrides or [])
    if run_dir:
        extra.append(f"run.run_dir={run_dir}")
    cfg = load_config(config, extra, profile=profile)
    check_run_folder_shared(cfg.run.run_dir)  # on a worker joined from another host: the run folder is shared
    budget_iters = iterations if iterations is not None else cfg.run.max_iterations_per_session
    budget_s = max_wall_s if max_wall_s is not None else cfg.run.max_wall_s
    done, start, last_s = 0, time.monotonic(), 0.0
    if budget_iters == 0 or budget_s == 0:  # a zero budget runs nothing (it never means "no limit")
        print("an iteration budget of 0 (iterations or max_wall_s): nothing to run")
        return {"run_dir": cfg.run.run_dir, "iterations_done": 0, "last_iteration": None}
    committed = read_commit(cfg.run.run_dir)
    if committed is not None and committed.iteration >= cfg.run.iterations:
        msg = (
            f"{_finished(cfg.run.run_dir, cfg.run.iterations)}; raise run.iterations "
            f"(e.g. -p overrides='[\"run.iterations={2 * cfg.run.iterations}\"]') to train on"
        )
        print(msg)
        result = {"run_dir": cfg.run.run_dir, "iterations_done": 0, "last_iteration": committed.iteration}
        return Completed(name="Nothing to train", message=msg, data=result)
    with t.open_run(cfg.model_dump(mode="json"), flow_run_id=str(runtime.flow_run.id)) as session:
        last_commit = session
        while session.last_iteration < cfg.run.iterations and (budget_iters is None or done < budget_iters):
            if budget_s is not None and time.monotonic() - start + last_s > budget_s:
                nxt = session.last_iteration + 1
                print(f"wall-clock budget of {budget_s:.0f}s reached: stopping before iteration {nxt}")
                break
            began = time.monotonic()
            last_commit = run_iteration(session, call=t.as_tasks(after=last_commit))  # the commit's handoff
            last_s, done = time.monotonic() - began, done + 1
        last = session.last_iteration
        # Every flow run that trained leaves a model version, so the evaluation runs after the main job too.
        registered = t.register(quote(session), last, after=last_commit) if done else None
        if last >= cfg.run.iterations:
            print(_finished(session.run_dir, cfg.run.iterations))
        tracker = session.tracker
        mlflow_url = (mlflow_run_url(StackSettings.resolve().mlflow_url, tracker.experiment_id, tracker.run_id)
                      if tracker.run_id else None)  # fmt: skip
    # url_for, not runtime.flow_run.ui_url: Prefect 3.9's runtime builds /flow-runs/flow-run/<id>, a page its UI lacks.
    flow_run_url = url_for("flow-run", obj_id=runtime.flow_run.id) if runtime.flow_run.id else None
    print(flow_closing_message(session.run_dir, last - done + 1, last, registered, mlflow_url, flow_run_url))
    return {"run_dir": str(session.run_dir), "iterations_done": done, "last_iteration": last,
            "model_version": (registered or {}).get("model_version"), "mlflow_run_url": mlflow_url,
            "flow_run_url": flow_run_url}  # fmt: skip


if __name__ == "__main__":
    self_play()
