"""The lever table of issue 19: several `bench/bench_learning.py` runs side by side, one row per run.

    .venv/bin/python bench/bench_levers.py [--first N] NAME=RUN_DIR[:LOG] ...   # LOG: the run's bench_learning output

`--first N` reads only iterations 1..N of every run (a longer run as the baseline of shorter ones; the probe column
then shows the log's `change 0 -> N` line, or `-` when the run did not probe at N).

Per run, over its training iterations: validity of deduction / abduction / induction proposals, novel tasks of each
type (canonical program with new input values: azr_core/algo/proposer_measures.py), the distinct programs behind each
type's novel tasks, the deduction and abduction programs never buffered before (`novel_programs`), the share of
novel tasks learnable at birth (0 < solve rate < 1), the mean cognitive complexity of novel deduction/abduction
programs, the mean normalised AST edit distance of valid deduction/abduction proposals to their references,
the valid deduction/abduction proposals that copy a reference's program, the proposer groups whose advantages were
all zero (no push, whatever their rewards), iterations without a gradient, the median iteration seconds, and the
probe's reward change with its 95% interval (read from LOG's `change ... ->` line, when given). Novelty is replayed
from each run's tables with today's canonical program (`replay_novelty`), so runs written before the measures, or by
another version of them, compare alike.
"""

from __future__ import annotations

import re
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

TYPES = ("deduction", "abduction", "induction")


def row(name: str, run_dir: str, log: str | None, first: int | None = None) -> list[str]:
    from azr_core.algo.program_keys import program_key
    from azr_core.algo.proposer_measures import learnable
    from azr_core.store import connect

    con = connect(run_dir)
    if first is not None:  # every query below sees iterations 0..first only
        for table in ("proposals", "tasks", "iterations", "rollouts"):
            con.execute(f"ALTER VIEW {table} RENAME TO all_{table}")
            con.execute(f"CREATE VIEW {table} AS SELECT * FROM all_{table} WHERE iteration <= {int(first)}")
    props = con.execute(
        "SELECT task_type, valid, novel, program, solve_rate, complexity, edit_distance_norm FROM proposals "
        "WHERE stage = 'propose'"
    ).fetchall()
    # Novelty replayed from the tables for every run, so that runs written by other versions of the measures (or
    # before them) are judged by today's canonical program.
    props, replayed = replay_novelty(con)
    iters = con.execute("SELECT wall_s, metrics FROM iterations WHERE stage = 'train' ORDER BY iteration").fetchall()
    cells = [name, str(len(iters))]
    for t in TYPES:
        mine = [p for p in props if p[0] == t]
        cells.append(f"{sum(bool(p[1]) for p in mine)}/{len(mine)}")
    novel = [p for p in props if p[1] and p[2]]
    for t in TYPES:
        cells.append(str(sum(p[0] == t for p in novel)))
    programs = {t: {program_key(p[3]) for p in novel if p[0] == t} for t in TYPES}
    cells.append(f"{len(programs['deduction'])}/{len(programs['abduction'])}/{len(programs['induction'])}")
    new_programs = [len(replayed[t]) for t in TYPES[:2]]
    cells.append(f"{new_programs[0]:.0f}/{new_programs[1]:.0f}")
    cells.append(f"{sum(learnable(p[4]) for p in novel)}/{len(novel)}")
    cplx = [p[5] for p in novel if p[5] is not None and p[0] != "induction"]
    ted = [p[6] for p in props if p[1] and p[6] is not None]
    cells.append(f"{statistics.fmean(cplx):.1f}" if cplx else "-")
    cells.append(f"{statistics.fmean(ted):.2f}" if ted else "-")
    cells += why_columns(con)
    no_grad = sum(1 for _, m in iters if dict(m).get("groups/live", 0) == 0)
    cells.append(str(no_grad))
    cells.append(f"{statistics.median(w for w, _ in iters):.0f}" if iters else "-")
    probe = "-"
    if log and Path(log).exists():
        upto = str(int(first)) if first is not None else r"\d+"
        found = re.findall(rf"change \d+ -> {upto}: reward (\S+ \[\S+, \S+\])", Path(log).read_text(errors="replace"))
        probe = found[-1] if found else "-"
    cells.append(probe)
    return cells


def why_columns(con) -> list[str]:
    """Why the proposer does or does not move: how many valid deduction/abduction proposals copy the program of one
    of the references shown to them (canonical program), and how many proposer groups (iteration x type) had every
    advantage zero, so their rewards, copy penalties included, pushed nothing."""
    from azr_core.algo.program_keys import program_key

    programs = dict(con.execute("SELECT task_id, program FROM tasks").fetchall())
    rows = con.execute(
        "SELECT program, reference_ids FROM proposals WHERE stage = 'propose' AND valid AND task_type <> 'induction'"
    ).fetchall()
    copies = sum(
        1 for program, refs in rows
        if program_key(program) in {program_key(programs[r]) for r in refs or [] if r in programs}
    )  # fmt: skip
    dead, groups = con.execute(
        "SELECT count(*) FILTER (WHERE live = 0), count(*) FROM (SELECT iteration, task_type, "
        "count(*) FILTER (WHERE advantage <> 0) AS live FROM rollouts WHERE role = 'propose' AND in_batch "
        "GROUP BY ALL)"
    ).fetchone()
    return [f"{copies}/{len(rows)}", f"{dead}/{groups}"]


def replay_novelty(con) -> tuple[list[tuple], dict[str, set[str]]]:
    """The proposals of a run folder with `novel` worked out as the commit does now: a valid training proposal whose
    task (canonical program, input values) neither the zero triplets, nor the tasks of earlier iterations, nor this
    iteration's seeding, nor an earlier proposal of its batch holds; and the programs never buffered before."""
    from azr_core.algo.buffers import row_to_task
    from azr_core.algo.program_keys import program_key, task_keys
    from azr_core.algo.proposer_measures import cognitive_complexity
    from azr_core.algo.tasks import seed_tasks

    cols = [c[0] for c in con.execute("SELECT * FROM tasks LIMIT 0").description]
    tasks = {}
    for r in con.execute("SELECT * FROM tasks").fetchall():
        row = dict(zip(cols, r, strict=True))
        tasks[row["task_id"]] = (row["iteration"], row_to_task(row))
    seeded = {tid for (tid,) in con.execute("SELECT task_id FROM proposals WHERE stage = 'seed' AND valid").fetchall()}
    zero = {task_keys(t)[1] for t in seed_tasks()}
    zero_programs = {program_key(t.program) for t in seed_tasks()}
    out, seen_iteration, batch, programs = [], None, set(), set()
    new_programs: dict[str, set[str]] = {t: set() for t in TYPES}
    rows = con.execute(
        "SELECT iteration, task_type, valid, task_id, program, solve_rate, edit_distance_norm FROM proposals "
        "WHERE stage = 'propose' ORDER BY iteration"
    ).fetchall()
    for it, task_type, valid, task_id, program, rate, ted in rows:
        if it != seen_iteration:
            seen_iteration, batch = it, set()
            before = [t for tid, (i, t) in tasks.items() if i < it or (i == it and tid in seeded)]
            known = zero | {task_keys(t)[1] for t in before}
            programs = zero_programs | {program_key(t.program) for t in before}
        novel = None
        if valid and task_id in tasks:
            key = task_keys(tasks[task_id][1])[1]
            novel = key not in known and key not in batch
            batch.add(key)
            pk = program_key(program)
            if task_type != "induction" and pk not in programs:
                new_programs[task_type].add(pk)
            programs.add(pk)
        out.append((task_type, valid, novel, program, rate, cognitive_complexity(program) if novel else None, ted))
    return out, new_programs


def main() -> None:
    args, first = sys.argv[1:], None
    if args[:1] == ["--first"] and len(args) > 1 and args[1].isdigit():
        first, args = int(args[1]), args[2:]
    if not args or any("=" not in a for a in args):
        raise SystemExit(__doc__)
    head = ["run", "its", "valid ded", "valid abd", "valid ind", "novel ded", "novel abd", "novel ind",
            "programs of novel tasks d/a/i", "new programs d/a", "learnable at birth", "complexity", "edit dist",
            "copies of a reference program d+a", "dead proposer groups", "no-grad its", "median s",
            "probe reward change"]  # fmt: skip
    print("| " + " | ".join(head) + " |")
    print("|" + " --- |" * len(head))
    for arg in args:
        name, _, rest = arg.partition("=")
        run_dir, _, log = rest.partition(":")
        print("| " + " | ".join(row(name, run_dir, log or None, first)) + " |")


if __name__ == "__main__":
    main()
