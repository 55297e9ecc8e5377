"""Per-iteration wall time by stage of the `cpu-tiny` profile, and the share spent outside model and executor work.

Runs the real flow `azr` in this process (Prefect's ephemeral API, no server: the orchestration overhead per task is
the same code path a worker runs), then reads the `iterations` table of the run folder:

    wall_s                     the iteration, from its start to its commit
    seconds/<stage>            time inside each stage function (seed, propose, execute_validate, solve, reward, update)
    outside = wall - stages    Prefect task orchestration, persistence (commit: Parquet + COMMITTED) and tracking

    .venv/bin/python bench/bench_pipeline.py --iterations 2                       # cpu-tiny as shipped
    .venv/bin/python bench/bench_pipeline.py --iterations 1 selfplay.batch_per_group=1 rollout.max_new_tokens=24
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

MODEL_STAGES = ("seed", "propose", "solve", "update")  # generation and the DeepSpeed step
EXECUTOR_STAGES = ("execute_validate", "reward")  # sandboxed validation and grading


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--iterations", type=int, default=2)
    ap.add_argument("--run-dir", default=None, help="run folder (default: a new temp folder)")
    ap.add_argument("overrides", nargs="*", help="config overrides key.sub=value")
    args = ap.parse_args()
    run_dir = args.run_dir or tempfile.mkdtemp(prefix="azr-bench-pipeline-")
    state = tempfile.mkdtemp(prefix="azr-bench-mlflow-")
    os.environ.setdefault("MLFLOW_TRACKING_URI", f"sqlite:///{state}/mlflow.db")

    from flows.self_play import self_play

    t0 = time.perf_counter()
    self_play(profile="cpu-tiny", run_dir=run_dir, iterations=args.iterations, overrides=list(args.overrides))
    total = time.perf_counter() - t0

    from azr_core.store import connect

    con = connect(run_dir)
    rows = con.execute("SELECT iteration, wall_s, metrics FROM iterations WHERE iteration > 0 ORDER BY 1").fetchall()
    print(f"run folder {run_dir}; flow run total {total:.1f}s (includes opening the run: workers, sandbox, MLflow)")
    shares = []
    for iteration, wall, m in rows:
        model = sum(m.get(f"seconds/{s}", 0.0) for s in MODEL_STAGES)
        execu = sum(m.get(f"seconds/{s}", 0.0) for s in EXECUTOR_STAGES)
        outside = wall - model - execu
        shares.append(outside / wall)
        stages = "  ".join(f"{s}={m.get(f'seconds/{s}', 0.0):.1f}s" for s in (*MODEL_STAGES, *EXECUTOR_STAGES))
        print(f"iteration {iteration}: wall {wall:.1f}s | {stages} | commit={m.get('seconds/commit', 0.0):.2f}s")
        print(
            f"    model {model:.1f}s ({model / wall:.1%})  executor {execu:.2f}s ({execu / wall:.2%})  "
            f"outside {outside:.2f}s ({outside / wall:.2%})"
        )
    if shares:
        print(f"median share outside model and executor work: {statistics.median(shares):.2%} (goal < 5%)")


if __name__ == "__main__":
    main()
