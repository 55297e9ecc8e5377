"""The paper's measures of what the proposer invents, as pure functions (no Prefect, no store, no model).

Per proposal (`measure_proposals`, written to the `proposals` table when an iteration commits):

- **novel**: a valid proposal whose task is new, where "the same task" means the same canonical program
  (`program_key`, in `azr_core.algo.program_keys`: comments, docstrings and layout do not count; identifiers do) with
  the same input value(s) (`input_value`: `'a'` and `"a"` are one value), compared with every task the buffers held
  before the iteration and every proposal earlier in the iteration's batch. A 30-iteration run had 80 "new" deduction
  tasks (new content fingerprints) that were all `def f(x): return x` with other comments: none of them is novel here.
- **novel program**: the canonical program is in no buffer (of any type) and in no earlier proposal of the batch.
- **complexity**: cognitive complexity by ComplexiPy (`complexipy.code_complexity(code).complexity`, as the paper).
- **halstead_effort**: Halstead effort by radon (`h_visit(code).total.effort`, as the reference code).
- **edit_distance**: deduction/abduction only, the tree edit distance between the AST of the proposal's program and
  the AST of each of its references (the K tasks its prompt showed), averaged over the references;
  **edit_distance_norm** divides each distance by the sum of the two trees' sizes first (0 = the same tree,
  1 = nothing in common), so small and large programs compare.

Per iteration and task type (`proposer_metrics`, over the training proposals; seeding's count in `seed/novel_tasks`):
`novel_tasks/<t>`, `novel_programs/<t>` (deduction, abduction), `novel_task_programs/<t>` (distinct programs behind
the novel tasks: the one that says something for induction, whose program is always a buffered one),
`novel_learnable_share/<t>` (novel tasks with a learnability solve rate strictly between 0 and 1, over novel tasks),
`complexity/<t>` and `halstead_effort/<t>` (means over the novel programs; induction: over the programs of its novel
tasks), `edit_distance/<t>` and `edit_distance_norm/<t>` (means over valid proposals), `answer_diversity/<t>`
(distinct gold outputs over valid proposals). A mean or share over nothing is left out, not written as 0.

Every measure is computed once per proposal at commit, from the texts alone, in well under a millisecond per
proposal for the programs self-play proposes (`tests/test_proposer_measures.py` times a 30-proposal batch).
"""

from __future__ import annotations

import ast
import math
import statistics
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from azr_core.algo.program_keys import drop_docstrings, parse_program, task_keys
from azr_core.algo.tasks import TASK_TYPES, Task, TaskType

# ---- program measures ---------------------------------------------------------------------------------------------


def cognitive_complexity(program: str) -> float | None:
    """ComplexiPy's cognitive complexity of the program (the paper's measure); None when it cannot read it.

    One `if` inside a `for` is 3: the loop 1, the `if` 1 plus 1 for its nesting."""
    from complexipy import code_complexity

    try:
        return float(code_complexity(program).complexity)
    except (KeyboardInterrupt, SystemExit):
        raise
    except BaseException:  # noqa: BLE001 - a parse error, or a panic in the Rust code (pyo3 raises a BaseException)
        return None


def halstead_effort(program: str) -> float | None:
    """Halstead effort (radon's `h_visit(code).total.effort`, as the reference code); None when it cannot read it."""
    from radon.metrics import h_visit

    try:
        return float(h_visit(program).total.effort)
    except Exception:  # noqa: BLE001 - radon raises whatever ast.parse or its visitor raise
        return None


# ---- tree edit distance -------------------------------------------------------------------------------------------

#: Operator nodes become part of their parent's label (`BinOp:Add`), so `x + 1` -> `x - 1` is one relabelling;
#: `Load`/`Store`/`Del` contexts are dropped (they repeat what the parent says).
_FOLDED = (ast.operator, ast.boolop, ast.cmpop, ast.unaryop)

Tree = tuple[list[str], list[list[int]]]  # node labels in depth-first order, and each node's children


def program_tree(program: str) -> Tree | None:
    """The program's AST (docstrings dropped) as labelled nodes for the tree edit distance; None when it does not
    parse. A node's label is its class with its plain fields (`Name:'x'`, `Constant:1`, `FunctionDef:'f'`)."""
    tree = parse_program(program)
    if tree is None:
        return None
    tree = drop_docstrings(tree)
    labels: list[str] = []
    children: list[list[int]] = []
    stack: list[tuple[ast.AST, int]] = [(tree, -1)]  # iterative: deep expressions must not hit the recursion limit
    while stack:
        node, parent = stack.pop()
        index = len(labels)
        if parent >= 0:
            children[parent].append(index)
        label = [type(node).__name__]
        kids: list[ast.AST] = []
        for _, value in ast.iter_fields(node):
            for item in value if isinstance(value, list) else [value]:
                if isinstance(item, ast.expr_context):
                    continue
                if isinstance(item, _FOLDED):
                    label.append(type(item).__name__)
                elif isinstance(item, ast.AST):
                    kids.append(item)
                elif item is not None and not isinstance(item, list):
                    label.append(repr(item))
        labels.append(":".join(label))
        children.append([])
        stack += [(k, index) for k in reversed(kids)]  # depth-first, children in order
    return labels, children


def tree_edit_distance(a: Tree, b: Tree) -> tuple[float, float]:
    """(distance, normalised distance) between two trees: the fewest node insertions, deletions and relabellings
    (each costs 1) that turn one into the other, and that number over the sum of both sizes (0 equal, at most 1).

    The library is `edist` (B. Paassen, Bielefeld; Zhang-Shasha's algorithm compiled with Cython, release 1.2.2 of
    2024). zss and apted, the two pure-Python ones, gave the same distances on our programs but took 70 and 22 ms for
    one pair of 10-line programs (70 and 44 nodes), where edist takes 0.15 ms; with K references per proposal that is
    the difference between a millisecond and a tenth of a second per proposal. zss's last release is of 2018, apted's
    of 2017; edist's needs only numpy, scipy and scikit-learn, which the stack already has."""
    from edist.ted import standard_ted

    distance = float(standard_ted(a[0], a[1], b[0], b[1]))
    return distance, distance / (len(a[0]) + len(b[0]))


def mean_edit_distance(program: str, references: Sequence[str], trees: dict[str, Tree | None] | None = None
                       ) -> tuple[float | None, float | None]:  # fmt: skip
    """Mean tree edit distance (raw, normalised) of `program` to each reference program; (None, None) when there is
    no reference or a tree is missing. `trees` caches parsed trees by program text across calls."""
    trees = {} if trees is None else trees

    def tree(text: str) -> Tree | None:
        if text not in trees:
            trees[text] = program_tree(text)
        return trees[text]

    mine = tree(program)
    refs = [tree(r) for r in references]
    if mine is None or not refs or any(r is None for r in refs):
        return None, None
    pairs = [tree_edit_distance(mine, r) for r in refs if r is not None]
    return statistics.fmean(d for d, _ in pairs), statistics.fmean(n for _, n in pairs)


# ---- shares -------------------------------------------------------------------------------------------------------


def learnable(rate: float | None) -> bool:
    """Learnable at birth: its learnability rollouts solved it sometimes, not always (0 < solve rate < 1)."""
    return rate is not None and 0.0 < rate < 1.0


def learnable_share(rates: Sequence[float | None]) -> float | None:
    """Share of the tasks whose solve rate is strictly between 0 and 1 (a task without rollouts is not learnable);
    None for no task."""
    return sum(learnable(r) for r in rates) / len(rates) if rates else None


def answer_diversity(outputs: Sequence[str | tuple[str, ...]]) -> float | None:
    """Distinct gold outputs over the number of valid proposals (1 = every proposal has its own answer, 1/n = all
    the same). A deduction/abduction proposal's gold output is the repr the executor produced; an induction
    proposal's is the sorted tuple of its outputs. None for no proposal."""
    return len(set(outputs)) / len(outputs) if outputs else None


# ---- one iteration ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ProposalFacts:
    """What the measures read of one proposal: its type, the task it became (None when invalid), the programs of its
    references, its learnability solve rate, and whether it counts in the iteration's metrics (training proposals
    do, seeding's are counted apart). `writes_program`: whether the proposer wrote the program (the type's
    `proposes_program`); None: every built-in type but induction."""

    task_type: TaskType | str
    task: Task | None
    references: tuple[str, ...] = ()
    solve_rate: float | None = None
    counted: bool = True
    writes_program: bool | None = None

    @property
    def wrote_program(self) -> bool:
        return self.task_type is not TaskType.INDUCTION if self.writes_program is None else self.writes_program

    @property
    def valid(self) -> bool:
        return self.task is not None

    @property
    def gold(self) -> str | tuple[str, ...] | None:
        """The gold output (deduction/abduction) or the sorted outputs (induction)."""
        t = self.task
        if t is None:
            return None
        if t.task_type is TaskType.INDUCTION:
            return tuple(sorted(x or "" for x in t.shown_outputs + t.held_outputs))
        return (t.output or "").strip()


@dataclass(frozen=True)
class ProposalMeasures:
    """The measures of one proposal (all None/False for an invalid one)."""

    novel: bool = False
    novel_program: bool = False
    program_key: str | None = None
    complexity: float | None = None
    halstead_effort: float | None = None
    edit_distance: float | None = None
    edit_distance_norm: float | None = None


@dataclass
class Novelty:
    """What proposals are compared with: the buffers' keys, each with the first iteration that buffered it (only
    those before `iteration` count), and the keys of the proposals measured so far in this iteration."""

    programs_before: Mapping[str, int]
    tasks_before: Mapping[str, int]
    iteration: int
    programs: set[str] = field(default_factory=set)
    tasks: set[str] = field(default_factory=set)

    def program_known(self, key: str) -> bool:
        return key in self.programs or self.programs_before.get(key, math.inf) < self.iteration

    def task_known(self, key: str) -> bool:
        return key in self.tasks or self.tasks_before.get(key, math.inf) < self.iteration

    def add(self, prog_key: str, key: str) -> None:
        self.programs.add(prog_key)
        self.tasks.add(key)

    def add_tasks(self, tasks: Iterable[Task]) -> None:
        """Tasks of this iteration that no proposal stands for one by one (seeding buffers a program twice)."""
        for t in tasks:
            self.add(*task_keys(t))


def measure_proposals(facts: Sequence[ProposalFacts], novelty: Novelty,
                      cache: dict[str, dict] | None = None) -> list[ProposalMeasures]:  # fmt: skip
    """The measures of each proposal, in batch order (an earlier proposal makes a later copy not novel); updates
    `novelty` with every valid proposal. `cache` (shared across calls) keeps per-program values: a batch repeats
    its programs and references."""
    cache = {} if cache is None else cache
    per_program = cache.setdefault("program", {})
    trees = cache.setdefault("tree", {})
    out = []
    for f in facts:
        task = f.task
        if task is None:
            out.append(ProposalMeasures())
            continue
        pk, tk = task_keys(task)
        novel, novel_program = not novelty.task_known(tk), not novelty.program_known(pk)
        novelty.add(pk, tk)
        if pk not in per_program:
            per_program[pk] = (cognitive_complexity(task.program), halstead_effort(task.program))
        complexity, effort = per_program[pk]
        ted = (None, None)
        if f.wrote_program:
            ted = mean_edit_distance(task.program, f.references, trees)
        out.append(ProposalMeasures(novel, novel_program, pk, complexity, effort, *ted))
    return out


def _mean(values: Iterable[float | None]) -> float | None:
    vals = [v for v in values if v is not None]
    return statistics.fmean(vals) if vals else None


def proposer_metrics(
    facts: Sequence[ProposalFacts], measures: Sequence[ProposalMeasures], types: Mapping[str, bool] | None = None
) -> dict[str, float]:
    """The per-type metrics of the counted proposals (see the module docstring for each name), plus
    `seed/novel_tasks` for the others. `types`: each type's name and whether its proposer writes the program (the
    type's `proposes_program`); None: the built-in types."""
    m: dict[str, float | None] = {}
    pairs = list(zip(facts, measures, strict=True))
    if types is None:
        types = {t: t is not TaskType.INDUCTION for t in TASK_TYPES}
    for t, writes_program in types.items():
        mine = [(f, x) for f, x in pairs if f.counted and f.task_type == t and f.valid]
        novel = [(f, x) for f, x in mine if x.novel]
        m[f"novel_tasks/{t}"] = len(novel)
        behind = {x.program_key: x for _, x in novel}  # the distinct programs of the novel tasks
        m[f"novel_task_programs/{t}"] = len(behind)
        if not writes_program:
            programs = behind  # induction's program is a buffered one: its novel tasks' programs stand in
        else:
            programs = {x.program_key: x for _, x in mine if x.novel_program}
            m[f"novel_programs/{t}"] = len(programs)
            m[f"edit_distance/{t}"] = _mean(x.edit_distance for _, x in mine)
            m[f"edit_distance_norm/{t}"] = _mean(x.edit_distance_norm for _, x in mine)
        m[f"novel_learnable_share/{t}"] = learnable_share([f.solve_rate for f, _ in novel])
        m[f"complexity/{t}"] = _mean(x.complexity for x in programs.values())
        m[f"halstead_effort/{t}"] = _mean(x.halstead_effort for x in programs.values())
        m[f"answer_diversity/{t}"] = answer_diversity([f.gold for f, _ in mine])
    m["seed/novel_tasks"] = sum(1 for f, x in pairs if not f.counted and x.novel)
    return {k: float(v) for k, v in m.items() if v is not None}
