"""The task types, one module each, and the registry the loop asks for them by name.

    deduction.py   program + input -> output        (code_o)
    abduction.py   program + output -> an input     (code_i)
    induction.py   pairs + message -> a program     (code_f)

Each module's class (a `TaskTypeSpec`, see base.py) owns the type's proposer and solver prompts, its skeleton blocks,
how a proposal is parsed and validated into a task, how an answer is read and graded, what the proposer is shown
(reference sampling) and its part in seeding. Everything else loops over the types a run enables
(`selfplay.task_types`, in that order). Adding a type: subclass `TaskTypeSpec` (or `ProgramTaskType`) in a module of
its own, `register(MyType())` when that module is imported, and name it in `selfplay.task_types`.
"""

from __future__ import annotations

from collections.abc import Iterable

from azr_core.algo.types.abduction import Abduction
from azr_core.algo.types.base import ProgramTaskType, TaskTypeSpec
from azr_core.algo.types.deduction import Deduction
from azr_core.algo.types.induction import Induction

__all__ = ["ProgramTaskType", "TaskTypeSpec", "enabled", "get", "register", "registered", "unregister"]

_REGISTRY: dict[str, TaskTypeSpec] = {}


def register(spec: TaskTypeSpec, *, replace: bool = False) -> TaskTypeSpec:
    """Make `spec` available by its name. A second type under a taken name is refused unless `replace`."""
    name = str(spec.name)
    if not name or not name.replace("_", "").isalnum():
        raise ValueError(f"task type name {name!r}: use letters, digits and underscores (it names metrics and groups)")
    if name in _REGISTRY and not replace and _REGISTRY[name] is not spec:
        raise ValueError(f"task type {name!r} is already registered ({_REGISTRY[name]!r}); pass replace=True")
    _REGISTRY[name] = spec
    return spec


def unregister(name: str) -> None:
    """Remove a registered type (tests register their own and clean up)."""
    _REGISTRY.pop(str(name), None)


def registered() -> tuple[str, ...]:
    """The names of the registered types, in registration order."""
    return tuple(_REGISTRY)


def get(name: str) -> TaskTypeSpec:
    """The type registered as `name`; a clear error naming the registered ones otherwise."""
    try:
        return _REGISTRY[str(name)]
    except KeyError:
        raise ValueError(
            f"unknown task type {str(name)!r}: registered are {', '.join(registered())}. A type of your own must be "
            "registered (azr_core.algo.types.register) before the run starts"
        ) from None


def enabled(names: Iterable[str]) -> tuple[TaskTypeSpec, ...]:
    """The types a run enables, in its order (`selfplay.task_types`)."""
    specs = tuple(get(n) for n in names)
    if not specs:
        raise ValueError("selfplay.task_types is empty: enable at least one task type")
    return specs


for _builtin in (Deduction(), Abduction(), Induction()):
    register(_builtin)
