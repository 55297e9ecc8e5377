"""Where each execution's CPU goes: the host process, the sandbox workers, the children they fork.

Reads /proc/<pid>/stat of every worker (its own utime/stime and minor faults, and cutime/cstime/cminflt of the
children it has waited for) before and after a batch of clean validations, and the host's process_time. No perf
or py-spy needed.

    .venv/bin/python bench/profile_executor.py --n 2000
"""

from __future__ import annotations

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from azr_core.executor import Executor, ExecutorConfig  # noqa: E402
from bench.programs import make_programs  # noqa: E402

TICK = os.sysconf("SC_CLK_TCK")


def _descendants(root: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/stat") as fh:
                ppid = int(fh.read().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        children.setdefault(ppid, []).append(int(pid))
    out, stack = [], [root]
    while stack:
        pid = stack.pop()
        for c in children.get(pid, []):
            out.append(c)
            stack.append(c)
    return out


def _stat(pid: int) -> dict[str, float]:
    with open(f"/proc/{pid}/stat") as fh:
        f = fh.read().rsplit(")", 1)[1].split()
    # fields after the name: state(0) ppid(1) ... minflt(7) cminflt(8) majflt(9) cmajflt(10) utime(11) stime(12)
    # cutime(13) cstime(14)
    return {
        "self_cpu": (int(f[11]) + int(f[12])) / TICK,
        "child_cpu": (int(f[13]) + int(f[14])) / TICK,
        "self_faults": int(f[7]),
        "child_faults": int(f[8]),
    }


def snapshot(ex: Executor) -> dict[str, float]:
    """Summed counters of the python workers (the innermost python under each firejail)."""
    total: dict[str, float] = {}
    for w in ex._pool._workers:  # noqa: SLF001 (a profiling tool may look inside)
        pids = [w.proc.pid, *_descendants(w.proc.pid)]
        pythons = [p for p in pids if _comm(p).startswith("python")]
        for pid in pythons[-1:]:
            for k, v in _stat(pid).items():
                total[k] = total.get(k, 0) + v
    return total


def _comm(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/comm") as fh:
            return fh.read().strip()
    except OSError:
        return ""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=2000)
    ap.add_argument("--workers", type=int, default=0)
    ap.add_argument("--sandbox", choices=["firejail", "none"], default="firejail", help="none: what firejail adds")
    args = ap.parse_args()
    programs = make_programs(args.n, 0.0, seed=3)
    with Executor(ExecutorConfig(timeout_s=1.0, workers=args.workers, sandbox=args.sandbox)) as ex:
        ex.validate_many(programs[:200])  # warm up
        before, host0, t0 = snapshot(ex), time.process_time(), time.perf_counter()
        execs0 = ex.stats["executions"]
        ex.validate_many(programs)
        wall, host, after = time.perf_counter() - t0, time.process_time() - host0, snapshot(ex)
        execs = ex.stats["executions"] - execs0
    d = {k: after[k] - before.get(k, 0) for k in after}
    per = 1e6 / execs
    print(f"{args.n} validations, {execs} executions, {args.n / wall:.0f} prog/s, load {os.getloadavg()[0]:.2f}")
    print(
        f"per execution: host {host * per:.0f} us CPU | worker {d['self_cpu'] * per:.0f} us CPU, "
        f"{d['self_faults'] / execs:.0f} minor faults | child {d['child_cpu'] * per:.0f} us CPU, "
        f"{d['child_faults'] / execs:.0f} minor faults"
    )


if __name__ == "__main__":
    main()
