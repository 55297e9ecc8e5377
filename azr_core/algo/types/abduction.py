"""Abduction: the solver gets a program and an output and must find an input that gives it (the paper's code_i)."""

from __future__ import annotations

from azr_core.algo.prompt_text import EXAMPLE_INPUT, FORMAT_INPUT, fence
from azr_core.algo.tasks import Task, TaskType
from azr_core.algo.types.base import ProgramTaskType

PURPOSE = (
    "Your input is run through your program; a test subject then gets the program and that output and must find an "
    "input (any one) that produces the same output."
)
HARD = "finding an input from your program and the output your input produced"


class Abduction(ProgramTaskType):
    """program + output -> an input. Graded by running the program on the answer in the sandbox."""

    name = TaskType.ABDUCTION
    answer_tag = "input"
    purpose = PURPOSE
    hard = HARD

    def solver_text(self, task: Task, *, compact: bool, timeout_s: float) -> str:
        """The solver's request for an abduction task: an input that makes the program return the output."""
        if compact:
            return (
                "# Task: Find an input for which `f` returns this output. Reason step by step, then give the input in "
                "a fenced input block (the arguments of a call, commas between them, strings in quotes).\n\n"
                f"# Program:\n{fence('python', task.program)}\n\n# Output:\n{fence('output', task.output or '')}\n"
            )
        return (
            "# Task: Find an input of a Python program that gives a known output\n"
            "Read the program and the output below, reason step by step, and give one input for which the program "
            "returns that output. Write it in a fenced input block. Put quotes around string arguments and separate "
            "several arguments with commas.\n\n"
            f"# Program:\n{fence('python', task.program)}\n\n"
            f"# Output:\n{fence('output', task.output or '')}\n\n"
            f"# Answer format:\n{fence('input', FORMAT_INPUT)}\n"
            f"# Example of the answer format:\n{fence('input', EXAMPLE_INPUT)}\n"
        )
