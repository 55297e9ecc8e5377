"""Buffers: the zero triplet, duplicates, reference sampling, solver batches, no cap, reload from the store."""

from __future__ import annotations

import random
from collections import Counter
from pathlib import Path

import pytest

from azr_core.algo.buffers import TaskBuffers, task_to_row
from azr_core.algo.tasks import SEED_PROGRAM, Task, TaskType, fingerprint, seed_tasks
from azr_core.config import StoreConfig
from azr_core.store import connect, open_run


def ded(i: int, iteration: int = 1) -> Task:
    return Task(TaskType.DEDUCTION, f"def f(x):\n    return x + {i}", str(i), str(2 * i), iteration=iteration)


def abd(i: int, iteration: int = 1) -> Task:
    return Task(TaskType.ABDUCTION, f"def f(x):\n    return x * {i}", str(i), str(i * i), iteration=iteration)


def test_the_zero_triplet_seeds_every_type():
    buffers = TaskBuffers(seed_tasks())
    for t in TaskType:
        (task,) = buffers.tasks(t)
        assert task.program == SEED_PROGRAM == "def f(x):\n    return x"
        assert task.iteration == 0
    d = buffers.tasks("deduction")[0]
    assert d.input == d.output == "'Hello World'"
    ind = buffers.tasks("induction")[0]
    assert ind.shown_inputs and ind.held_inputs and ind.shown_outputs == ind.shown_inputs  # identity


def test_exact_duplicates_are_detected():
    buffers = TaskBuffers()
    assert buffers.add(ded(1))
    assert not buffers.add(Task(TaskType.DEDUCTION, "def f(x):\n    return x + 1\n", " 1", "2", iteration=9))
    assert buffers.add(Task(TaskType.DEDUCTION, "def f(x):\n    return x+1", "1", "2"))  # other text: another task
    assert buffers.add(Task(TaskType.ABDUCTION, "def f(x):\n    return x + 1", "1", "2"))  # other type
    assert buffers.size("deduction") == 2 and len(buffers) == 3
    assert fingerprint("induction", "p", ["1", "2"]) == fingerprint("induction", "p", ["2", "1"])
    assert fingerprint("deduction", "p", ["1"]) != fingerprint("deduction", "p", ["2"])


def test_no_cap_every_task_is_kept():
    buffers = TaskBuffers(ded(i, iteration=i // 100) for i in range(5000))
    assert buffers.size("deduction") == 5000
    assert buffers.tasks("deduction")[-1].input == "4999"  # the newest was not dropped


def test_reference_sampling_takes_k_distinct_tasks_of_the_type():
    buffers = TaskBuffers([*(ded(i) for i in range(20)), *(abd(i) for i in range(20))])
    rng = random.Random(0)
    refs = buffers.sample_references("deduction", 6, rng)
    assert len(refs) == 6 and len({t.task_id for t in refs}) == 6
    assert all(t.task_type is TaskType.DEDUCTION for t in refs)
    assert buffers.sample_references("abduction", 0, rng) == []
    small = TaskBuffers([ded(1), ded(2)])
    assert len(small.sample_references("deduction", 6, rng)) == 2
    assert small.sample_references("induction", 6, rng) == []


def test_reference_sampling_is_uniform():
    buffers = TaskBuffers(ded(i) for i in range(10))
    rng = random.Random(1)
    counts = Counter(t.input for _ in range(3000) for t in buffers.sample_references("deduction", 2, rng))
    assert set(counts) == {str(i) for i in range(10)}
    assert max(counts.values()) < 1.25 * min(counts.values())  # expected 600 each


def test_induction_reference_program_comes_from_deduction_or_abduction():
    buffers = TaskBuffers([ded(1), abd(2), *seed_tasks()])
    rng = random.Random(0)
    drawn = {buffers.sample_program(rng).task_type for _ in range(50)}
    assert drawn == {TaskType.DEDUCTION, TaskType.ABDUCTION}
    only_induction = TaskBuffers([t for t in seed_tasks() if t.task_type is TaskType.INDUCTION])
    assert only_induction.sample_program(rng).task_type is TaskType.INDUCTION
    with pytest.raises(LookupError):
        TaskBuffers().sample_program(rng)


def test_solver_batch_takes_new_tasks_newest_first_then_uniform_without_repeats():
    old = [ded(i, iteration=1) for i in range(30)]
    buffers = TaskBuffers(old)
    new = [ded(100, iteration=5), ded(101, iteration=7), ded(102, iteration=6), abd(3, iteration=7)]
    for t in new:
        buffers.add(t)
    batch = buffers.solver_batch("deduction", 8, random.Random(0), new_tasks=new)
    assert [t.input for t in batch[:3]] == ["101", "102", "100"]
    assert len(batch) == 8 and len({t.task_id for t in batch}) == 8
    assert all(t.iteration == 1 for t in batch[3:])
    assert buffers.solver_batch("deduction", 2, random.Random(0), new_tasks=new) == batch[:2]


def test_solver_batch_from_a_small_buffer_keeps_the_group_size():
    buffers = TaskBuffers(seed_tasks())
    batch = buffers.solver_batch("abduction", 4, random.Random(0))
    assert len(batch) == 4 and {t.task_id for t in batch} == {buffers.tasks("abduction")[0].task_id}
    assert TaskBuffers().solver_batch("deduction", 4, random.Random(0)) == []  # empty buffer: empty batch, no error
    fresh = [ded(7, iteration=3)]
    assert TaskBuffers().solver_batch("deduction", 3, random.Random(0), new_tasks=fresh) == fresh * 3


def test_buffers_reload_from_the_committed_tasks(tmp_path: Path):
    tasks = [ded(1), abd(2), Task(TaskType.INDUCTION, "def f(a):\n    return -a", shown_inputs=("1",),
             shown_outputs=("-1",), held_inputs=("2", "3"), held_outputs=("-2", "-3"), message="negate",
             proposal_id="p9", reference_ids=("x", "y"), iteration=1)]  # fmt: skip
    with open_run(tmp_path, seed_rows=[task_to_row(t) for t in seed_tasks()]) as store:
        store.config = StoreConfig(fsync=False)
        w = store.begin()
        w.write("tasks", [task_to_row(t) for t in tasks])
        w.commit()
        w = store.begin()
        w.write("tasks", [task_to_row(ded(5, iteration=2))])  # not committed: not in the buffers
    buffers = TaskBuffers.from_connection(connect(tmp_path))
    assert len(buffers) == 3 + 3
    assert buffers.tasks("induction")[1] == tasks[2]  # every field survives the round trip
    assert buffers.tasks("deduction")[1] == tasks[0] and buffers.tasks("deduction")[0].iteration == 0


def test_references_of_distinct_programs_show_each_program_once():
    import random

    from azr_core.algo.buffers import TaskBuffers
    from azr_core.algo.tasks import Task, TaskType

    same = [Task(TaskType.DEDUCTION, f"def f(x):\n    # copy {i}\n    return x", f"{i}", f"{i}") for i in range(20)]
    other = Task(TaskType.DEDUCTION, "def f(x):\n    return x + 1", "1", "2")
    buffers = TaskBuffers([*same, other])
    for seed in range(20):
        refs = buffers.sample_references("deduction", 2, random.Random(seed), distinct_programs=True)
        assert len(refs) == 2 and other in refs  # the identity counts once, however many inputs it has
    uniform = [buffers.sample_references("deduction", 2, random.Random(s)) for s in range(20)]
    assert sum(other in r for r in uniform) < 10  # uniform over tasks: the other program is rarely drawn
