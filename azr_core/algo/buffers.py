"""The task buffers: every valid task by type, for reference sampling and solver batches.

Every valid, non-duplicate task is kept, with the iteration that added it; nothing is ever dropped (the reference code
drops the newest tasks once a buffer is full: not here). The buffers are rebuilt from the committed `tasks` table on
resume, so they are exactly what readers see. `task_to_row` / `row_to_task` are the `tasks` table's rows; the store
stores rows and knows nothing of tasks.
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from azr_core.algo.tasks import TASK_TYPES, Task, TaskType

if TYPE_CHECKING:
    import duckdb

#: Where an induction proposal's program comes from: these buffers, else the induction buffer.
PROGRAM_SOURCES = (TaskType.DEDUCTION, TaskType.ABDUCTION)


def task_to_row(task: Task) -> dict[str, Any]:
    """A Task as a row of the `tasks` table (the iteration is the partition, not a column)."""
    return {
        "task_id": task.task_id,
        "task_type": str(task.task_type),
        "program": task.program,
        "input": task.input,
        "output": task.output,
        "shown_inputs": list(task.shown_inputs),
        "shown_outputs": list(task.shown_outputs),
        "held_inputs": list(task.held_inputs),
        "held_outputs": list(task.held_outputs),
        "message": task.message,
        "proposal_id": task.proposal_id,
        "reference_ids": list(task.reference_ids),
    }


def row_to_task(row: Mapping[str, Any]) -> Task:
    """A `tasks` row (with its `iteration`) back into a Task."""
    return Task(
        task_type=row["task_type"],
        program=row["program"],
        input=row.get("input"),
        output=row.get("output"),
        shown_inputs=tuple(row.get("shown_inputs") or ()),
        shown_outputs=tuple(row.get("shown_outputs") or ()),
        held_inputs=tuple(row.get("held_inputs") or ()),
        held_outputs=tuple(row.get("held_outputs") or ()),
        message=row.get("message"),
        iteration=int(row.get("iteration") or 0),
        proposal_id=row.get("proposal_id"),
        reference_ids=tuple(row.get("reference_ids") or ()),
        task_id=row["task_id"],
    )


class TaskBuffers:
    """One buffer per task type (the built-in ones and any other a task names), with exact-duplicate detection across
    all of them and no size cap."""

    def __init__(self, tasks: Iterable[Task] = ()) -> None:
        self._by_type: dict[str, list[Task]] = {t: [] for t in TASK_TYPES}
        self._ids: set[str] = set()
        self._unkeyed: list[Task] = []  # added since the last `novelty_index`
        self._program_first: dict[str, int] = {}
        self._task_first: dict[str, int] = {}
        self._program_keys: dict[str, str] = {}  # task id -> canonical program key, computed once per task
        for task in tasks:
            self.add(task)

    @classmethod
    def from_connection(cls, con: duckdb.DuckDBPyConnection) -> TaskBuffers:
        """Buffers from the committed `tasks` view of a run (`azr_core.store.views.connect`)."""
        rows = con.sql("SELECT * FROM tasks ORDER BY iteration, task_id").to_dicts()
        return cls(row_to_task(r) for r in rows)

    def add(self, task: Task) -> bool:
        """Add a task; False (and nothing added) when an exact duplicate is already held."""
        if task.task_id in self._ids:
            return False
        self._ids.add(task.task_id)
        self._by_type.setdefault(task.task_type, []).append(task)
        self._unkeyed.append(task)
        return True

    def novelty_index(self) -> tuple[dict[str, int], dict[str, int]]:
        """The canonical keys of every buffered task (`azr_core.algo.program_keys`), each with the first iteration
        that buffered it: (program key -> iteration, task key -> iteration). Program keys span all types.

        Incremental: each call keys only the tasks added since the last one (a few hundred microseconds per task), so
        neither an iteration nor a resume pays for the whole history twice. The dicts are the buffers' own: read them.
        """
        from azr_core.algo.program_keys import task_keys

        for task in self._unkeyed:
            pk, tk = task_keys(task)
            self._program_first[pk] = min(self._program_first.get(pk, task.iteration), task.iteration)
            self._task_first[tk] = min(self._task_first.get(tk, task.iteration), task.iteration)
        self._unkeyed.clear()
        return self._program_first, self._task_first

    def program_key(self, task: Task) -> str:
        """The task's canonical program key (`azr_core.algo.program_keys.program_key`), computed once per task."""
        key = self._program_keys.get(task.task_id)
        if key is None:
            from azr_core.algo.program_keys import program_key

            key = self._program_keys[task.task_id] = program_key(task.program)
        return key

    def __contains__(self, task_id: object) -> bool:
        return task_id in self._ids

    def __len__(self) -> int:
        return len(self._ids)

    def size(self, task_type: TaskType | str) -> int:
        """Number of tasks of one type."""
        return len(self._by_type.get(str(task_type), ()))

    def tasks(self, task_type: TaskType | str) -> list[Task]:
        """The tasks of one type, oldest first (a copy)."""
        return list(self._by_type.get(str(task_type), ()))

    def sample_references(
        self, task_type: TaskType | str, k: int, rng: random.Random, *, distinct_programs: bool = False
    ) -> list[Task]:
        """K distinct reference tasks from the type's buffer, uniformly (all of them when it holds fewer).

        `distinct_programs`: K different programs (canonical, `azr_core.algo.proposer_measures.program_key`), each
        program drawn uniformly among the buffer's programs and then one of its tasks, so a program buffered with many
        inputs is not shown K times. For induction the proposer needs one program instead: see `sample_program`.
        """
        pool = self._by_type.get(str(task_type), [])
        if not distinct_programs:
            return rng.sample(pool, min(k, len(pool)))
        by_program: dict[str, list[Task]] = {}
        for t in pool:  # keys are cached per task: a prompt does not parse the whole buffer again
            by_program.setdefault(self.program_key(t), []).append(t)
        groups = rng.sample(list(by_program.values()), min(k, len(by_program)))
        return [rng.choice(g) for g in groups]

    def sample_program(
        self, rng: random.Random, sources: Sequence[str] = PROGRAM_SOURCES, fallback: str = TaskType.INDUCTION
    ) -> Task:
        """The reference program of an induction proposal: one task from the `sources` buffers (deduction and
        abduction), or from the `fallback` buffer when they are empty."""
        pool = [t for name in sources for t in self._by_type.get(str(name), ())]
        if not pool:
            pool = list(self._by_type.get(str(fallback), ()))
        if not pool:
            raise LookupError("the buffers hold no program to build an induction proposal on")
        return rng.choice(pool)

    def solver_batch(
        self, task_type: TaskType | str, size: int, rng: random.Random, new_tasks: Sequence[Task] = ()
    ) -> list[Task]:
        """Tasks for one solver batch of `size`: the new tasks first (newest first), then uniform from the rest of
        the buffer without replacement; when the buffer holds fewer tasks than `size`, it is sampled again (with
        replacement) so the group keeps its size. Empty only when the buffer is empty.
        """
        task_type = str(task_type)
        fresh = sorted((t for t in new_tasks if t.task_type == task_type), key=lambda t: -t.iteration)
        batch: list[Task] = []
        seen: set[str] = set()
        for t in fresh:
            if len(batch) == size:
                return batch
            if t.task_id not in seen:
                batch.append(t)
                seen.add(t.task_id)
        held = self._by_type.get(task_type, [])
        pool = [t for t in held if t.task_id not in seen]
        batch += rng.sample(pool, min(size - len(batch), len(pool)))
        everything = held or batch
        while len(batch) < size and everything:
            batch.append(rng.choice(everything))
        return batch
