"""The proposer measures (azr_core/algo/proposer_measures.py) on hand-made programs with known values, their cost on a
30-proposal batch, the store reading run folders written before the measures' columns existed, and one committed
iteration that writes the columns and the metrics (`azr sql` and `azr report` read them)."""

from __future__ import annotations

import io
import json
import math
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from azr_core.algo.buffers import TaskBuffers
from azr_core.algo.program_keys import canonical_program, program_key, task_key
from azr_core.algo.proposer_measures import (
    Novelty,
    ProposalFacts,
    answer_diversity,
    cognitive_complexity,
    halstead_effort,
    learnable_share,
    mean_edit_distance,
    measure_proposals,
    program_tree,
    proposer_metrics,
    tree_edit_distance,
)
from azr_core.algo.tasks import Task, TaskType, seed_tasks
from azr_core.store import connect

D, A, IND = TaskType.DEDUCTION, TaskType.ABDUCTION, TaskType.INDUCTION
IDENTITY = "def f(x):\n    return x"
FOR_IF = "def f(xs):\n    t = 0\n    for x in xs:\n        if x > 0:\n            t += x\n    return t"


def test_programs_differing_only_in_comments_and_docstrings_share_a_key():
    noisy = '# the identity\ndef f(x):\n    """Return x."""\n    # nothing to do\n    return x  # as it came\n'
    assert program_key(noisy) == program_key(IDENTITY) == program_key("def f(x): return (x)")
    assert canonical_program(noisy) == canonical_program(IDENTITY)
    # annotations and the names a function binds do not change what it computes: one program
    assert program_key("def f(y: int) -> int:\n    return y") == program_key(IDENTITY)
    assert program_key("def f(x):\n    return x.upper()") != program_key(IDENTITY)
    assert program_key("def f(a):\n    return a + n") != program_key("def f(a):\n    return a + m")  # globals kept
    nested = "def f(a, b):\n    def g(a):\n        return a + b\n    return g(a)"
    assert program_key(nested) == program_key("def f(p, q):\n    def g(z):\n        return z + q\n    return g(p)")
    assert program_key("def f(x):\n    return x + 1") != program_key(IDENTITY)
    assert canonical_program("def f(x:\n  ") == "text:def f(x:"  # no parse: the stripped text
    # a docstring that is the whole body leaves an empty body behind, still one program
    assert program_key('def f(x):\n    """only a docstring"""') == program_key("def f(x):\n    pass")


def test_input_values_ignore_quotes_and_spacing():
    pk = program_key(IDENTITY)
    assert task_key(D, pk, ["'Hello World'"]) == task_key(D, pk, ['"Hello World"'])
    assert task_key(D, pk, ["[1,2],  'a'"]) == task_key(D, pk, ["[1, 2], 'a'"])
    assert task_key(D, pk, ["1"]) != task_key(D, pk, ["2"]) != task_key(A, pk, ["2"])
    assert task_key(IND, pk, ["1", "2"]) == task_key(IND, pk, ["2", "1"])  # induction: a set of inputs


def test_cognitive_complexity_counts_as_complexipy():
    assert cognitive_complexity(IDENTITY) == 0
    assert cognitive_complexity(FOR_IF) == 3  # the loop 1, the `if` 1 + 1 for its nesting
    nested = "def f(xs):\n    for x in xs:\n        for y in x:\n            if y:\n                return y"
    assert cognitive_complexity(nested) == 6  # 1 + (1 + 1) + (1 + 2)
    assert cognitive_complexity("def f(:") is None


def test_halstead_effort_is_radons():
    assert halstead_effort(IDENTITY) == 0.0
    # operators `>` and `+=` (h1 = 2, N1 = 2); operands x, 0, t (h2 = 3; N2 = 4: x and 0 in `x > 0`, t and x in
    # `t += x`): volume N log2 n = 6 log2 5, difficulty h1/2 * N2/h2 = 4/3
    assert halstead_effort(FOR_IF) == pytest.approx(6 * math.log2(5) * 4 / 3)
    assert halstead_effort("def f(:") is None


def test_tree_edit_distance_on_small_asts():
    a, b = program_tree(IDENTITY), program_tree("def f(x):\n    return x + 1")
    # Module > FunctionDef:'f' > (arguments > arg:'x'), (Return > Name:'x'): 6 nodes
    assert a[0] == ["Module", "FunctionDef:'f'", "arguments", "arg:'x'", "Return", "Name:'x'"]
    assert len(b[0]) == 8  # Return > BinOp:Add > (Name:'x', Constant:1)
    # insert BinOp:Add between Return and Name:'x', insert Constant:1: 2 edits, over 6 + 8 nodes
    assert tree_edit_distance(a, b) == (2.0, 2 / 14)
    assert tree_edit_distance(b, program_tree("def f(x):\n    return x - 1"))[0] == 1  # relabel Add -> Sub
    assert tree_edit_distance(a, program_tree("def f(x):\n    '''doc'''\n    return x  # c"))[0] == 0
    assert tree_edit_distance(a, program_tree("def g(y):\n    return y"))[0] == 3  # f->g, x->y twice
    d, norm = mean_edit_distance(IDENTITY, [IDENTITY, "def f(x):\n    return x + 1"])
    assert d == 1.0 and norm == pytest.approx((0 + 2 / 14) / 2)
    assert mean_edit_distance(IDENTITY, []) == (None, None)


def test_shares():
    assert learnable_share([0.0, 0.5, 1.0, None, 0.25]) == 2 / 5
    assert learnable_share([]) is None
    assert answer_diversity(["1", "1", "2", "3"]) == 3 / 4 and answer_diversity([]) is None


def _ded(program: str, inp: str, out: str = "'x'", rate: float | None = None, refs=(IDENTITY,), **kw) -> ProposalFacts:
    task = Task(kw.pop("task_type", D), program, inp, out, iteration=1)
    return ProposalFacts(task.task_type, task, tuple(refs), rate, **kw)


def test_identity_with_other_comments_is_not_novel_and_learnable_share_counts_novel_tasks():
    buffers = TaskBuffers(seed_tasks())  # the zero triplets (iteration 0): the identity on 'Hello World'
    novelty = Novelty(*buffers.novelty_index(), iteration=1)
    facts = [
        _ded("def f(x):\n    # a new comment\n    return x", "'Hello World'", rate=0.5),  # the seed, re-commented
        _ded('def f(x):\n    """Identity."""\n    return x', '"Hello World"', rate=0.5),  # other quotes too
        _ded("def f(x):\n    return x  # same", "'abc'", "'abc'", rate=0.5),  # a new input: a novel task
        _ded("def f(x):\n    return x", "'abc'", "'abc'", rate=0.5),  # ... but only the first time
        _ded("def f(x):\n    return x * 2", "3", "6", rate=1.0),  # a novel program, always solved
        _ded("def f(x):\n    return x * 2", "4", "8", rate=None),  # a novel task on it, no rollouts
        ProposalFacts(D, None),  # invalid
        _ded("def f(x):\n    return x * 2", "5", "10", rate=0.0, counted=False),  # seeding's: counted apart
    ]
    measured = measure_proposals(facts, novelty)
    assert [x.novel for x in measured] == [False, False, True, False, True, True, False, True]
    assert [x.novel_program for x in measured] == [False, False, False, False, True, False, False, False]
    m = proposer_metrics(facts, measured)
    assert m["novel_tasks/deduction"] == 3 and m["novel_programs/deduction"] == 1
    assert m["novel_task_programs/deduction"] == 2  # the identity and x * 2
    assert m["novel_learnable_share/deduction"] == 1 / 3  # 0.5 yes; 1.0 and no rollouts no
    assert m["seed/novel_tasks"] == 1
    assert m["answer_diversity/deduction"] == 4 / 6  # 'x' twice, 'abc' twice, 6, 8
    assert m["complexity/deduction"] == 0.0  # the one novel program has no branch
    assert m["edit_distance/deduction"] == pytest.approx((0 + 0 + 0 + 0 + 2 + 2) / 6)
    assert "novel_tasks/abduction" in m and "complexity/abduction" not in m  # a mean over nothing is left out


def test_induction_counts_the_distinct_programs_behind_its_novel_tasks():
    buffers = TaskBuffers(seed_tasks())
    novelty = Novelty(*buffers.novelty_index(), iteration=1)

    def ind(program: str, inputs: tuple[str, ...]) -> ProposalFacts:
        task = Task(IND, program, shown_inputs=inputs[:1], shown_outputs=inputs[:1], held_inputs=inputs[1:],
                    held_outputs=inputs[1:], iteration=1)  # fmt: skip
        return ProposalFacts(IND, task, (program,), 0.5)

    facts = [ind(IDENTITY, ("1", "2")), ind(IDENTITY, ("2", "1")), ind(IDENTITY, ("'Hello World'", "[1, 2, 3]"))]
    measured = measure_proposals(facts, novelty)
    assert [x.novel for x in measured] == [True, False, False]  # the same inputs in another order; the seed
    m = proposer_metrics(facts, measured)
    assert m["novel_tasks/induction"] == 1 and m["novel_task_programs/induction"] == 1
    assert "novel_programs/induction" not in m and "edit_distance/induction" not in m


def test_buffers_key_only_the_tasks_added_since_the_last_call(monkeypatch):
    import azr_core.algo.program_keys as pm

    keyed = []
    real = pm.task_keys
    monkeypatch.setattr(pm, "task_keys", lambda t: keyed.append(t.task_id) or real(t))
    buffers = TaskBuffers(seed_tasks())
    programs, tasks = buffers.novelty_index()
    assert len(keyed) == 3 and programs == {program_key(IDENTITY): 0} and len(tasks) == 3
    buffers.add(Task(D, "def f(x):\n    return -x", "1", "-1", iteration=4))
    buffers.add(Task(A, "def f(x):\n    # the same\n    return -x", "1", "-1", iteration=5))
    programs, tasks = buffers.novelty_index()
    assert len(keyed) == 5 and programs[program_key("def f(x):\n    return -x")] == 4 and len(tasks) == 5
    buffers.novelty_index()
    assert len(keyed) == 5  # nothing new: nothing keyed again
    later = Novelty(programs, tasks, iteration=5)  # measured in iteration 5: the abduction task is its own
    assert later.program_known(program_key("def f(x): return -x"))
    assert not later.task_known(task_key(A, program_key("def f(x): return -x"), ["1"]))


def test_a_30_proposal_batch_costs_milliseconds():
    data = Path(__file__).resolve().parents[1] / "azr_core" / "eval" / "data" / "cruxeval_dev.jsonl"
    items = [json.loads(line) for line in data.read_text().splitlines()[:36]]
    refs = tuple(it["code"] for it in items[30:36])  # K = 6 references, the paper's
    facts = [_ded(it["code"], it["input"], it["output"], 0.5, refs, task_type=(D, A)[k % 2])
             for k, it in enumerate(items[:30])]  # fmt: skip
    measure_proposals(facts[:1], Novelty({}, {}, 1))  # the libraries' imports are paid once per process
    t0 = time.perf_counter()
    measured = measure_proposals(facts, Novelty({}, {}, 1))
    per = (time.perf_counter() - t0) / len(facts)
    print(f"proposer measures: {per * 1000:.2f} ms per proposal (30 CRUXEval programs, 6 references each)")
    assert all(x.novel and x.complexity is not None and x.edit_distance_norm is not None for x in measured)
    assert per < 0.05  # ~1 ms on an idle core; a wide margin for a loaded machine


# ---- the store: folders written before the columns ----------------------------------------------------------------

NEW = ("novel", "complexity", "halstead_effort", "edit_distance", "edit_distance_norm")


def _old_layout(run_dir: Path) -> None:
    """A version-2 run folder as azr wrote it before the measures: proposals files without the new columns."""
    from azr_core.algo.buffers import task_to_row
    from azr_core.algo.tasks import seed_tasks
    from azr_core.config import StoreConfig
    from azr_core.store import open_run, partition_dir
    from azr_core.store.schema import schema_for

    with open_run(run_dir, seed_rows=[task_to_row(t) for t in seed_tasks()]) as store:
        store.config = StoreConfig(fsync=False)
        old = pa.schema([f for f in schema_for("proposals") if f.name not in NEW],
                        metadata={b"azr.schema_version": b"2", b"azr.table": b"proposals"})  # fmt: skip
        for it in (1, 2):
            with store.begin(it) as w:
                w.write("tasks", [{"task_id": f"t{it}", "task_type": "deduction", "program": IDENTITY, "input": "1",
                                   "output": "1"}])  # fmt: skip
                folder = partition_dir(run_dir, "proposals", it)
                folder.mkdir(parents=True)
                rows = [{"proposal_id": f"p{it}", "task_type": "deduction", "stage": "propose", "valid": True}]
                pq.write_table(pa.Table.from_pylist(rows, schema=old), folder / "part-00000-old.parquet")
                w.commit()
    (run_dir / "SCHEMA").write_text(json.dumps({"schema_version": 2}))


def test_a_folder_written_before_the_columns_reads_resumes_and_compacts(tmp_path):
    from azr_core.commands.sql_core import fast_main
    from azr_core.config import StoreConfig
    from azr_core.store import RunStore

    run = tmp_path / "run"
    _old_layout(run)
    with connect(run) as con:
        rows = con.execute(f"SELECT proposal_id, {', '.join(NEW)} FROM proposals ORDER BY 1").fetchall()
    assert rows == [("p1", *[None] * 5), ("p2", *[None] * 5)]
    with RunStore(run, StoreConfig(fsync=False, compact_every=0)) as store:  # a resume: a writer opens it
        assert json.loads((run / "SCHEMA").read_text()) == {"schema_version": 3, "upgraded_from": 2}
        with store.begin(3) as w:
            w.write("proposals", [{"proposal_id": "p3", "task_type": "deduction", "stage": "propose", "valid": True,
                                   "novel": True, "complexity": 2.0, "edit_distance": 5.0}])  # fmt: skip
            w.commit()
    query = "SELECT proposal_id, novel, complexity, edit_distance FROM proposals ORDER BY 1"
    expected = [("p1", None, None, None), ("p2", None, None, None), ("p3", True, 2.0, 5.0)]
    with connect(run) as con:
        assert con.execute(query).fetchall() == expected
        assert len(TaskBuffers.from_connection(con)) == 5  # the seed triplets and t1, t2
    out = io.StringIO()
    assert fast_main([query, "--run", str(run), "--format", "csv"], out=out) == 0
    assert out.getvalue().splitlines()[-1] == "p3,True,2.0,5.0"
    with RunStore(run, StoreConfig(fsync=False)) as store:
        store.compact()  # old and new files merge into one segment
    with connect(run) as con:
        assert con.execute(query).fetchall() == expected
    with RunStore(run, StoreConfig(fsync=False)) as store:
        store.compact(upto=2)  # nothing new: a segment of old files alone also has the columns, null
    run2 = tmp_path / "run2"
    _old_layout(run2)
    with RunStore(run2, StoreConfig(fsync=False)) as store:
        store.compact()
    with connect(run2) as con:
        assert con.execute(query).fetchall() == expected[:2]


# ---- one committed iteration --------------------------------------------------------------------------------------


@pytest.mark.sandbox
def test_a_committed_iteration_writes_the_columns_and_the_metrics(tmp_path):
    from scripted import ScriptedPolicy, make_session

    from azr_core.commands.sql_core import fast_main
    from azr_core.report.build import build_report
    from azr_core.selfplay.iteration import run_iteration

    s = make_session(tmp_path, ScriptedPolicy())
    with s:
        run_iteration(s)
    run = tmp_path / "run"
    with connect(run) as con:
        rows = con.execute(
            "SELECT stage, task_type, valid, novel, complexity, halstead_effort, edit_distance, edit_distance_norm, "
            "solve_rate, program FROM proposals"
        ).fetchall()
        metrics = con.execute("SELECT metrics FROM iterations WHERE iteration = 1").fetchone()[0]
    for _, t, valid, novel, cplx, effort, ted, norm, _, _ in rows:
        assert novel is valid or (valid and novel is False)  # never novel when invalid
        assert (cplx is not None and effort is not None) == valid
        if valid and t != "induction":
            assert ted is not None and 0 <= norm <= 1  # every proposal had references (the seed set at least)
        if t == "induction":
            assert ted is None
    for t in ("deduction", "abduction", "induction"):
        mine = [r for r in rows if r[0] == "propose" and r[1] == t and r[3]]
        assert metrics[f"novel_tasks/{t}"] == len(mine)
        if mine:
            share = sum(0 < r[8] < 1 for r in mine if r[8] is not None) / len(mine)
            assert metrics[f"novel_learnable_share/{t}"] == pytest.approx(share)
    # the scripted policy writes a fresh `x * k` for each valid deduction/abduction proposal: all novel programs
    assert metrics["novel_tasks/deduction"] > 0 and metrics["novel_programs/deduction"] > 0
    assert metrics["complexity/deduction"] == 0.0 and metrics["edit_distance/deduction"] > 0
    assert 0 < metrics["answer_diversity/deduction"] <= 1 and metrics["seconds/proposer_measures"] < 5
    out = io.StringIO()
    sql = "SELECT count(*) FILTER (WHERE novel), max(edit_distance_norm) > 0 FROM proposals WHERE stage = 'propose'"
    assert fast_main([sql, "--run", str(run), "--format", "csv"], out=out) == 0
    n = sum(1 for r in rows if r[0] == "propose" and r[3])
    assert out.getvalue().splitlines()[-1] == f"{n},True"
    import mlflow

    client = mlflow.MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    mlrun = client.search_runs([client.get_experiment_by_name("azr").experiment_id])[0]
    assert mlrun.data.metrics["novel_tasks/deduction"] == metrics["novel_tasks/deduction"]
    page = build_report(run, tmp_path / "report")
    assert (page.parent / "invention.png").is_file() and (page.parent / "invented_programs.png").is_file()


def test_code_after_a_return_is_not_another_program():
    # cpu-tiny's abduction proposer padded the identity so (a 30-iteration run): still the identity
    ident = program_key("def f(x):\n    return x")
    padded = [
        "def f(x):\n    return x\n    # the body of the function accepts an argument\n    return x",
        "def f(x):\n    return x\n    def f(x):\n        return x\n    def f_def():\n        return 'Hello'",
    ]
    assert all(program_key(p) == ident for p in padded)
    # a return inside a branch ends the branch only
    assert program_key("def f(x):\n    if x:\n        return 1\n    return 2") != program_key(
        "def f(x):\n    if x:\n        return 1"
    )


def test_program_keys_docstring_examples_run():
    import doctest

    import azr_core.algo.program_keys as keys

    result = doctest.testmod(keys)
    assert result.attempted > 0 and result.failed == 0
