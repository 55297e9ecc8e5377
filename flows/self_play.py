"""The `azr` flow: open the run, then iterations of seed -> propose -> execute-validate -> solve -> reward -> update ->
commit until the iteration target, the per-run iteration cap or the wall-clock budget is reached. Pure sequencing.

    prefect deployment run azr/self-play -p overrides='["run.iterations=3"]'
"""

from __future__ import annotations

import time

from prefect import flow, runtime

from azr_core.config import load_config
from tasks import selfplay as t


@flow(name="azr", log_prints=True)
def self_play(
    config: str | None = None,
    overrides: list[str] | None = None,
    profile: str | None = None,
    run_dir: str | None = None,
    iterations: int | None = None,
    max_wall_s: float | None = None,
) -> dict:
    """Self-play on one run folder, resuming from its last committed iteration.

    config: YAML file; overrides: `key.sub=value` items; profile: default | cpu-tiny; run_dir overrides run.run_dir;
    iterations: at most this many iterations in this flow run; max_wall_s: no new iteration after this budget.
    """
    extra = list(overrides or [])
    if run_dir:
        extra.append(f"run.run_dir={run_dir}")
    cfg = load_config(config, extra, profile=profile)
    budget_iters = iterations or cfg.run.max_iterations_per_session
    budget_s = max_wall_s or cfg.run.max_wall_s
    opened = t.open_run(cfg.model_dump(mode="json"), flow_run_id=str(runtime.flow_run.id))
    rd, done, start, last_s = opened["run_dir"], 0, time.monotonic(), 0.0
    try:
        it = opened["last_iteration"] + 1
        while it <= cfg.run.iterations and (budget_iters is None or done < budget_iters):
            if budget_s is not None and time.monotonic() - start + last_s > budget_s:
                print(f"wall-clock budget of {budget_s:.0f}s reached: stopping before iteration {it}")
                break
            began = time.monotonic()
            t.seed(rd, it)
            t.propose(rd, it)
            t.execute_validate(rd, it)
            t.solve(rd, it)
            t.reward(rd, it)
            t.update(rd, it)
            t.commit(rd, it)
            last_s = time.monotonic() - began
            done, it = done + 1, it + 1
    finally:
        t.close_run(rd)
    return {"run_dir": rd, "iterations_done": done, "last_iteration": it - 1}


if __name__ == "__main__":
    self_play()
