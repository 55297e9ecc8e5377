"""What the report plots, read from a run folder's tables with DuckDB: plain lists and dicts, no plotting here."""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path
from typing import Any

from azr_core.store import connect

Series = dict[str, list[tuple[int, float]]]  # label -> [(iteration, value)]


def metric_series(con, pattern: str) -> Series:
    """Iteration metrics whose name matches the SQL LIKE `pattern`, by name (training iterations only)."""
    rows = con.execute(
        "SELECT iteration, k, v FROM (SELECT iteration, unnest(map_keys(metrics)) AS k, unnest(map_values(metrics)) "
        "AS v FROM iterations WHERE stage <> 'seed') WHERE k LIKE ? ORDER BY iteration",
        [pattern],
    ).fetchall()
    out: Series = defaultdict(list)
    for it, k, v in rows:
        if v is not None:
            out[k].append((int(it), float(v)))
    return dict(out)


def task_mix(con) -> Series:
    """New tasks per iteration by type."""
    rows = con.execute("SELECT iteration, task_type, count(*) FROM tasks GROUP BY ALL ORDER BY 1").fetchall()
    out: Series = defaultdict(list)
    for it, t, n in rows:
        out[t].append((int(it), float(n)))
    return dict(out)


def program_stats(con) -> tuple[Series, Series]:
    """Mean program length (characters) and complexity (AST nodes) of the tasks added per iteration, by type."""
    rows = con.execute("SELECT iteration, task_type, program FROM tasks ORDER BY iteration").fetchall()
    acc: dict[tuple[str, int], list[tuple[int, int]]] = defaultdict(list)
    for it, t, program in rows:
        acc[(t, int(it))].append((len(program or ""), _ast_nodes(program or "")))
    length: Series = defaultdict(list)
    nodes: Series = defaultdict(list)
    for (t, it), vals in sorted(acc.items(), key=lambda kv: kv[0][1]):
        length[t].append((it, sum(v[0] for v in vals) / len(vals)))
        nodes[t].append((it, sum(v[1] for v in vals) / len(vals)))
    return dict(length), dict(nodes)


def _ast_nodes(program: str) -> int:
    try:
        return sum(1 for _ in ast.walk(ast.parse(program)))
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return 0


def eval_scores(con) -> dict[str, list[tuple[int, float, int]]]:
    """Per benchmark: (model version, accuracy, items) of its latest evaluation, for registered versions."""
    rows = con.execute(
        "WITH last AS (SELECT model_version, bench, arg_max(eval_id, created_at) AS eval_id FROM evals "
        "WHERE model_version IS NOT NULL GROUP BY ALL) "
        "SELECT e.bench, e.model_version, avg(e.correct::DOUBLE), count(DISTINCT e.item_id) FROM evals e "
        "JOIN last USING (model_version, bench, eval_id) GROUP BY ALL ORDER BY 1, 2"
    ).fetchall()
    out: dict[str, list[tuple[int, float, int]]] = defaultdict(list)
    for bench, version, acc, n in rows:
        out[bench].append((int(version), float(acc), int(n)))
    return dict(out)


def examples(con, per_type: int = 1, rollouts: int = 2) -> list[dict[str, Any]]:
    """A few of the newest tasks that have solver rollouts, each with some of its rollouts."""
    out = []
    for t in ("deduction", "abduction", "induction"):
        tasks = con.execute(
            "SELECT t.task_id, t.iteration, t.program, t.input, t.output, t.message FROM tasks t "
            "WHERE t.task_type = ? AND EXISTS (SELECT 1 FROM rollouts r WHERE r.task_id = t.task_id AND "
            "r.role = 'solve') ORDER BY t.iteration DESC LIMIT ?",
            [t, per_type],
        ).fetchall()
        for task_id, it, program, inp, output, message in tasks:
            rs = con.execute(
                "SELECT completion, answer, correct, reward FROM rollouts WHERE task_id = ? AND role = 'solve' "
                "ORDER BY iteration DESC, rollout_id LIMIT ?",
                [task_id, rollouts],
            ).fetchall()
            out.append({"task_type": t, "task_id": task_id, "iteration": int(it), "program": program,
                        "input": inp, "output": output, "message": message,
                        "rollouts": [dict(zip(("completion", "answer", "correct", "reward"), r, strict=True))
                                     for r in rs]})  # fmt: skip
    return out


def open_run(run_dir: str | Path):
    """A DuckDB connection to the run's views."""
    return connect(run_dir)
