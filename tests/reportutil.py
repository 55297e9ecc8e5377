"""A small real run folder (the store's own writer, real Parquet) and a real MLflow store beside it (a SQLite file,
the run's MLflow run, two registered versions of the tiny model with the promotion gate's tags), for the report and
the read-only tests."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from azr_core.eval.store import write_evals
from azr_core.store.run import open_run

TYPES = ("deduction", "abduction", "induction")


def make_run(run_dir: Path) -> None:
    store = open_run(run_dir)
    try:
        for it in (1, 2, 3):
            now = datetime.now(UTC)
            metrics = {"train/loss": 1.0 / it, "seconds/propose": 2.0 + it, "seconds/solve": 3.0}
            for t in TYPES:
                metrics |= {f"valid_rate/{t}": 0.1 * it, f"format_rate/propose/{t}": 0.2 * it,
                            f"solve_accuracy/{t}": 0.3, f"format_rate/solve/{t}": 0.5,
                            f"reward_mean/solve/{t}": -0.5 + 0.1 * it, f"reward_mean/propose/{t}": -1.0 + 0.2 * it,
                            f"invalid/{t}/check": 5.0 - it, f"invalid/{t}/error": 2.0}  # fmt: skip
            tasks = [{"task_id": f"{t}-{it}", "task_type": t, "program": "def f(x):\n" + "    x = x + 1\n" * it
                      + "    return x", "input": "1", "output": str(1 + it)} for t in TYPES]  # fmt: skip
            rollouts = [{"rollout_id": f"r{it}{t}{k}", "role": "solve", "task_type": t, "purpose": "solve",
                         "task_id": f"{t}-{it}", "completion": f"<think>add</think><answer>{k}</answer>",
                         "answer": str(k), "correct": k == 1 + it, "reward": 1.0 if k == 1 + it else -0.5}
                        for t in TYPES for k in (1 + it, 0)]  # fmt: skip
            with store.begin(it) as w:
                w.write("tasks", tasks)
                w.write("rollouts", rollouts)
                w.write("iterations", [{"stage": "train", "step": it, "started_at": now, "finished_at": now,
                                        "wall_s": 10.0, "metrics": metrics}])  # fmt: skip
                w.commit()
    finally:
        store.close()
    for version, acc in ((1, [True, False]), (2, [True, True])):
        rows = [{"eval_id": f"e{version}", "model": f"models:/azr-policy/{version}", "model_version": version,
                 "iteration": version, "bench": "cruxeval-o", "item_id": f"sample_{i}", "sample": 0,
                 "correct": c, "created_at": datetime.now(UTC)} for i, c in enumerate(acc)]  # fmt: skip
        write_evals(run_dir, f"e{version}", "cruxeval-o", rows)


def make_registry(run_dir: Path, root: Path) -> str:
    """The run's MLflow run (FINISHED) in `root/mlflow.db`, versions 1 and 2 of azr-policy with the tags the gate
    writes (1 first champion, 2 rejected against it at p = 0.42); returns the tracking URI."""
    from azr_core.policy.tiny import make_tiny_model_dir
    from azr_core.tracking.runs import Tracker, TrackingConfig

    uri = f"sqlite:///{root / 'mlflow.db'}"
    model = make_tiny_model_dir(root / "tiny", hidden=16, layers=1)
    tracker = Tracker(run_dir, TrackingConfig(tracking_uri=uri), tags={"azr.prefect_flow_run_id": "0f1e2d3c"})
    tracker.log_metrics({"solve/accuracy": 0.5}, step=1)
    for it in (1, 2):
        tracker.register_checkpoint(model, iteration=it)
    client = tracker.client
    client.set_registered_model_alias("azr-policy", "champion", "1")
    decisions = {"1": {"decision": "first-champion", "against": "", "p_value": "", "delta": "", "test": "bootstrap",
                       "reason": "no champion yet: the first complete candidate becomes champion"},
                 "2": {"decision": "rejected", "against": "1", "p_value": "0.42", "delta": "0.000000",
                       "test": "bootstrap", "reason": "gap +0.0000 over 2 paired items"}}  # fmt: skip
    for version, tags in decisions.items():
        for key, value in tags.items():
            client.set_model_version_tag("azr-policy", version, f"azr.promotion.{key}", value)
        client.set_model_version_tag("azr-policy", version, "azr.eval.cruxeval-o", "0.5" if version == "1" else "1.0")
        client.set_model_version_tag("azr-policy", version, "azr.eval.cruxeval-o.n", "2")
    tracker.close("FINISHED")
    return uri
