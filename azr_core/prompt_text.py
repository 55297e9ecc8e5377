"""The words of the six prompts (role x task type), in this project's own text, section by section as the reference
code's prompts (`data_construction/prompts.py` of LeapLabTHU/Absolute-Zero-Reasoner, `paper` branch) are built:

- proposer, deduction/abduction: task, purpose, code requirements, input requirements, format, an example of the
  format (a placeholder program, not a working one), how it is judged (with the list of what the static checks
  refuse, exactly as they enforce it), a plan-first instruction, the reference programs as `<snippet_i>` blocks;
- proposer, induction: task, purpose, input requirements, message requirements, format, an example of the format,
  how it is judged, a plan-first instruction, the program followed by the call line `f(<your input>)`;
- solver: the task, what to answer and how to quote it, the program and the known side (induction: the numbered
  ```input_i / ```output_i pairs, the message in a ```message block and the code requirements), the answer format.

docs/fidelity.md compares them prompt by prompt. `compact` variants keep every section in fewer words (for small
models and CPU budgets). `worked_example` adds a complete answer in the `<think>`/`<answer>` format, an invitation to
copy that only a profile with a measurement behind it should turn on.
"""

from __future__ import annotations

from collections.abc import Sequence

from azr_core.executor.checks import banned_summary
from azr_core.task_types import Task, TaskType

#: The call line after the program in an induction proposer's prompt: where the proposed input goes.
INPUT_SUFFIX = "f(<your input goes here>)"

_FORMAT_PROGRAM = "def f(...):\n    # the body\n    return ..."
_FORMAT_INPUT = "arg1, arg2, ..."
_EXAMPLE_PROGRAM = "def f(name: str, record: dict):\n    # the logic goes here\n    return result"
_EXAMPLE_INPUT = "'Ada', {'year': 1815, 'field': 'maths'}"
_EXAMPLE_INPUT_2 = "'Alan', {'year': 1912, 'field': 'logic'}"
_EXAMPLE_OUTPUT = "{'year': 1815, 'field': 'maths'}"

# A complete answer, for `worked_example` only.
_WORKED_PROGRAM = "def f(name: str, info: dict):\n    keys = sorted(info)\n    return name + ':' + ','.join(keys)"
_WORKED_INPUT = "'John', {'age': 20, 'city': 'New York'}"


def fence(tag: str, body: str) -> str:
    return f"```{tag}\n{body}\n```"


def forbidden_lines(indent: str = "  ") -> str:
    """What the static checks refuse, one category per line: the list shown is the list enforced."""
    return "\n".join(f"{indent}- {category}: {', '.join(names)}" for category, names in banned_summary())


def _code_requirements(timeout_s: float, *, multi_step: bool, compact: bool) -> list[str]:
    if compact:
        rows = [
            "`f` is the entry function (helpers may be nested in it); it takes at least one argument and returns a "
            "value",
            "deterministic: no randomness, dates or times, files, network, printing or outside state",
            f"finishes within {timeout_s:g} seconds; imports and classes at the top; ends with the return of `f`",
        ]
        return rows + (["following it takes several steps of reasoning"] if multi_step else [])
    rows = [
        "Name the entry function `f` (`def f(...): ...`); helper definitions may be nested inside it",
        "`f` returns a value",
        "`f` takes at least one parameter",
        "`f` is deterministic: the same input always gives the same output",
    ]
    if multi_step:
        rows.append("Following `f` takes bookkeeping over data that changes in several steps: long, multi-step "
                    "reasoning")  # fmt: skip
    rows += [
        "Stay away from: randomness, dates and times, input and output (files, network), printing or logging, any "
        "state outside the program",
        f"It finishes within {timeout_s:g} seconds on an ordinary CPU",
        "Imports and class definitions come first, at the top of the program",
        "The program ends with the `return` of `f`; anything after it is dropped",
    ]
    return rows


def _bullets(rows: Sequence[str]) -> str:
    return "\n".join(f"- {r}" for r in rows)


def _snippet(task: Task, index: int) -> str:
    parts = [fence("python", task.program), fence("input", task.input or ""), fence("output", task.output or "")]
    return f"<snippet_{index}>\n" + "\n".join(parts) + f"\n</snippet_{index}>"


def _worked_answer(blocks: str, thought: str) -> str:
    return f"### Example of a complete answer:\n<think>\n{thought}\n</think>\n<answer>\n{blocks}\n</answer>\n\n"


def program_proposer(
    task_type: TaskType,
    references: Sequence[Task],
    *,
    timeout_s: float = 10.0,
    compact: bool = False,
    worked_example: bool = False,
) -> str:
    """A deduction or abduction proposer's request: a new program `f` and one input for it."""
    if task_type is TaskType.DEDUCTION:
        purpose = "A test subject will get your program and your input and must work out the output it produces."
        hard = "working out the output from your program and your input"
    else:
        purpose = (
            "Your input is run through your program; a test subject then gets the program and that output and must "
            "find an input (any one) that produces the same output."
        )
        hard = "finding an input from your program and the output your input produced"
    refs = "\n".join(_snippet(t, i) for i, t in enumerate(references)) or "(none yet: write your own)"
    if compact:
        return (
            "## Task: Write a new Python program `f` and one input for it\n"
            f"{purpose} Make it new and different from the reference programs below.\n\n"
            f"### Code requirements:\n{_bullets(_code_requirements(timeout_s, multi_step=True, compact=True))}\n\n"
            "### Input requirements:\n- exactly one input: the arguments of one call to `f`, commas between them, "
            "strings in quotes\n\n"
            f"### Format:\n{fence('python', _FORMAT_PROGRAM)}\n{fence('input', _FORMAT_INPUT)}\n\n"
            + (
                _worked_answer(
                    fence("python", _WORKED_PROGRAM) + "\n" + fence("input", _WORKED_INPUT),
                    "Two transformations to track.",
                )
                if worked_example
                else ""
            )  # fmt: skip
            + f"### Refused by the checks:\n{forbidden_lines('')}\n\n"
            f"### Reference programs:\n{refs}\n"
        )
    worked = (
        _worked_answer(
            fence("python", _WORKED_PROGRAM) + "\n" + fence("input", _WORKED_INPUT),
            "I sort the keys of the dict and join them after the name, so the solver must track two transformations.",
        )
        if worked_example
        else ""
    )
    return (
        "## Task: Write a new Python program (classes allowed, defined at its top) and one input for it\n\n"
        "Taking the reference programs below as examples, design a new and unusual Python program whose behaviour "
        f"takes real algorithmic reasoning to follow. Give the program and one input for it. {purpose} "
        "Think of it as an I.Q. test.\n\n"
        f"### Code requirements:\n{_bullets(_code_requirements(timeout_s, multi_step=True, compact=False))}\n\n"
        "### Input requirements:\n"
        "- Give exactly one input: the arguments of one call to `f`\n"
        "- Separate several arguments with commas\n"
        "- Put quotes around string arguments\n\n"
        "### Format:\n"
        f"- The program in a fenced python block:\n{fence('python', _FORMAT_PROGRAM)}\n"
        f"- The input in a fenced input block:\n{fence('input', _FORMAT_INPUT)}\n\n"
        f"### Example of the format:\n{fence('python', _EXAMPLE_PROGRAM)}\n\n{fence('input', _EXAMPLE_INPUT)}\n\n"
        f"{worked}"
        "### How it is judged:\n"
        "- It runs: your program must execute on your input\n"
        f"- Difficulty of {hard}. Aim for algorithmic or logical depth: data structures such as trees, heaps, "
        "stacks, queues or graphs (as classes of your own if you like), intricate control flow, dynamic "
        "programming, recursion, divide and conquer, greedy choices, backtracking\n"
        "- Originality: clearly different from the reference programs\n"
        f"- The checks refuse a program that uses any of these:\n{forbidden_lines()}\n\n"
        "Plan first: how will your program be hard to follow, different from the references, and original? Then "
        "write the program and its input.\n\n"
        f"### Reference programs:\n{refs}\n"
    )


def induction_proposer(
    reference: Task,
    n_inputs: int,
    *,
    compact: bool = False,
    worked_example: bool = False,
) -> str:
    """An induction proposer's request: N inputs for the given program and a message about it."""
    program = fence("python", f"{reference.program}\n{INPUT_SUFFIX}")
    examples = f"{fence('input', _EXAMPLE_INPUT)}\n{fence('input', _EXAMPLE_INPUT_2)}"
    worked = ""
    if worked_example:
        worked = _worked_answer(
            "\n".join(fence("input", s) for s in ("'John', {'b': 1, 'a': 2}", "'', {}", "'x', {'z': 0}"))
            + "\n" + fence("message", "Sort the dictionary's keys and join them after the name."),
            "The inputs cover empty and non-empty dicts so that the outputs tell the rule apart.",
        )  # fmt: skip
    if compact:
        known = ""
        if worked_example and reference.input is not None:  # the program's own known pair, as a worked example
            pair = f"{fence('input', reference.input)}\ngives {fence('output', reference.output or '')}"
            known = f"For example, the input {pair}\n\n"
        return (
            f"## Task: Write {n_inputs} inputs for the program below, giving varied outputs, and a message about it\n"
            "A test subject sees some of your inputs with their outputs, and your message, and must work out the "
            "program.\n\n"
            f"### Input requirements:\n- {n_inputs} different inputs the program accepts, each in its own fenced "
            "input block: the arguments of a call, commas between them, strings in quotes\n\n"
            "### Message requirements:\n- a hint at what the program does, in a fenced message block, without the "
            "program itself\n\n"
            f"### Format:\n{fence('input', _FORMAT_INPUT)}\n{fence('message', '...')}\n\n"
            f"### Program:\n{program}\n\n{known}"
        )
    return (
        f"## Task: Write {n_inputs} inputs that make the program below produce varied outputs, and a message about "
        "it\n\n"
        f"Design {n_inputs} inputs for the program below whose outputs differ from one another. Some of your inputs, "
        "with the outputs the program gives for them, will be shown to a test subject, who must then work out the "
        "program: an I.Q. test. Leave the test subject a message that helps them find it.\n\n"
        "### Input requirements:\n"
        f"- Give {n_inputs} inputs the program accepts\n"
        "- In each input, separate several arguments with commas\n"
        "- Put quotes around string arguments\n"
        "- Put every input in its own fenced input block\n\n"
        "### Message requirements:\n"
        "- Leave the test subject a message that helps them work out the program\n"
        "- Put it in a fenced message block\n"
        "- Any form will do: a coding question, or a plain description of what the program does\n"
        "- The message may not contain the program itself\n\n"
        f"### Format:\n- Each input:\n{fence('input', _FORMAT_INPUT)}\n- The message:\n{fence('message', '...')}\n\n"
        f"### Example of the format:\n{examples}\n\n{worked}"
        "### How it is judged:\n"
        "- It runs: the program must execute on every input\n"
        "- Coverage: together the inputs and outputs span what the program does, enough to tell what it is\n"
        "- Originality: the inputs differ clearly from one another\n"
        "- Challenge: inputs and message together make the program hard, but possible, to find\n\n"
        "Plan first: understand the program, then decide how your inputs cover it and why they are challenging and "
        "original. Then write the inputs, each in a fenced input block, and the message in a fenced message block.\n\n"
        f"### Program:\n{program}\n"
    )


def deduction_solver(task: Task, *, compact: bool = False) -> str:
    """The solver's request for a deduction task: the output of the program on the input."""
    if compact:
        return (
            "# Task: What does `f` return for this input? Reason step by step, then give the value in a fenced output "
            "block (strings in quotes, several values as a tuple).\n\n"
            f"# Program:\n{fence('python', task.program)}\n\n# Input:\n{fence('input', task.input or '')}\n"
        )
    return (
        "# Task: Work out the output of a Python program for a given input\n"
        "Read the program and the input below, reason step by step, and work out what the program returns for that "
        "input. Write the value in a fenced output block. A string goes in quotes; several returned values go in a "
        "tuple.\n\n"
        f"# Program:\n{fence('python', task.program)}\n\n"
        f"# Input:\n{fence('input', task.input or '')}\n\n"
        f"# Example of the answer format:\n{fence('output', _EXAMPLE_OUTPUT)}\n"
    )


def abduction_solver(task: Task, *, compact: bool = False) -> str:
    """The solver's request for an abduction task: an input that makes the program return the output."""
    if compact:
        return (
            "# Task: Find an input for which `f` returns this output. Reason step by step, then give the input in a "
            "fenced input block (the arguments of a call, commas between them, strings in quotes).\n\n"
            f"# Program:\n{fence('python', task.program)}\n\n# Output:\n{fence('output', task.output or '')}\n"
        )
    return (
        "# Task: Find an input of a Python program that gives a known output\n"
        "Read the program and the output below, reason step by step, and give one input for which the program "
        "returns that output. Write it in a fenced input block. Put quotes around string arguments and separate "
        "several arguments with commas.\n\n"
        f"# Program:\n{fence('python', task.program)}\n\n"
        f"# Output:\n{fence('output', task.output or '')}\n\n"
        f"# Answer format:\n{fence('input', _FORMAT_INPUT)}\n"
        f"# Example of the answer format:\n{fence('input', _EXAMPLE_INPUT)}\n"
    )


def induction_solver(task: Task, *, timeout_s: float = 10.0, compact: bool = False) -> str:
    """The solver's request for an induction task: the program behind the shown pairs and the message."""
    pairs = "\n".join(
        f"{fence(f'input_{i}', x)}\n{fence(f'output_{i}', y)}"
        for i, (x, y) in enumerate(zip(task.shown_inputs, task.shown_outputs, strict=True))
    )
    requirements = _bullets(_code_requirements(timeout_s, multi_step=False, compact=compact))
    if compact:
        return (
            "# Task: Write the function `f` that maps these inputs to these outputs; it is tested on hidden inputs. "
            "Give it in a fenced python block.\n\n"
            f"# Code requirements:\n{requirements}\n\n"
            f"# Input and output pairs:\n{pairs}\n\n# Message:\n{fence('message', task.message or '')}\n"
        )
    return (
        "# Task: Work out the program that maps the inputs to the outputs\n"
        "Below are input/output pairs and a message that describes a function. Reason step by step to write a "
        "program that reproduces the one that made the pairs: it will be tested on hidden inputs of that same "
        "program. Checking your program against each pair helps; revise it until it fits them all. Your final "
        "program, in a fenced python block, is what gets graded.\n\n"
        f"# Code requirements:\n{requirements}\n\n"
        f"# Input and output pairs:\n{pairs}\n\n"
        f"# Message:\n{fence('message', task.message or '')}\n\n"
        f"# Example of the answer format:\n{fence('python', 'def f(a):' + chr(10) + '    return a')}\n\n"
        "The entry function must be named `f`.\n"
    )
