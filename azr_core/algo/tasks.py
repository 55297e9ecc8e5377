"""The vocabulary of self-play: task types, roles, the six training groups, and a task (a verified triplet).

A task's `input` is the text of the arguments of a call to `f` (CRUXEval style, e.g. `[1, 2], 'a'`) and its `output`
is the `repr` of what `f` returned, both as the executor produced or checked them. An induction task holds the pairs
shown to the solver, the pairs held out for grading, and the proposer's message.
"""

from __future__ import annotations

import base64
import hashlib
import json
import uuid
from dataclasses import dataclass, field
from enum import StrEnum


class TaskType(StrEnum):
    """The built-in task types: what the solver is given and what it must produce. A run may enable further types
    (azr_core.algo.types); a task's `task_type` is then that type's name, a plain string."""

    DEDUCTION = "deduction"  # program + input -> output
    ABDUCTION = "abduction"  # program + output -> an input
    INDUCTION = "induction"  # shown input/output pairs + message -> program


class Role(StrEnum):
    """Which side of self-play a completion was generated for."""

    PROPOSE = "propose"
    SOLVE = "solve"


TASK_TYPES: tuple[TaskType, ...] = tuple(TaskType)
ROLES: tuple[Role, ...] = tuple(Role)
#: The six (role, task type) groups of TRR++ over the built-in types: each has its own baseline and normalisation.
GROUPS: tuple[tuple[Role, TaskType], ...] = tuple((r, t) for r in ROLES for t in TASK_TYPES)

#: The zero triplet that seeds every buffer: the identity function on one input (as in the paper).
SEED_PROGRAM = "def f(x):\n    return x"
SEED_INPUT = "'Hello World'"
SEED_OUTPUT = "'Hello World'"


def type_name(task_type: TaskType | str) -> TaskType | str:
    """A built-in type's name as its `TaskType` member (so `is` comparisons hold), any other name as it is.

    >>> type_name("induction") is TaskType.INDUCTION, type_name("typeof")
    (True, 'typeof')
    """
    name = str(task_type)
    if not name:
        raise ValueError("a task type needs a name")
    return TaskType(name) if name in _BUILTIN else name


_BUILTIN = frozenset(t.value for t in TaskType)


def fingerprint(task_type: TaskType | str, program: str, inputs: list[str] | tuple[str, ...]) -> str:
    """Content hash that makes two tasks exact duplicates: same type, same program text, same input text(s).

    Leading/trailing whitespace is ignored (the fenced-block parser already trims it); nothing else is normalised,
    so a renamed variable is a different task. Induction inputs count as a set: proposing the same inputs in another
    order is the same task.

    >>> p = "def f(x):\\n    return x"
    >>> a = fingerprint("deduction", p, ["1"])
    >>> a == fingerprint("deduction", p + "\\n", [" 1"]), a == fingerprint("abduction", p, ["1"])
    (True, False)
    """
    items = [s.strip() for s in inputs]
    if type_name(task_type) is TaskType.INDUCTION:
        items = sorted(set(items))
    payload = json.dumps([str(type_name(task_type)), program.strip(), items], ensure_ascii=False)
    return _short_id(hashlib.sha256(payload.encode("utf-8")).digest())


def _short_id(digest: bytes) -> str:
    # 12 base32 characters = 60 bits: collisions stay below 1e-6 up to a million tasks, and DuckDB keeps strings of
    # at most 12 bytes inline, which makes joins and group-bys on ids over millions of rollouts markedly faster.
    return base64.b32encode(digest[:8]).decode("ascii").lower()[:ID_LENGTH]


ID_LENGTH = 12


def new_id() -> str:
    """A fresh random id in the same 12-character form as task ids (for proposals and rollouts).

    >>> len(new_id()), new_id() != new_id()
    (12, True)
    """
    return _short_id(uuid.uuid4().bytes)


@dataclass(frozen=True)
class Task:
    """A verified task, as the buffers hold it and the `tasks` table stores it.

    task_id is the fingerprint (so an exact duplicate has the id of the task it duplicates). `iteration` is the one
    whose commit added it; the seed triplet has iteration 0.
    """

    task_type: TaskType | str
    program: str
    input: str | None = None  # deduction / abduction: call arguments text
    output: str | None = None  # deduction / abduction: repr of f(input)
    shown_inputs: tuple[str, ...] = ()  # induction: pairs given to the solver
    shown_outputs: tuple[str, ...] = ()
    held_inputs: tuple[str, ...] = ()  # induction: pairs the solver's program is graded on
    held_outputs: tuple[str, ...] = ()
    message: str | None = None  # induction: the proposer's hint about what f does
    iteration: int = 0
    proposal_id: str | None = None  # the proposal that produced it (None for the seed)
    reference_ids: tuple[str, ...] = field(default_factory=tuple)  # tasks shown to the proposer as references
    task_id: str = ""

    def __post_init__(self) -> None:
        object.__setattr__(self, "task_type", type_name(self.task_type))
        if not self.task_id:
            object.__setattr__(self, "task_id", fingerprint(self.task_type, self.program, self.all_inputs))

    @property
    def all_inputs(self) -> tuple[str, ...]:
        """Every input of the task: the one input, or the induction pairs shown and held out."""
        if self.task_type is TaskType.INDUCTION:
            return self.shown_inputs + self.held_inputs
        return (self.input or "",)


def seed_tasks() -> list[Task]:
    """The zero triplet for each built-in type's buffer: identity on one input (induction gets it as one shown pair,
    one held out). A run's seeds are its enabled types' `zero_tasks` (azr_core.algo.types), these for the built-ins.

    The induction buffer needs a held-out pair to grade on, so its seed uses the identity with two inputs.
    """
    ded = Task(TaskType.DEDUCTION, SEED_PROGRAM, SEED_INPUT, SEED_OUTPUT)
    abd = Task(TaskType.ABDUCTION, SEED_PROGRAM, SEED_INPUT, SEED_OUTPUT)
    ind = Task(
        TaskType.INDUCTION,
        SEED_PROGRAM,
        shown_inputs=(SEED_INPUT,),
        shown_outputs=(SEED_OUTPUT,),
        held_inputs=("[1, 2, 3]",),
        held_outputs=("[1, 2, 3]",),
        message="f returns its argument unchanged.",
    )
    return [ded, abd, ind]
