"""Prompt builders for the six (role x task type) cases, rendered with a chat template."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from azr_core.algo.prompts import SYSTEM_PROMPT, THINK_PREFILL, proposer_messages, render, solver_messages
from azr_core.algo.tasks import Task, TaskType, seed_tasks


class FakeTokenizer:
    """A chat template in the ChatML style SmolLM2 uses, without any model files."""

    def __init__(self) -> None:
        self.calls: list[dict] = []

    def apply_chat_template(self, conversation, tokenize=True, add_generation_prompt=False, **kwargs):
        self.calls.append({"tokenize": tokenize, "add_generation_prompt": add_generation_prompt})
        text = "".join(f"<|im_start|>{m['role']}\n{m['content']}<|im_end|>\n" for m in conversation)
        return text + ("<|im_start|>assistant\n" if add_generation_prompt else "")


REFS = [
    Task(TaskType.DEDUCTION, f"def f(x):\n    return x + {i}", f"{i}", f"{2 * i}", iteration=i) for i in range(1, 4)
]
IND = Task(
    TaskType.INDUCTION,
    "def f(a, b):\n    return a * b",
    shown_inputs=("2, 3", "4, 5"),
    shown_outputs=("6", "20"),
    held_inputs=("7, 8",),
    held_outputs=("56",),
    message="multiply the two numbers",
)


def _user(messages: list[dict[str, str]]) -> str:
    assert [m["role"] for m in messages] == ["system", "user"]
    assert messages[0]["content"] == SYSTEM_PROMPT
    return messages[1]["content"]


@pytest.mark.parametrize("task_type", [TaskType.DEDUCTION, TaskType.ABDUCTION])
def test_program_proposer_shows_requirements_format_and_every_reference(task_type):
    text = _user(proposer_messages(task_type, REFS))
    for ref in REFS:
        assert f"```python\n{ref.program}\n```" in text
        assert f"```input\n{ref.input}\n```" in text and f"```output\n{ref.output}\n```" in text
    for i in range(len(REFS)):
        assert f"<snippet_{i}>" in text and f"</snippet_{i}>" in text
    assert "### Code requirements:" in text and "### Input requirements:" in text and "### Format:" in text
    assert "### How it is judged:" in text and "### Reference programs:" in text
    assert "<think>" not in text and "</answer>" not in text  # no complete worked answer to copy by default
    assert "`f`" in text
    assert "random" in text  # banned words are named
    worked = _user(proposer_messages(task_type, REFS, worked_example=True))
    assert "<think>" in worked and "</answer>" in worked and "sorted(info)" in worked


def test_deduction_and_abduction_proposers_ask_for_different_things():
    ded = _user(proposer_messages("deduction", REFS[:1]))
    abd = _user(proposer_messages("abduction", REFS[:1]))
    assert "work out the output" in ded and "find an input" in abd
    assert ded != abd


def test_program_proposer_with_an_empty_buffer_still_builds():
    text = _user(proposer_messages("deduction", []))
    assert "(none yet" in text and "<snippet_0>" not in text


def test_induction_proposer_gets_one_program_and_n():
    text = _user(proposer_messages("induction", [IND], n_inputs=7))
    assert "Write 7 inputs" in text and "```message" in text
    assert f"```python\n{IND.program}\nf(<your input goes here>)\n```" in text  # the call line after the program
    with pytest.raises(ValueError, match="one reference program"):
        proposer_messages("induction", [])


def test_deduction_solver_sees_program_and_input_never_the_output():
    task = Task(TaskType.DEDUCTION, "def f(x):\n    return x * 7919", "3", "23757")
    text = _user(solver_messages(task))
    assert task.program in text and "```input\n3\n```" in text
    assert "23757" not in text
    assert "```output" in text  # told where to put the answer


def test_abduction_solver_sees_program_and_output_never_the_input():
    task = Task(TaskType.ABDUCTION, "def f(x):\n    return x * 7919", "31337", "248157703")
    text = _user(solver_messages(task))
    assert task.program in text and "```output\n248157703\n```" in text
    assert "31337" not in text


def test_induction_solver_sees_shown_pairs_and_message_never_program_or_held_out():
    text = _user(solver_messages(IND))
    assert "```input_0\n2, 3\n```" in text and "```output_1\n20\n```" in text  # numbered pairs
    assert f"```message\n{IND.message}\n```" in text  # the fenced message
    assert "# Code requirements:" in text and "named `f`" in text
    assert "a * b" not in text and "7, 8" not in text and "56" not in text


def test_every_seed_task_has_a_solver_prompt():
    for task in seed_tasks():
        assert "'Hello World'" in _user(solver_messages(task))


def test_render_uses_the_chat_template_and_opens_think():
    tok = FakeTokenizer()
    text = render(tok, solver_messages(REFS[0]))
    assert tok.calls == [{"tokenize": False, "add_generation_prompt": True}]
    assert text.startswith("<|im_start|>system\n" + SYSTEM_PROMPT)
    assert text.endswith("<|im_start|>assistant\n" + THINK_PREFILL)
    assert render(tok, solver_messages(REFS[0]), prefill="").endswith("assistant\n")


def test_render_refuses_token_ids():
    class IdsTokenizer:
        def apply_chat_template(self, conversation, **kwargs):
            return [1, 2, 3]

    with pytest.raises(TypeError, match="expected str"):
        render(IdsTokenizer(), solver_messages(REFS[0]))


def _default_model_folder_or_skip():
    # Cheap look first: importing azr_core.policy.model pulls in torch (seconds), not worth it just to skip.
    root = Path(os.environ["AZR_CACHE"]) if os.environ.get("AZR_CACHE") else Path.home() / ".cache" / "azr"
    if not (root / "models").is_dir():
        pytest.skip(f"default model not prepared (no {root / 'models'})")
    from azr_core.policy.model import default_model_dir, is_prepared

    folder = default_model_dir()
    if not is_prepared(folder):
        pytest.skip(f"default model not prepared in {folder} (azr_core.policy.model.prepare_default_model)")
    return folder


def test_real_smollm2_chat_template():
    """The one test that uses the real tokenizer: skipped unless the default model has been prepared."""
    folder = _default_model_folder_or_skip()
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(folder))
    text = render(tok, proposer_messages("deduction", REFS[:2]))
    assert SYSTEM_PROMPT in text and REFS[1].program in text
    assert text.endswith(THINK_PREFILL)
    assert len(tok(text)["input_ids"]) < 2048  # fits the model's context with room to answer
