"""The words the prompts share, in this project's own text, section by section as the reference code's prompts
(`data_construction/prompts.py` of LeapLabTHU/Absolute-Zero-Reasoner, `paper` branch) are built. Each task type's own
wording (its purpose, its solver's request, induction's whole proposer request) lives in its module under
`azr_core/algo/types/`.

- proposer, deduction/abduction (`program_proposer`): task, purpose, code requirements, input requirements, format,
  an example of the format (a placeholder program, not a working one), how it is judged (with the list of what the
  static checks refuse, exactly as they enforce it), a plan-first instruction, the reference programs as
  `<snippet_i>` blocks;
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

from azr_core.algo.tasks import Task
from azr_core.executor.checks import banned_summary

FORMAT_PROGRAM = "def f(...):\n    # the body\n    return ..."
FORMAT_INPUT = "arg1, arg2, ..."
EXAMPLE_PROGRAM = "def f(name: str, record: dict):\n    # the logic goes here\n    return result"
EXAMPLE_INPUT = "'Ada', {'year': 1815, 'field': 'maths'}"
EXAMPLE_INPUT_2 = "'Alan', {'year': 1912, 'field': 'logic'}"
EXAMPLE_OUTPUT = "{'year': 1815, 'field': 'maths'}"

# A complete answer, for `worked_example` only.
WORKED_PROGRAM = "def f(name: str, info: dict):\n    keys = sorted(info)\n    return name + ':' + ','.join(keys)"
WORKED_INPUT = "'John', {'age': 20, 'city': 'New York'}"


def fence(tag: str, body: str) -> str:
    return f"```{tag}\n{body}\n```"


def forbidden_lines(indent: str = "  ") -> str:
    """What the static checks refuse, one category per line: the list shown is the list enforced."""
    return "\n".join(f"{indent}- {category}: {', '.join(names)}" for category, names in banned_summary())


def code_requirements(timeout_s: float, *, multi_step: bool, compact: bool) -> list[str]:
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


def bullets(rows: Sequence[str]) -> str:
    return "\n".join(f"- {r}" for r in rows)


def _snippet(task: Task, index: int) -> str:
    parts = [fence("python", task.program), fence("input", task.input or ""), fence("output", task.output or "")]
    return f"<snippet_{index}>\n" + "\n".join(parts) + f"\n</snippet_{index}>"


def worked_answer(blocks: str, thought: str) -> str:
    return f"### Example of a complete answer:\n<think>\n{thought}\n</think>\n<answer>\n{blocks}\n</answer>\n\n"


def program_proposer(
    references: Sequence[Task],
    *,
    purpose: str,
    hard: str,
    timeout_s: float = 10.0,
    compact: bool = False,
    worked_example: bool = False,
) -> str:
    """A program proposer's request (deduction, abduction): a new program `f` and one input for it. `purpose`: what
    the test subject will do with them (one sentence or two); `hard`: what the difficulty criterion is about."""
    refs = "\n".join(_snippet(t, i) for i, t in enumerate(references)) or "(none yet: write your own)"
    if compact:
        return (
            "## Task: Write a new Python program `f` and one input for it\n"
            f"{purpose} Make it new and different from the reference programs below.\n\n"
            f"### Code requirements:\n{bullets(code_requirements(timeout_s, multi_step=True, compact=True))}\n\n"
            "### Input requirements:\n- exactly one input: the arguments of one call to `f`, commas between them, "
            "strings in quotes\n\n"
            f"### Format:\n{fence('python', FORMAT_PROGRAM)}\n{fence('input', FORMAT_INPUT)}\n\n"
            + (
                worked_answer(
                    fence("python", WORKED_PROGRAM) + "\n" + fence("input", WORKED_INPUT),
                    "Two transformations to track.",
                )
                if worked_example
                else ""
            )  # fmt: skip
            + f"### Refused by the checks:\n{forbidden_lines('')}\n\n"
            f"### Reference programs:\n{refs}\n"
        )
    worked = (
        worked_answer(
            fence("python", WORKED_PROGRAM) + "\n" + fence("input", WORKED_INPUT),
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
        f"### Code requirements:\n{bullets(code_requirements(timeout_s, multi_step=True, compact=False))}\n\n"
        "### Input requirements:\n"
        "- Give exactly one input: the arguments of one call to `f`\n"
        "- Separate several arguments with commas\n"
        "- Put quotes around string arguments\n\n"
        "### Format:\n"
        f"- The program in a fenced python block:\n{fence('python', FORMAT_PROGRAM)}\n"
        f"- The input in a fenced input block:\n{fence('input', FORMAT_INPUT)}\n\n"
        f"### Example of the format:\n{fence('python', EXAMPLE_PROGRAM)}\n\n{fence('input', EXAMPLE_INPUT)}\n\n"
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
