"""Benchmark of the task store: write a long run's history through the store, then query it through `azr sql`.

    python bench/bench_store.py                      # 10 M rollout rows over 500 iterations (a few minutes)
    python bench/bench_store.py --rows 200000        # quick check

What it measures:
1. writing: every iteration's proposals, tasks, rollouts and iteration row through RunStore (zstd, fsync, commit);
2. size on disk of the tables;
3. the typical history queries, each run through the real `azr sql` command as a subprocess (median of --repeats
   runs, start-up included) and in-process on one DuckDB connection (query alone):
   per-iteration validity and solve rates by task type, the 20 hardest tasks, one task's full lineage;
4. the cost of writing one cpu-tiny iteration's rows, against a nominal cpu-tiny iteration time (an assumption,
   stated in the output: --cpu-tiny-iteration-s).

The synthetic history keeps the shape of self-play: per iteration, proposals of three types (about half valid), new
tasks with K references to older ones, learnability rollouts on each new task, and solver rollouts on tasks drawn
newest-first then uniformly from the buffer, with a per-task difficulty so that "hardest" means something.
"""

from __future__ import annotations

import argparse
import base64
import csv
import io
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from azr_core.config import StoreConfig, load_config  # noqa: E402
from azr_core.store import RunStore, connect, open_run  # noqa: E402

TYPES = np.array(["deduction", "abduction", "induction"])
REASONS = np.array([
    "format: expected <think>...</think> then one <answer>...</answer>", "parse: missing ```input block",
    "error: ZeroDivisionError: division by zero", "timeout: over 5.0 s", "banned: import of os",
    "nondeterministic: outputs differ between runs",
])  # fmt: skip
WORDS = (
    "the list is sorted then each element doubles so the sum grows and we keep a running count of the "
    "odd values until the stack empties which means the loop ends when x reaches zero"
).split()


def _short_ids(rng: np.random.Generator, n: int) -> list[str]:
    """Random ids in the form of task_types.fingerprint / new_id (12 base32 characters)."""
    return [base64.b32encode(rng.bytes(8)).decode().lower()[:12] for _ in range(n)]


class History:
    """Generates one iteration of synthetic self-play rows at a time.

    Per iteration: `proposals_per_type` proposals of each type (80% well formatted, 60% of those valid); each valid
    one becomes a task with K references to older tasks and a difficulty; n learnability rollouts per new task; the
    rest of `rows_per_iteration` are solver rollouts on the new tasks first, then uniform over the buffer.
    """

    def __init__(self, rows_per_iteration: int, proposals_per_type: int, n_learn: int, k_refs: int, seed: int = 0):
        self.rng = np.random.default_rng(seed)
        self.rows = rows_per_iteration
        self.ppt = proposals_per_type
        self.n_learn = n_learn
        self.k = k_refs
        idx = self.rng.integers(0, len(WORDS), size=(20_000, 12))
        self.pool = pa.array([" ".join(WORDS[j] for j in row) + f" {k}." for k, row in enumerate(idx)])
        self.ids: list[str] = []  # the buffer, all types
        self.types: list[str] = []
        self.difficulty: list[float] = []
        self.prompts: list[str] = []

    def _texts(self, n: int, parts: int) -> pa.Array:
        """n completion-like texts, assembled from the fragment pool without a Python loop."""
        cols = [self.pool.take(pa.array(self.rng.integers(0, len(self.pool), n))) for _ in range(parts)]
        return pc.binary_join_element_wise(*cols, " ")

    def iteration(self, it: int) -> dict[str, pa.Table]:
        rng = self.rng
        n_prop = 3 * self.ppt
        ptype = np.repeat(TYPES, self.ppt)
        fmt_ok = rng.random(n_prop) < 0.8
        valid = fmt_ok & (rng.random(n_prop) < 0.6)
        pid = [f"p{it}-{i}" for i in range(n_prop)]
        new_ids = _short_ids(rng, n_prop)
        refs = [
            [self.ids[j] for j in rng.integers(0, len(self.ids), min(self.k, len(self.ids)))] for _ in range(n_prop)
        ]
        programs = [
            f"def f(x):\n    # {new_ids[i]}\n    return sorted(x)[::{1 + i % 3}] * {i % 7}" for i in range(n_prop)
        ]
        v = np.flatnonzero(valid)
        tasks = pa.table({
            "task_id": [new_ids[i] for i in v], "task_type": ptype[v], "program": [programs[i] for i in v],
            "input": ["[3, 1, 2]"] * len(v), "output": ["[1, 2, 3]"] * len(v),
            "proposal_id": [pid[i] for i in v], "reference_ids": [refs[i] for i in v],
        })  # fmt: skip
        self.ids += [new_ids[i] for i in v]
        self.types += list(ptype[v])
        self.difficulty += list(rng.beta(2, 2, len(v)))
        self.prompts += [f"# Task: solve\n```python\n{programs[i]}\n```\n" + "x" * 800 for i in v]

        newest = np.arange(len(self.ids) - len(v), len(self.ids))
        learn_pick = np.repeat(newest, self.n_learn)  # n rollouts per new task, grouped by task
        n_solve = max(0, self.rows - n_prop - len(learn_pick))
        solve_pick = np.concatenate([newest, rng.integers(0, len(self.ids), max(0, n_solve - len(newest)))])[:n_solve]
        pick = np.concatenate([learn_pick, solve_pick]).astype(int)
        correct = rng.random(len(pick)) > np.array(self.difficulty)[pick]
        s_fmt = rng.random(len(pick)) < 0.9
        rate = np.full(n_prop, np.nan)
        rate[v] = correct[: len(learn_pick)].reshape(len(v), self.n_learn).mean(axis=1) if len(v) else []
        learnable = (rate > 0) & (rate < 1)
        reward_p = np.where(~fmt_ok | ~valid, -1.0, np.where(learnable, 1 - np.nan_to_num(rate), 0.0))
        reward_s = np.where(~s_fmt, -1.0, np.where(correct, 1.0, -0.5))
        n_roll = n_prop + len(pick)
        purpose = np.array(["propose"] * n_prop + ["learnability"] * len(learn_pick) + ["solve"] * len(solve_pick))
        rollouts = pa.table({
            "rollout_id": [f"r{it}-{i}" for i in range(n_roll)],
            "role": np.where(purpose == "propose", "propose", "solve"),
            "task_type": np.concatenate([ptype, np.array(self.types, dtype=object)[pick]]),
            "purpose": purpose,
            "task_id": [new_ids[i] if valid[i] else None for i in range(n_prop)] + [self.ids[j] for j in pick],
            "proposal_id": pid + [pid[i] for i in np.repeat(v, self.n_learn)] + [None] * len(solve_pick),
            "prompt": [f"propose {t} with references " + "y" * 1500 for t in ptype] + [self.prompts[j] for j in pick],
            "completion": self._texts(n_roll, 4),
            "answer": pa.array([None] * n_prop + ["[1, 2, 3]"] * len(pick), pa.string()),
            "format_ok": np.concatenate([fmt_ok, s_fmt]),
            "correct": pa.array([None] * n_prop + correct.tolist(), pa.bool_()),
            "reward": np.concatenate([reward_p, reward_s]),
            "advantage": rng.normal(size=n_roll),
            "in_batch": purpose != "learnability",
            "prompt_tokens": rng.integers(200, 900, n_roll).astype(np.int32),
            "completion_tokens": rng.integers(20, 512, n_roll).astype(np.int32),
        })  # fmt: skip
        proposals = pa.table({
            "proposal_id": pid, "task_type": ptype, "stage": ["propose"] * n_prop, "format_ok": fmt_ok, "valid": valid,
            "reason": pa.array([None if ok else str(r) for ok, r in
                                zip(valid, REASONS[rng.integers(0, len(REASONS), n_prop)], strict=True)], pa.string()),
            "program": programs, "input": ["[3, 1, 2]"] * n_prop,
            "output": pa.array(["[1, 2, 3]" if ok else None for ok in valid], pa.string()),
            "task_id": pa.array([new_ids[i] if valid[i] else None for i in range(n_prop)], pa.string()),
            "duplicate": [False] * n_prop, "reference_ids": refs,
            "solve_rate": pa.array(rate, from_pandas=True),  # NaN -> null
            "n_solves": np.where(valid, self.n_learn, 0).astype(np.int32), "reward": reward_p,
        })  # fmt: skip
        metrics = [(f"valid_rate/{t}", float(valid[ptype == t].mean())) for t in TYPES]
        iteration = [{"stage": "train", "step": it, "checkpoint_id": f"ckpt-{it}", "wall_s": 180.0, "metrics": metrics}]
        return {"proposals": proposals, "tasks": tasks, "rollouts": rollouts, "iterations": iteration}


def commit_and_compact(store: RunStore, it: int, tables: dict) -> tuple[float, float | None]:
    """Write and commit one iteration, then compact as the self-play commit stage does: (write s, compaction s)."""
    t0 = time.perf_counter()
    with store.begin() as w:
        for name, table in tables.items():
            w.write(name, table)
        w.commit(f"ckpt-{it}")
    write_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    compacted = store.maybe_compact() is not None
    return write_s, (time.perf_counter() - t0 if compacted else None)


def write_history(run_dir: Path, rows: int, iterations: int, store_cfg: StoreConfig) -> dict[str, float]:
    """Write the synthetic run; return timing figures (generation excluded from the write times)."""
    hist = History(max(rows // iterations, 1), proposals_per_type=64, n_learn=8, k_refs=6)
    open_run(run_dir, load_config()).close()
    writes, compactions, total_rows = [], [], 0
    t_all = time.perf_counter()
    with RunStore(run_dir, store_cfg) as store:
        for it in range(1, iterations + 1):
            tables = hist.iteration(it)
            write_s, compact_s = commit_and_compact(store, it, tables)
            writes.append(write_s)
            compactions += [compact_s] if compact_s is not None else []
            total_rows += len(tables["rollouts"])
            if it % 50 == 0:
                print(f"  iteration {it}/{iterations}: {total_rows:,} rollout rows, last write {writes[-1]*1e3:.0f} ms",
                      flush=True)  # fmt: skip
    return {"rollout_rows": total_rows, "write_s": sum(writes), "wall_s": time.perf_counter() - t_all,
            "write_median_ms": statistics.median(writes) * 1e3, "compactions": len(compactions),
            "compact_s": sum(compactions), "compact_median_s": statistics.median(compactions) if compactions else 0.0,
            "write_p95_ms": float(np.percentile(writes, 95)) * 1e3}  # fmt: skip


def du(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def queries(con) -> dict[str, str]:
    """The history queries, written as a user would: no filter that the data does not need (`correct` is null on
    proposer rows, so count/avg over it already means "solver attempts"), literal ids for a lookup."""
    mid = con.sql("SELECT max(iteration) // 2 FROM tasks").fetchall()[0][0]
    found = con.sql(
        f"SELECT task_id FROM tasks WHERE iteration = {mid} AND len(reference_ids) > 0 ORDER BY task_id LIMIT 1"
    ).fetchall()
    task_id = found[0][0] if found else ""
    return {
        "validity and solve rate per iteration and task type": """
            WITH v AS (SELECT iteration, task_type, count(*) AS proposals, avg(valid::INT) AS validity
                       FROM proposals GROUP BY ALL),
                 s AS (SELECT iteration, task_type, count(correct) AS attempts, avg(correct::INT) AS solve_rate
                       FROM rollouts GROUP BY ALL)
            SELECT iteration, task_type, proposals, validity, attempts, solve_rate
            FROM v FULL JOIN s USING (iteration, task_type) ORDER BY iteration, task_type""",
        "20 hardest tasks": """
            WITH a AS (SELECT task_id, count(correct) AS attempts, avg(correct::INT) AS solve_rate
                       FROM rollouts GROUP BY task_id HAVING count(correct) >= 8
                       ORDER BY solve_rate, attempts DESC, task_id LIMIT 20)
            SELECT a.task_id, t.task_type, t.iteration AS created, a.attempts, a.solve_rate, t.program
            FROM a JOIN tasks t USING (task_id) ORDER BY a.solve_rate, a.attempts DESC, a.task_id""",
        "one task's full lineage": f"""
            WITH me AS MATERIALIZED (SELECT * FROM tasks WHERE task_id = '{task_id}')
            SELECT 'reference' AS kind, r.iteration, r.task_id AS id, r.task_type, NULL AS correct, NULL AS reward,
                   r.program AS text
            FROM tasks r, me WHERE list_contains(me.reference_ids, r.task_id)
            UNION ALL SELECT 'proposal', iteration, proposal_id, task_type, valid, reward, program
                   FROM proposals WHERE task_id = '{task_id}'
            UNION ALL SELECT 'task', iteration, task_id, task_type, NULL, NULL, program FROM me
            UNION ALL SELECT purpose, iteration, rollout_id, task_type, correct, reward, completion
                   FROM rollouts WHERE task_id = '{task_id}'
            ORDER BY iteration, kind, id""",
    }


def azr_command() -> list[str]:
    exe = Path(sys.executable).with_name("azr")
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "azr_core.cli"]


def time_cli(args: list[str], repeats: int) -> tuple[float, str]:
    times, out = [], ""
    for _ in range(repeats):
        t0 = time.perf_counter()
        proc = subprocess.run(args, capture_output=True, text=True, check=False)
        times.append(time.perf_counter() - t0)
        if proc.returncode != 0:
            raise SystemExit(f"azr sql failed ({proc.returncode}): {proc.stderr}")
        out = proc.stdout
    return statistics.median(times), out


def time_in_process(run_dir: Path, sql: str, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        connect(run_dir).sql(sql).fetchall()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def cpu_tiny_write(tmp: Path, n: int, nominal_s: float) -> tuple[float, int, float, int]:
    """Median time to write+commit one cpu-tiny iteration (fsync on), the rows such an iteration produces, and the
    compactions of those n iterations: seconds per iteration amortized, and how many ran."""
    cfg = load_config(profile="cpu-tiny")
    sp = cfg.selfplay
    hist = History(
        rows_per_iteration=3 * sp.batch_per_group * (2 + sp.learnability_rollouts),
        proposals_per_type=sp.batch_per_group,
        n_learn=sp.learnability_rollouts,
        k_refs=sp.references_k,
    )
    run_dir = tmp / "cpu-tiny"
    open_run(run_dir, cfg).close()
    times, compactions, rows = [], [], 0
    with RunStore(run_dir, cfg.store) as store:
        for it in range(1, n + 1):
            tables = hist.iteration(it)
            rows = sum(len(t) for t in tables.values())
            write_s, compact_s = commit_and_compact(store, it, tables)
            times.append(write_s)
            compactions += [compact_s] if compact_s is not None else []
    return statistics.median(times), rows, sum(compactions) / n, len(compactions)


def report_write(run_dir: Path, rows: int, iterations: int, store: list[str]) -> None:
    if run_dir.exists():
        shutil.rmtree(run_dir)
    cfg = load_config(None, [f"store.{kv}" for kv in store]).store
    print(f"writing {rows:,} rollout rows over {iterations} iterations into {run_dir} with {cfg} ...", flush=True)
    w = write_history(run_dir, rows, iterations, cfg)
    print(f"write: {w['rollout_rows']:,} rollout rows; store time {w['write_s']:.1f} s "
          f"(median {w['write_median_ms']:.0f} ms, p95 {w['write_p95_ms']:.0f} ms per iteration); "
          f"wall incl. data generation {w['wall_s']:.1f} s")  # fmt: skip
    print(f"compaction (every {cfg.compact_every} iterations): {w['compactions']} runs, {w['compact_s']:.1f} s in all, "
          f"median {w['compact_median_s']:.1f} s = {w['compact_s'] / max(w['write_s'], 1e-9):.0%} on top of the "
          f"write time; merged folders deleted after {cfg.retire_grace_s:g} s")  # fmt: skip


def report_queries(run_dir: Path, repeats: int) -> None:
    sizes = {t.name: du(t) + du(run_dir / "segments" / t.name) for t in sorted((run_dir / "tables").iterdir())}
    n_files = sum(1 for _ in run_dir.rglob("*.parquet"))
    con = connect(run_dir)
    counts = {t: con.sql(f"SELECT count(*) FROM {t}").fetchall()[0][0] for t in sizes}
    print(f"size on disk: {sum(sizes.values()) / 2**20:.1f} MiB in {n_files} files")
    for t, b in sizes.items():
        print(f"  {t:<11} {counts[t]:>12,} rows  {b / 2**20:9.1f} MiB  {b / max(counts[t], 1):8.1f} B/row")
    base = azr_command()
    startup, _ = time_cli([*base, "sql", "SELECT 1", "--run", str(run_dir)], repeats)
    print(f"\nazr sql start-up (SELECT 1, same run): {startup * 1e3:.0f} ms  [{' '.join(base)}]")
    print(f"{'query':<55} {'azr sql (median)':>17} {'in-process':>11} {'rows out':>9}")
    for name, sql in queries(con).items():
        cli_s, out = time_cli([*base, "sql", sql, "--run", str(run_dir), "--format", "csv"], repeats)
        inproc = time_in_process(run_dir, sql, repeats)
        n_out = sum(1 for _ in csv.reader(io.StringIO(out))) - 1
        print(f"{name:<55} {cli_s * 1e3:>14.0f} ms {inproc * 1e3:>8.0f} ms {n_out:>9,}")


def report_cpu_tiny(tmp: Path, nominal_s: float) -> None:
    tiny_s, tiny_rows, compact_s, n_compact = cpu_tiny_write(tmp, 100, nominal_s)
    print(f"\ncpu-tiny iteration write: {tiny_rows} rows (all tables) in {tiny_s * 1e3:.1f} ms median (fsync on) "
          f"+ {compact_s * 1e3:.1f} ms per iteration for compaction ({n_compact} runs in 100 iterations, amortized) "
          f"= {100 * (tiny_s + compact_s) / nominal_s:.3f}% of a nominal {nominal_s:.0f} s cpu-tiny "
          "iteration")  # fmt: skip
    print("  (the nominal time is an assumption: ~12 proposals, ~12 solves and a few learnability rollouts of <=160 "
          "tokens at ~38 tokens/s, plus one update, on 2 cores; --cpu-tiny-iteration-s changes it)")  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=10_000_000, help="Rollout rows in total (default 10 M).")
    ap.add_argument("--iterations", type=int, default=500, help="Iterations they spread over.")
    ap.add_argument("--repeats", type=int, default=5, help="Runs per query; the median is reported.")
    ap.add_argument("--run-dir", type=Path, default=None, help="Where to write (default: a temp folder, removed).")
    ap.add_argument("--reuse", action="store_true", help="Query an existing --run-dir without writing.")
    ap.add_argument("--store", nargs="*", default=["retire_grace_s=0"], metavar="KEY=VALUE",
                    help="store settings for the big run, e.g. row_group_size=8192 compact_every=0 (default: "
                         "retire_grace_s=0, since 500 iterations pass here in minutes where a real run takes the "
                         "hour of grace between compactions)")  # fmt: skip
    nominal_help = "Nominal wall time of one cpu-tiny iteration on 2 cores (an assumption; see the output)."
    ap.add_argument("--cpu-tiny-iteration-s", type=float, default=120.0, help=nominal_help)
    args = ap.parse_args()
    print(f"machine: {os.cpu_count()} cores, load average {os.getloadavg()[0]:.2f} (other work skews timings)")
    tmp = Path(tempfile.mkdtemp(prefix="azr-bench-"))
    run_dir = args.run_dir or tmp / "run"
    try:
        if not args.reuse:
            report_write(run_dir, args.rows, args.iterations, args.store)
        report_queries(run_dir, args.repeats)
        report_cpu_tiny(tmp, args.cpu_tiny_iteration_s)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print(f"load average at the end: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
