"""Prompts for the six (role x task type) cases as chat messages, and how they become text for the model.

Each task type writes its own (azr_core.algo.types); the shared words are in azr_core/algo/prompt_text.py, section by
section as the reference code's. Every prompt is a list of chat
messages; `render` turns it into text with the paper's raw template or the model's own chat template and, as in the
paper (`Assistant: <think>`), opens the `<think>` block for the model (or the answer skeleton, `response_prefill`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

from azr_core.algo.tasks import Task, TaskType
from azr_core.algo.types import get as task_type_spec

THINK_PREFILL = "<think>"

SYSTEM_PROMPT = (
    "A conversation between User and Assistant. The user asks a question, and the Assistant solves it. The assistant "
    "first thinks about the reasoning process in the mind and then provides the user with the answer. The reasoning "
    "process and answer are enclosed within <think> </think> and <answer> </answer> tags, respectively, i.e., "
    "<think> reasoning process here </think> <answer> answer here </answer>."
)


def _messages(user: str) -> list[dict[str, str]]:
    return [{"role": "system", "content": SYSTEM_PROMPT}, {"role": "user", "content": user}]


def proposer_messages(
    task_type: TaskType | str,
    references: Sequence[Task],
    *,
    n_inputs: int = 10,
    compact: bool = False,
    worked_example: bool = False,
    timeout_s: float = 10.0,
) -> list[dict[str, str]]:
    """Chat messages asking the proposer for a new task of `task_type` (words: azr_core/algo/prompt_text.py).

    `references`: what the type's `references` drew (deduction/abduction: K snippets of the type's buffer, maybe
    none; induction: the one program whose inputs the proposer must write, required).
    `compact`: every section in fewer words; `worked_example`: add a complete answer; `timeout_s`: the time limit
    the code requirements state (the executor's).
    """
    text = task_type_spec(task_type).proposer_text(references, n_inputs=n_inputs, compact=compact,
                                                   worked_example=worked_example, timeout_s=timeout_s)  # fmt: skip
    return _messages(text)


def solver_messages(task: Task, *, compact: bool = False, timeout_s: float = 10.0) -> list[dict[str, str]]:
    """Chat messages asking the solver to solve `task` (its known side only: never the answer or held-out pairs)."""
    return _messages(task_type_spec(task.task_type).solver_text(task, compact=compact, timeout_s=timeout_s))


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
    spec = task_type_spec(task_type)
    return spec.propose_blocks(n_inputs) if str(role) == "propose" else spec.solve_blocks()


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
