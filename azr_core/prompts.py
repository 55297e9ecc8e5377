"""Prompts for the six (role x task type) cases, following the structure of the Absolute Zero paper.

A proposer prompt states the task, the code and input requirements, the answer format (with a complete worked example,
since small models rarely get the format right from a description alone), what makes a good task, and the K reference
snippets. A solver prompt gives the snippet and the known side. Every prompt is a list of chat messages; `render`
turns it into text with the model's own chat template and, as in the paper (`Assistant: <think>`), opens the `<think>`
block for the model.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

from azr_core.task_types import Task, TaskType

THINK_PREFILL = "<think>"

SYSTEM_PROMPT = (
    "A conversation between User and Assistant. The user asks a question, and the Assistant solves it. The assistant "
    "first thinks about the reasoning process in the mind and then provides the user with the answer. The reasoning "
    "process and answer are enclosed within <think> </think> and <answer> </answer> tags, respectively, i.e., "
    "<think> reasoning process here </think> <answer> answer here </answer>."
)

#: What the prompt names as forbidden; the executor's static checks hold the full list.
BANNED_HINT: tuple[str, ...] = (
    "random", "time", "datetime", "os", "sys", "subprocess", "threading", "multiprocessing", "socket",
    "open", "eval", "exec", "__import__", "print", "input",
)  # fmt: skip

_CODE_REQUIREMENTS = """\
### Code Requirements:
- Name the entry function `f` (e.g., `def f(...): ...`); you can have nested definitions inside `f`
- Ensure the function returns a value
- Include at least one input parameter
- Make the function deterministic
- Make the snippet require state tracking across multiple data transformations (multi-step reasoning)
- AVOID: random functions or variables, date/time operations, I/O (files, network), printing, external state
- Ensure execution completes within a few seconds
- All imports and class definitions go at the very top of the snippet
- The snippet ends with the return statement of `f`; anything after it is removed
"""

_INPUT_REQUIREMENTS = """\
### Input Requirements:
- Provide exactly one test input for your function, written as the arguments of a call to `f`
- Format multiple arguments with commas between them
- Use Python literals only and remember to add quotes around string arguments
"""

_EXAMPLE_SNIPPET = "def f(name: str, info: dict):\n    keys = sorted(info)\n    return name + ':' + ','.join(keys)"
_EXAMPLE_INPUT = "'John', {'age': 20, 'city': 'New York'}"


def _fence(tag: str, body: str) -> str:
    return f"```{tag}\n{body}\n```"


def _example_answer(blocks: str, thought: str) -> str:
    """A complete answer in the required format: the worked example every proposer and solver prompt carries."""
    return f"<think>\n{thought}\n</think>\n<answer>\n{blocks}\n</answer>"


def _evaluation(task_goal: str, banned: Sequence[str]) -> str:
    return (
        "### Evaluation Criteria:\n"
        "- Executability: your code must run on your input\n"
        f"- Difficulty in {task_goal}; focus on algorithmic reasoning or logical complexity (data structures, "
        "control flow, recursion, dynamic programming, ...)\n"
        "- Creativity: the code must be clearly different from the reference snippets\n"
        f"- Do not use any of these words, even in comments: {', '.join(banned)}\n"
    )


def _reference_block(task: Task, index: int) -> str:
    parts = [_fence("python", task.program)]
    if task.task_type is TaskType.INDUCTION:
        for inp, out in zip(task.shown_inputs + task.held_inputs, task.shown_outputs + task.held_outputs, strict=True):
            parts += [_fence("input", inp), _fence("output", out)]
    else:
        parts += [_fence("input", task.input or ""), _fence("output", task.output or "")]
    return f"<snippet_{index}>\n" + "\n".join(parts) + f"\n</snippet_{index}>"


def _references(references: Sequence[Task]) -> str:
    if not references:
        return "### Reference Code Snippets:\n(none yet: write your own)\n"
    body = "\n".join(_reference_block(t, i) for i, t in enumerate(references))
    return f"### Reference Code Snippets:\n{body}\n"


def _proposer_program_compact(task_type: TaskType, references: Sequence[Task], banned: Sequence[str]) -> str:
    goal = (
        "A test subject will get your code and input and must predict the output."
        if task_type is TaskType.DEDUCTION
        else "A test subject will get your code and its output and must find an input that gives it."
    )
    return (
        f"## Task: Write a new Python function `f` and one input for it. {goal}\n"
        "- `f` takes at least one argument, returns a value and is deterministic; nested helpers go inside `f`\n"
        f"- Do not use: {', '.join(banned)}\n"
        "- The input is the arguments of a call to `f`, as Python literals (quote strings)\n"
        "- Make it different from the references and take a few steps of reasoning to follow\n"
        "Answer with the code in a ```python block, then the input in an ```input block.\n\n"
        f"{_references(references)}"
    )


def _proposer_program_task(task_type: TaskType, references: Sequence[Task], banned: Sequence[str]) -> str:
    if task_type is TaskType.DEDUCTION:
        goal = "deduce the output from the given input"
        title = "Create a Python Code Snippet (where custom classes are allowed) with one Matching Input"
        use = (
            "design a new and unique Python code snippet that demands deep algorithmic reasoning to deduce the "
            "output from the input. A test subject will be given the snippet and your input and must predict the "
            "output. This is meant to be an I.Q. test."
        )
    else:
        goal = "deduce one possible input from the given output"
        title = "Create a Python Code Snippet (where custom classes are allowed) with one Matching Input"
        use = (
            "design a new and unique Python code snippet that demands deep algorithmic reasoning to deduce one "
            "possible input from a given output. Your input will be plugged into the snippet to produce the output, "
            "which a test subject is given to come up with any input that produces the same output. This is meant "
            "to be an I.Q. test."
        )
    example = _example_answer(
        _fence("python", _EXAMPLE_SNIPPET) + "\n" + _fence("input", _EXAMPLE_INPUT),
        "I sort the keys of the dict and join them after the name, so the solver must track two transformations.",
    )
    return (
        f"## Task: {title}\n\n"
        f"Using the reference code snippets provided below as examples, {use} Your submission must include both "
        "a code snippet and a test input.\n\n"
        f"{_CODE_REQUIREMENTS}\n{_INPUT_REQUIREMENTS}\n"
        "### Formatting:\n"
        "- Think inside <think> </think>, then give your answer inside <answer> </answer>\n"
        "- Inside the answer, put your code in a ```python block and your input in an ```input block\n\n"
        f"### Example of a complete answer:\n{example}\n\n"
        f"{_evaluation(goal, banned)}\n"
        f"{_references(references)}\n"
        "First devise a plan: how your snippet will be challenging, distinct from the references, and creative. "
        "Then write the code and the input."
    )


def _proposer_induction_compact(reference: Task, n_inputs: int, banned: Sequence[str]) -> str:
    example = ""
    if reference.input:
        shown = f"{_fence('input', reference.input)}\ngives the output {_fence('output', reference.output or '')}"
        example = f"For example, the input {shown}\n\n"
    return (
        f"## Task: Write {n_inputs} different inputs for the function below, so that its outputs show what it does, "
        "and a message that hints at what it does without showing the code.\n"
        "- Each input is the arguments of a call to `f`, as Python literals, in its own ```input block\n"
        "- Then the message in a ```message block\n\n"
        f"### Code Snippet:\n{_fence('python', reference.program)}\n\n{example}"
    )


def _proposer_induction(reference: Task, n_inputs: int, banned: Sequence[str]) -> str:
    example = _example_answer(
        "\n".join(_fence("input", s) for s in ("'John', {'b': 1, 'a': 2}", "'', {}", "'x', {'z': 0}"))
        + "\n"
        + _fence("message", "Sort the dictionary's keys and join them after the name."),
        "The inputs should cover empty and non-empty dicts so that the outputs tell the rule apart.",
    )
    return (
        f"## Task: Output {n_inputs} Inputs that can be plugged into the following Code Snippet to produce diverse "
        "Outputs, and give a message related to the given snippet.\n\n"
        f"Using the code snippet provided below, design {n_inputs} inputs that can be plugged into the code snippet "
        "to produce a diverse set of outputs. A subset of your inputs and their outputs will be given to a test "
        "subject to deduce the function, which is meant to be an I.Q. test. Leave a message to the test subject to "
        "help them deduce the code snippet.\n\n"
        "### Input Requirements:\n"
        f"- Provide {n_inputs} valid, distinct inputs for the code snippet, each written as the arguments of a call\n"
        "- Format multiple arguments with commas between them; use Python literals; quote strings\n"
        "- Wrap each input in its own ```input block\n\n"
        "### Message Requirements:\n"
        "- Leave a message in a ```message block that helps the test subject deduce the code snippet\n"
        "- It can be a coding question or a description of what the snippet does, but must not contain the code\n\n"
        "### Formatting:\n"
        "- Think inside <think> </think>, then give your answer inside <answer> </answer>\n\n"
        f"### Example of a complete answer (for another snippet, with three inputs):\n{example}\n\n"
        "### Evaluation Criteria:\n"
        "- Executability: the snippet must run on every input\n"
        "- Coverage: the inputs and outputs should cover the snippet's behaviour\n"
        f"- Creativity: the inputs should be diverse; do not use these words: {', '.join(banned)}\n\n"
        f"### Code Snippet:\n{_fence('python', reference.program)}\n"
    )


def _solver_compact(task: Task) -> str:
    if task.task_type is TaskType.DEDUCTION:
        return (
            "# Task: What does `f` return for this input?\n\n"
            f"{_fence('python', task.program)}\n\n{_fence('input', task.input or '')}\n\n"
            "Give the returned value as a Python literal in an ```output block."
        )
    if task.task_type is TaskType.ABDUCTION:
        return (
            "# Task: Find an input for which `f` returns this output.\n\n"
            f"{_fence('python', task.program)}\n\n{_fence('output', task.output or '')}\n\n"
            "Give the input as the arguments of a call to `f` (Python literals) in an ```input block."
        )
    pairs = "\n".join(
        f"{_fence('input', i)}\n{_fence('output', o)}"
        for i, o in zip(task.shown_inputs, task.shown_outputs, strict=True)
    )
    return (
        "# Task: Write a Python function `f` that maps these inputs to these outputs.\n\n"
        f"{pairs}\n\n# Message:\n{task.message or ''}\n\n"
        "Give the function, named `f`, in a ```python block."
    )


def _solver_deduction(task: Task) -> str:
    example = _example_answer(_fence("output", "'John:age,city'"), "keys sorted are age, city; joined after John.")
    return (
        "# Task: Deduce the Output of a Python Code Snippet Given an Input\n\n"
        "Using the code snippet and input below, determine the value `f` returns when called with the input.\n\n"
        f"{_fence('python', task.program)}\n\n{_fence('input', task.input or '')}\n\n"
        "Give the output as a Python literal inside an ```output block in your answer.\n\n"
        f"# Example of a complete answer (for another snippet):\n{example}\n"
    )


def _solver_abduction(task: Task) -> str:
    example = _example_answer(_fence("input", _EXAMPLE_INPUT), "f joins sorted keys after the name; age, city fit.")
    return (
        "# Task: Provide One Possible Input of a Python Code Snippet Given the Code and Output\n\n"
        "Given the code snippet and the output below, find an input that makes `f` return exactly that output. "
        "Write the input as the arguments of a call to `f` (commas between arguments, Python literals only).\n\n"
        f"{_fence('python', task.program)}\n\n{_fence('output', task.output or '')}\n\n"
        "Give the input inside an ```input block in your answer.\n\n"
        f"# Example of a complete answer (for another snippet):\n{example}\n"
    )


def _solver_induction(task: Task) -> str:
    pairs = "\n".join(
        f"{_fence('input', i)}\n{_fence('output', o)}"
        for i, o in zip(task.shown_inputs, task.shown_outputs, strict=True)
    )
    example = _example_answer(_fence("python", _EXAMPLE_SNIPPET), "The outputs join the sorted keys after the name.")
    return (
        "# Task: Deduce the Function that Produced the Outputs from the Inputs\n\n"
        "Given input/output pairs and a message describing the function, deduce a Python function `f` that produces "
        "the outputs from the inputs. It will be tested on hidden inputs made by the same original code.\n\n"
        f"# Input and Output Pairs:\n{pairs}\n\n# Message:\n{task.message or ''}\n\n"
        "Give the complete function, named `f`, inside a ```python block in your answer. Do not print anything.\n\n"
        f"# Example of a complete answer (for other pairs):\n{example}\n"
    )


def _messages(user: str) -> list[dict[str, str]]:
    return [{"role": "system", "content": SYSTEM_PROMPT}, {"role": "user", "content": user}]


def proposer_messages(
    task_type: TaskType | str,
    references: Sequence[Task],
    *,
    n_inputs: int = 10,
    banned: Sequence[str] = BANNED_HINT,
    compact: bool = False,
) -> list[dict[str, str]]:
    """Chat messages asking the proposer for a new task of `task_type`.

    deduction/abduction: `references` are the K snippets sampled from that type's buffer (may be empty).
    induction: `references[0]` is the one program whose inputs the proposer must write (required).
    `compact`: the short variant (no worked example; for small models and CPU budgets).
    """
    task_type = TaskType(task_type)
    if task_type is TaskType.INDUCTION:
        if not references:
            raise ValueError("an induction proposer prompt needs one reference program")
        build = _proposer_induction_compact if compact else _proposer_induction
        return _messages(build(references[0], n_inputs, banned))
    build = _proposer_program_compact if compact else _proposer_program_task
    return _messages(build(task_type, references, banned))


def solver_messages(task: Task, *, compact: bool = False) -> list[dict[str, str]]:
    """Chat messages asking the solver to solve `task` (its known side only: never the answer or held-out pairs)."""
    if compact:
        return _messages(_solver_compact(task))
    builders = {
        TaskType.DEDUCTION: _solver_deduction,
        TaskType.ABDUCTION: _solver_abduction,
        TaskType.INDUCTION: _solver_induction,
    }
    return _messages(builders[task.task_type](task))


class ChatTokenizer(Protocol):
    """Anything with a Hugging Face style chat template."""

    def apply_chat_template(self, conversation: list[dict[str, str]], **kwargs: Any) -> Any: ...


#: The paper's prompt for base models (the reference's `instruction_following`); it opens `<think>` itself.
RAW_TEMPLATE = SYSTEM_PROMPT + " User: {prompt}\nAssistant: "

#: Where a skeleton block ends: its closing fence (kept in the text, as stop strings are).
SKELETON_STOP = "```"


def skeleton_blocks(role: str, task_type: TaskType | str, n_inputs: int = 10) -> tuple[str, ...]:
    """The fenced blocks of an answer, in order, as the skeleton opens them for the model.

    >>> skeleton_blocks("propose", "induction", 2)
    ('input', 'input', 'message')
    """
    task_type = TaskType(task_type)
    if str(role) == "propose":
        if task_type is TaskType.INDUCTION:
            return ("input",) * n_inputs + ("message",)
        return ("python", "input")
    return {TaskType.DEDUCTION: ("output",), TaskType.ABDUCTION: ("input",), TaskType.INDUCTION: ("python",)}[task_type]


def block_opening(tag: str) -> str:
    """The text that opens the next block of a skeleton answer."""
    return f"\n```{tag}\n"


def response_prefill(mode: str, role: str, task_type: TaskType | str) -> str:
    """What opens the assistant's answer: '<think>' (the paper), '' or the answer skeleton up to its first block.

    >>> response_prefill("skeleton", "solve", "deduction")
    '<think>\\n</think>\\n<answer>\\n```output\\n'
    """
    if mode == "think":
        return THINK_PREFILL
    if mode == "none":
        return ""
    if mode == "skeleton":
        return f"{THINK_PREFILL}\n</think>\n<answer>\n```{skeleton_blocks(role, task_type, 1)[0]}\n"
    raise ValueError(f"unknown response prefill {mode!r}: think, skeleton or none")


def close_skeleton(text: str, finish_reason: str) -> str:
    """Close a skeleton answer whose model stopped by itself (a stop string or end of sequence): its open block and
    the `<answer>` tag. An answer cut at the length limit stays cut, so its format fails.

    >>> close_skeleton("\\n</think>\\n<answer>\\n```output\\n[1, 2]", "stop")
    '\\n</think>\\n<answer>\\n```output\\n[1, 2]\\n```\\n</answer>'
    """
    if finish_reason != "stop":
        return text
    if text.count("```") % 2:
        text += "\n```"
    return text if text.endswith("</answer>") else text + "\n</answer>"


def render(
    tokenizer: ChatTokenizer | None,
    messages: list[dict[str, str]],
    *,
    prefill: str = THINK_PREFILL,
    template: str = "chat",
) -> str:
    """Prompt text for generation, ending in `prefill`.

    'chat': the tokenizer's chat template with the assistant turn opened. 'raw': the paper's template for base models,
    `RAW_TEMPLATE` around the user message (its system text is the template's own preamble).
    """
    if template == "raw":
        user = next(m["content"] for m in messages if m["role"] == "user")
        return RAW_TEMPLATE.format(prompt=user) + prefill
    if template != "chat":
        raise ValueError(f"unknown prompt template {template!r}: raw or chat")
    text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    if not isinstance(text, str):
        raise TypeError(f"apply_chat_template(tokenize=False) returned {type(text).__name__}, expected str")
    return text + prefill
