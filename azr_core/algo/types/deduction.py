"""Deduction: the solver gets a program and an input and must give the output (the paper's code_o)."""

from __future__ import annotations

from azr_core.algo.prompt_text import EXAMPLE_OUTPUT, fence
from azr_core.algo.tasks import Task, TaskType
from azr_core.algo.types.base import ProgramTaskType

PURPOSE = "A test subject will get your program and your input and must work out the output it produces."
HARD = "working out the output from your program and your input"


class Deduction(ProgramTaskType):
    """program + input -> output. Graded by comparing the answer's value with the gold output."""

    name = TaskType.DEDUCTION
    answer_tag = "output"
    purpose = PURPOSE
    hard = HARD

    def solver_text(self, task: Task, *, compact: bool, timeout_s: float) -> str:
        """The solver's request for a deduction task: the output of the program on the input."""
        if compact:
            return (
                "# Task: What does `f` return for this input? Reason step by step, then give the value in a fenced "
                "output block (strings in quotes, several values as a tuple).\n\n"
                f"# Program:\n{fence('python', task.program)}\n\n# Input:\n{fence('input', task.input or '')}\n"
            )
        return (
            "# Task: Work out the output of a Python program for a given input\n"
            "Read the program and the input below, reason step by step, and work out what the program returns for that "
            "input. Write the value in a fenced output block. A string goes in quotes; several returned values go in a "
            "tuple.\n\n"
            f"# Program:\n{fence('python', task.program)}\n\n"
            f"# Input:\n{fence('input', task.input or '')}\n\n"
            f"# Example of the answer format:\n{fence('output', EXAMPLE_OUTPUT)}\n"
        )
