"""The lever table of issue 19: several `bench/bench_learning.py` runs side by side, one row per run.

    .venv/bin/python bench/bench_levers.py NAME=RUN_DIR[:LOG] ...   # LOG: the run's bench_learning output

Per run, over its training iterations: validity of deduction / abduction / induction proposals, novel tasks of each
type (canonical program with new input values: azr_core/proposer_measures.py), the distinct novel deduction and
abduction programs, the distinct programs behind induction's novel tasks, the share of novel tasks learnable at birth
(0 < solve rate < 1), the mean cognitive complexity of novel programs and the mean normalised AST edit distance of
valid deduction/abduction proposals to their references, iterations without a gradient, the median iteration seconds,
and the probe's reward change with its 95% interval (read from LOG's `change ... ->` line, when given).
"""

from __future__ import annotations

import re
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

TYPES = ("deduction", "abduction", "induction")


def row(name: str, run_dir: str, log: str | None) -> list[str]:
    from azr_core.proposer_measures import learnable, program_key
    from azr_core.store import connect

    con = connect(run_dir)
    props = con.execute(
        "SELECT task_type, valid, novel, program, solve_rate, complexity, edit_distance_norm FROM proposals "
        "WHERE stage = 'propose'"
    ).fetchall()
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
    cells.append(f"{sum(learnable(p[4]) for p in novel)}/{len(novel)}")
    cplx = [p[5] for p in novel if p[5] is not None and p[0] != "induction"]
    ted = [p[6] for p in props if p[1] and p[6] is not None]
    cells.append(f"{statistics.fmean(cplx):.1f}" if cplx else "-")
    cells.append(f"{statistics.fmean(ted):.2f}" if ted else "-")
    no_grad = sum(1 for _, m in iters if dict(m).get("groups/live", 0) == 0)
    cells.append(str(no_grad))
    cells.append(f"{statistics.median(w for w, _ in iters):.0f}" if iters else "-")
    probe = "-"
    if log and Path(log).exists():
        found = re.findall(r"change \d+ -> \d+: reward (\S+ \[\S+, \S+\])", Path(log).read_text(errors="replace"))
        probe = found[-1] if found else "-"
    cells.append(probe)
    return cells


def main() -> None:
    if len(sys.argv) < 2 or any("=" not in a for a in sys.argv[1:]):
        raise SystemExit(__doc__)
    head = ["run", "its", "valid ded", "valid abd", "valid ind", "novel ded", "novel abd", "novel ind",
            "novel programs d/a/i", "learnable at birth", "complexity", "edit dist", "no-grad its", "median s",
            "probe reward change"]  # fmt: skip
    print("| " + " | ".join(head) + " |")
    print("|" + " --- |" * len(head))
    for arg in sys.argv[1:]:
        name, _, rest = arg.partition("=")
        run_dir, _, log = rest.partition(":")
        print("| " + " | ".join(row(name, run_dir, log or None)) + " |")


if __name__ == "__main__":
    main()
