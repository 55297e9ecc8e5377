"""Soak of self-play: N (default 50) `cpu-tiny` iterations with a small generation budget in one session, printing
per iteration its wall time, the policy workers' RSS and this process's RSS, then the first-10 and last-10 medians.
Memory and iteration time should stay flat.

    python -m bench.soak_selfplay --iterations 50 [key.sub=value ...]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time

import psutil

SMALL = ["rollout.max_new_tokens=48", "selfplay.batch_per_group=2", "selfplay.learnability_rollouts=2",
         "buffers.seed_quota=4", "buffers.seed_round_size=4", "buffers.seed_max_rounds=1",
         "tracking.register_every=0", "store.fsync=false"]  # fmt: skip


def _ranks_rss_mb(policy) -> float:
    proc = getattr(policy, "proc", None)
    if proc is None:
        return 0.0
    total = 0
    for p in psutil.Process(proc.pid).children(recursive=True):
        try:
            if any(a.startswith("--local_rank") for a in p.cmdline()):
                total += p.memory_info().rss
        except psutil.Error:
            pass
    return total / 2**20


def soak(iterations: int, overrides: list[str], run_dir: str | None = None) -> dict[str, list[float]]:
    from azr_core.config import load_config
    from azr_core.selfplay.iteration import run_iteration
    from azr_core.selfplay.session import Session

    run_dir = run_dir or tempfile.mkdtemp(prefix="azr-soak-")
    state = tempfile.mkdtemp(prefix="azr-soak-mlflow-")
    cfg = load_config(None, [f"run.run_dir={run_dir}", f"tracking.tracking_uri=sqlite:///{state}/mlflow.db",
                             f"run.iterations={iterations}", *SMALL, *overrides], profile="cpu-tiny")  # fmt: skip
    walls, ranks, own = [], [], []
    print(f"run folder {run_dir}\nit\twall_s\tworker_rss_mb\tself_rss_mb", flush=True)
    with Session(cfg) as s:
        while s.last_iteration < iterations:
            t0 = time.perf_counter()
            run_iteration(s)
            walls.append(time.perf_counter() - t0)
            ranks.append(_ranks_rss_mb(s.policy))
            own.append(psutil.Process().memory_info().rss / 2**20)
            print(f"{s.last_iteration}\t{walls[-1]:.1f}\t{ranks[-1]:.0f}\t{own[-1]:.0f}", flush=True)
    k = min(10, max(1, len(walls) // 3))
    for name, xs in (("wall_s", walls[1:] or walls), ("worker_rss_mb", ranks), ("self_rss_mb", own)):
        print(f"{name}: first {k} median {statistics.median(xs[:k]):.1f}, last {k} median "
              f"{statistics.median(xs[-k:]):.1f}, max {max(xs):.1f}")  # fmt: skip
    return {"wall_s": walls, "worker_rss_mb": ranks, "self_rss_mb": own}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--iterations", type=int, default=50)
    ap.add_argument("--run-dir", default=None)
    ap.add_argument("overrides", nargs="*")
    args = ap.parse_args()
    soak(args.iterations, args.overrides, args.run_dir)


if __name__ == "__main__":
    main()
