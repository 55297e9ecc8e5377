"""Executor throughput: the sandboxed pool against the reference design, in one process run.

Baseline (the reference design): ONE unsandboxed worker process; for each program the parent sends it over a pipe,
the worker checks imports, `exec`s it and calls `f` twice in-process; the parent waits up to the time limit and, on a
timeout, kills and restarts the worker (as pebble's pool does), so every infinite loop stalls the whole batch.

Ours: Executor.validate_many with the default config (firejail workers, fork per execution, full static checks,
two runs in different workers for determinism), the same time limit.

    .venv/bin/python bench/bench_executor.py                 # 10,000 programs, clean and with 1% infinite loops
    .venv/bin/python bench/bench_executor.py --n 1000 --repeats 1   # a quick look
"""

from __future__ import annotations

import argparse
import ast
import multiprocessing as mp
import os
import statistics
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from azr_core.executor import Executor, ExecutorConfig  # noqa: E402
from bench.programs import make_programs  # noqa: E402

BANNED = {"os", "sys", "subprocess", "random", "time", "datetime", "socket", "threading", "multiprocessing"}


def _baseline_worker(conn) -> None:
    while True:
        msg = conn.recv()
        if msg is None:
            return
        program, input_text = msg
        try:
            tree = ast.parse(program)
            for node in ast.walk(tree):  # the reference checks import statements only
                if isinstance(node, (ast.Import, ast.ImportFrom)):
                    names = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ""]
                    if any(n.split(".")[0] in BANNED for n in names):
                        raise ImportError("banned")
            env: dict = {}
            exec(compile(tree, "<program>", "exec"), env)
            first = repr(eval(f"f({input_text})", env))
            second = repr(eval(f"f({input_text})", env))
            conn.send((first == second, first))
        except Exception as exc:  # noqa: BLE001
            conn.send((False, type(exc).__name__))


def run_baseline(programs: list[tuple[str, str]], timeout: float) -> tuple[float, int]:
    ctx = mp.get_context("fork")

    def start():
        parent, child = ctx.Pipe()
        proc = ctx.Process(target=_baseline_worker, args=(child,), daemon=True)
        proc.start()
        return parent, proc

    conn, proc = start()
    valid = 0
    t0 = time.perf_counter()
    for item in programs:
        conn.send(item)
        if conn.poll(timeout):
            ok, _ = conn.recv()
            valid += ok
        else:  # stalled: kill and restart the worker, as the reference's process pool does
            proc.kill()
            proc.join()
            conn, proc = start()
    elapsed = time.perf_counter() - t0
    conn.send(None)
    proc.join(timeout=5)
    return elapsed, valid


FORK_FLOOR_SRC = """
import gc, os, sys, time
gc.collect(); gc.freeze()
n = int(sys.argv[1]); t0 = time.perf_counter()
for _ in range(n):
    pid = os.fork()
    if pid == 0:
        os._exit(0)
    os.waitpid(pid, 0)
print((time.perf_counter() - t0) / n)
"""


def fork_floor(python: str, n: int = 1000) -> float:
    """Seconds per fork + exit + wait of a bare `python` process: what every sandboxed execution pays at least.

    Measured with the interpreter the sandbox uses, outside the sandbox: the floor of the design, not of firejail
    (whose seccomp filter and namespaces add ~20-25% to each execution: `bench/profile_executor.py --sandbox none`).
    """
    out = subprocess.run([python, "-S", "-s", "-B", "-c", FORK_FLOOR_SRC, str(n)], capture_output=True, text=True)
    return float(out.stdout.strip())


def run_sandboxed(programs: list[tuple[str, str]], cfg: ExecutorConfig) -> tuple[float, int, float]:
    t0 = time.perf_counter()
    ex = Executor(cfg).start()
    startup = time.perf_counter() - t0
    t0 = time.perf_counter()
    results = ex.validate_many(programs)
    elapsed = time.perf_counter() - t0
    ex.close()
    return elapsed, sum(r.valid for r in results), startup


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=10_000, help="programs per batch")
    ap.add_argument("--timeout", type=float, default=1.0, help="time limit per execution, both designs")
    ap.add_argument("--loop-fraction", type=float, default=0.01, help="share of infinite loops in the second batch")
    ap.add_argument("--workers", type=int, default=0, help="sandbox workers (0 = the default auto rule)")
    ap.add_argument("--repeats", type=int, default=3, help="runs of the clean batch (median reported)")
    args = ap.parse_args()
    cfg = ExecutorConfig(timeout_s=args.timeout, workers=args.workers)
    print(f"cpus={os.cpu_count()} sandbox workers={cfg.resolved_workers()} timeout={args.timeout}s n={args.n}")
    floor = statistics.median(fork_floor(cfg.python) for _ in range(3))
    ceiling = (os.cpu_count() or 1) / (cfg.determinism_runs * floor)
    print(
        f"machine floor: one fork+exit+wait of {cfg.python} takes {floor * 1e6:.0f} us; a validation needs "
        f"{cfg.determinism_runs} fresh children, so no fork-per-execution design exceeds {ceiling:.0f} prog/s here "
        "(all cores forking, nothing else done)"
    )

    clean = make_programs(args.n, 0.0, seed=1)
    base_t, ours_t = [], []
    for r in range(args.repeats):
        bt, bvalid = run_baseline(clean, args.timeout)
        ot, ovalid, startup = run_sandboxed(clean, cfg)
        base_t.append(bt)
        ours_t.append(ot)
        print(
            f"  clean run {r + 1}: baseline {args.n / bt:8.0f} prog/s ({bvalid} valid)  "
            f"sandboxed {args.n / ot:8.0f} prog/s ({ovalid} valid, worker start-up {startup:.2f}s)"
        )
    b, o = statistics.median(base_t), statistics.median(ours_t)
    print(f"CLEAN   baseline {args.n / b:8.0f} prog/s | sandboxed {args.n / o:8.0f} prog/s | ratio {b / o:5.2f}x")

    looping = make_programs(args.n, args.loop_fraction, seed=2)
    bt, bvalid = run_baseline(looping, args.timeout)
    ot, ovalid, _ = run_sandboxed(looping, cfg)
    print(
        f"LOOPS {args.loop_fraction:.0%} baseline {args.n / bt:8.0f} prog/s ({bt:.1f}s, {bvalid} valid) | "
        f"sandboxed {args.n / ot:8.0f} prog/s ({ot:.1f}s, {ovalid} valid) | ratio {bt / ot:5.2f}x"
    )


if __name__ == "__main__":
    main()
