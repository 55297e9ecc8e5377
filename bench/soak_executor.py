"""Soak of the sandboxed executor: N programs (default 100,000) through one long-lived Executor, with a share of
hostile ones (infinite loops, memory hogs, recursion bombs, huge outputs, exceptions, a fork bomb the static checks
refuse), in chunks. Per chunk it prints throughput, the RSS of this process and of the executor's process tree, its
process count and this process's open file descriptors; at the end, whether anything leaked.

    python -m bench.soak_executor --n 100000 --hostile 0.02
"""

from __future__ import annotations

import argparse
import random
import statistics
import time

import psutil

from azr_core.executor import Executor
from azr_core.executor.config import ExecutorConfig
from bench.programs import make_programs

HOSTILE = [
    ("loop", "def f(x):\n    while True:\n        x += 1", "0"),
    ("memory", "def f(n):\n    return len([0] * (10 ** 10 + n))", "1"),
    ("recursion", "def f(n):\n    return f(n + 1) + 1", "0"),
    ("huge output", "def f(n):\n    return 'x' * (10 ** 8 + n)", "1"),
    ("exception", "def f(n):\n    return [1][n]", "5"),
    ("fork bomb", "import os\ndef f(n):\n    while True:\n        os.fork()", "0"),
]


def programs(n: int, hostile: float, seed: int) -> tuple[list[tuple[str, str]], list[str | None]]:
    """n (program, input) pairs and, per pair, the hostile kind (None for an honest one)."""
    rng = random.Random(seed)
    items, kinds = [], []
    for program, inp in make_programs(n, 0.0, seed=seed):
        if rng.random() < hostile:
            kind, program, inp = rng.choice(HOSTILE)
            kinds.append(kind)
        else:
            kinds.append(None)
        items.append((program, inp))
    return items, kinds


def tree() -> list[psutil.Process]:
    """This process's descendants: the executor's workers and everything under them."""
    return psutil.Process().children(recursive=True)


def sandbox_user_processes() -> int:
    return sum(1 for p in psutil.process_iter(["username"]) if p.info["username"] == "azr-sandbox")


def rss_mb(procs: list[psutil.Process]) -> float:
    total = 0
    for p in procs:
        try:
            total += p.memory_info().rss
        except psutil.Error:
            pass
    return total / 2**20


def soak(args: argparse.Namespace) -> dict[str, float]:
    """Run the soak, printing a line per chunk; returns the figures the verdict rests on."""
    items, kinds = programs(args.n, args.hostile, seed=7)
    cfg = ExecutorConfig(timeout_s=args.timeout, workers=args.workers)
    me = psutil.Process()
    before_sandbox = sandbox_user_processes()
    fds0 = me.num_fds()
    n_hostile = sum(k is not None for k in kinds)
    print(f"n={args.n} hostile={args.hostile:.0%} ({n_hostile}) workers={cfg.resolved_workers()} "
          f"timeout={args.timeout}s; sandbox-user processes before: {before_sandbox}")  # fmt: skip
    print("chunk\tprog/s\tvalid\thostile\thostile_valid\tself_rss_mb\ttree_rss_mb\ttree_procs\tfds")
    rates, valid_total, hostile_valid, tree_rss, tree_procs = [], 0, 0, [], []
    t_all = time.perf_counter()
    with Executor(cfg).start() as ex:
        for k in range(0, args.n, args.chunk):
            chunk, ck = items[k : k + args.chunk], kinds[k : k + args.chunk]
            t0 = time.perf_counter()
            results = ex.validate_many(chunk)
            dt = time.perf_counter() - t0
            assert len(results) == len(chunk)
            hv = sum(1 for r, kind in zip(results, ck, strict=True) if kind is not None and r.valid)
            valid_total += sum(r.valid for r in results)
            hostile_valid += hv
            rates.append(len(chunk) / dt)
            procs = tree()
            tree_rss.append(rss_mb(procs))
            tree_procs.append(len(procs))
            print(f"{k // args.chunk + 1}\t{rates[-1]:.0f}\t{sum(r.valid for r in results)}\t"
                  f"{sum(x is not None for x in ck)}\t{hv}\t{me.memory_info().rss / 2**20:.0f}\t{rss_mb(procs):.0f}\t"
                  f"{len(procs)}\t{me.num_fds()}", flush=True)  # fmt: skip
    total = time.perf_counter() - t_all
    # Closing kills each firejail namespace; the kernel tears its processes down a moment later, so wait (bounded)
    # for the sandbox user's process count to come back to where it was.
    t_close = time.perf_counter()
    while (after_sandbox := sandbox_user_processes()) > before_sandbox and time.perf_counter() - t_close < 30:
        time.sleep(0.2)
    gone_s = time.perf_counter() - t_close
    leftovers = tree()
    q = max(1, len(rates) // 4)
    print(f"\n{args.n} programs in {total:.0f}s ({args.n / total:.0f} prog/s overall); valid {valid_total}; hostile "
          f"programs judged valid: {hostile_valid} (must be 0)")  # fmt: skip
    print(f"throughput, first quarter of chunks vs last: median {statistics.median(rates[:q]):.0f} vs "
          f"{statistics.median(rates[-q:]):.0f} prog/s")  # fmt: skip
    print(f"after close: sandbox-user processes {after_sandbox} (before {before_sandbox}) {gone_s:.1f}s after close; "
          f"child processes {len(leftovers)}; open fds {me.num_fds()} (before {fds0})")  # fmt: skip
    return {"programs": args.n, "seconds": total, "hostile_valid": hostile_valid, "leftover_processes": len(leftovers),
            "sandbox_before": before_sandbox, "sandbox_after": after_sandbox,
            "fds_before": fds0, "fds_after": me.num_fds(), "rate_first": statistics.median(rates[:q]),
            "rate_last": statistics.median(rates[-q:]), "rss_first": tree_rss[0], "rss_last": tree_rss[-1],
            "procs_first": tree_procs[0], "procs_last": tree_procs[-1]}  # fmt: skip


def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=100_000)
    ap.add_argument("--hostile", type=float, default=0.02, help="share of hostile programs")
    ap.add_argument("--chunk", type=int, default=5_000)
    ap.add_argument("--timeout", type=float, default=1.0)
    ap.add_argument("--workers", type=int, default=0)
    return ap


def main() -> None:
    r = soak(parser().parse_args())
    # (the sandbox-user count is machine-wide, for information: other executors on the machine change it)
    ok = r["hostile_valid"] == 0 and not r["leftover_processes"] and r["fds_after"] <= r["fds_before"]
    print("SOAK OK" if ok else "SOAK FAILED")


if __name__ == "__main__":
    main()
