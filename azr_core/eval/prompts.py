"""Evaluation prompts: the paper's templates, and the model's chat template as an option.

`raw` is the plain `User:/Assistant: <think>` template the paper evaluates base models with (the same framing as
self-play), `chat` wraps the same question in the tokenizer's chat template. Math questions carry the usual
boxed-answer instruction; code-reasoning ones ask for the answer in `<answer>` tags.
"""

from __future__ import annotations

from typing import Literal

from azr_core.eval.benchmarks import BENCHMARKS, Item

Template = Literal["raw", "chat"]

RAW_TEMPLATE = (
    "A conversation between User and Assistant. The user asks a question, and the Assistant solves it. The assistant "
    "first thinks about the reasoning process in the mind and then provides the user with the answer. The reasoning "
    "process and answer are enclosed within <think> </think> and <answer> </answer> tags, respectively, i.e., "
    "<think> reasoning process here </think> <answer> answer here </answer>.\nUser: {question}\nAssistant: <think>"
)
MATH_INSTRUCTION = "Please reason step by step, and put your final answer within \\boxed{}."

#: Where generation may stop early with the raw template: the answer is closed, or the model starts a new turn.
RAW_STOP = ("</answer>", "\nUser:")


def question_text(bench: str, item: Item) -> str:
    """The user's message for one item."""
    kind = BENCHMARKS[bench].kind
    if kind == "crux-o":
        return (
            "Given the following Python function and its input, predict the output.\n\n"
            f"```python\n{item.extra['code']}\n```\n\nInput: f({item.extra['input']})\n\n"
            "Give the output as a Python literal inside <answer></answer>, e.g. <answer>[1, 2]</answer>."
        )
    if kind == "crux-i":
        return (
            "Given the following Python function and an output, find an input such that f(input) returns it.\n\n"
            f"```python\n{item.extra['code']}\n```\n\nOutput: {item.extra['output']}\n\n"
            "Give the arguments of the call as Python literals inside <answer></answer>, e.g. "
            "<answer>[1, 2], 'a'</answer> for f([1, 2], 'a')."
        )
    if kind == "code":
        return (
            "Please provide a self-contained Python script that solves the following problem in a markdown code "
            f"block:\n```python\n{item.extra['prompt'].strip()}\n```"
        )
    return f"{item.question.strip()}\n{MATH_INSTRUCTION}"


def build_prompt(bench: str, item: Item, template: Template = "raw", tokenizer=None) -> str:
    """The full prompt text: the raw template, or the tokenizer's chat template (which `tokenizer` must have)."""
    question = question_text(bench, item)
    if template == "raw":
        return RAW_TEMPLATE.format(question=question)
    if tokenizer is None or not getattr(tokenizer, "chat_template", None):
        raise ValueError("template 'chat' needs a tokenizer with a chat template; use --template raw for this model")
    return tokenizer.apply_chat_template([{"role": "user", "content": question}], tokenize=False,
                                         add_generation_prompt=True)  # fmt: skip


def stop_strings(bench: str, template: Template) -> tuple[str, ...]:
    """Stop strings for generation: only the raw template's turn marker and answer close (never for math, whose
    answer is boxed and may come after an early `</answer>`)."""
    if template != "raw":
        return ()
    return ("\nUser:",) if BENCHMARKS[bench].kind == "math" else RAW_STOP
