"""The config: paper defaults, the cpu-tiny profile, YAML + overrides, errors that name the key, the saved copy."""

from __future__ import annotations

import doctest
from pathlib import Path

import pytest
from pydantic import BaseModel

import azr_core.common.yaml_overrides as yaml_overrides
from azr_core.common.yaml_overrides import parse_override
from azr_core.config import (
    PROFILES,
    AZRConfig,
    ConfigError,
    config_reference,
    load_config,
)
from azr_core.store.run import save_session_config


def test_default_profile_is_the_papers_settings():
    cfg = load_config()
    assert cfg.profile == "default"
    assert cfg.selfplay.references_k == 6
    assert cfg.selfplay.induction_inputs == 10
    assert cfg.selfplay.induction_shown_fraction == 0.5
    assert cfg.selfplay.learnability_rollouts == 8
    assert cfg.selfplay.batch_per_group == 64
    assert cfg.rollout.temperature == 1.0
    assert cfg.trainer.lr == 1e-6
    assert cfg.trainer.grad_clip == 1.0
    assert cfg.trainer.lr_schedule == "constant"
    assert cfg.trainer.total_steps == 500 and cfg.run.iterations == 500
    assert (cfg.rewards.correct, cfg.rewards.wrong_answer, cfg.rewards.format_error) == (1.0, -0.5, -1.0)
    assert cfg.rewards.unlearnable == 0.0 and cfg.rewards.invalid_proposal == -1.0
    assert cfg.selfplay.response_prefill == "think" and not cfg.selfplay.lenient_parsing  # 'Assistant: <think>'
    assert cfg.selfplay.prompt_template == "raw" and not cfg.selfplay.compact_prompts  # the paper's prompts
    assert cfg.selfplay.max_prompt_tokens == 6144 and cfg.rollout.max_new_tokens == 8096
    assert cfg.trainer.entropy_coef == 0.001 and cfg.trainer.kl_coef == 0.0 and cfg.trainer.clip_ratio == 0.2
    assert cfg.trainer.mini_batch_size is None and cfg.trainer.recompute_old_logprobs  # one step on the batch
    assert cfg.trainer.weight_decay == 0.01
    assert cfg.buffers.seed_quota == 256  # 64 x seed_batch_factor 4
    assert cfg.rollout.n == 1 and cfg.rollout.top_p == 1.0


def test_cpu_tiny_profile_is_small_and_bounded():
    cfg = load_config(profile="cpu-tiny")
    assert cfg.profile == "cpu-tiny"
    assert cfg.selfplay.batch_per_group <= 6
    assert cfg.selfplay.learnability_rollouts <= 4
    assert cfg.rollout.max_new_tokens <= 192
    assert cfg.rollout.temperature == 1.0  # the reference's: measured on this profile (docs/fidelity.md)
    assert cfg.buffers.seed_max_rounds <= 3  # seeding is bounded: the small model's proposals are mostly invalid
    assert cfg.selfplay.lenient_parsing  # its rare valid programs come with a broken format
    assert cfg.selfplay.response_prefill == "skeleton" and cfg.selfplay.compact_prompts
    assert cfg.trainer.entropy_coef == 0.0  # so zero-advantage sequences can be left out exactly
    # a group's sequences in one update pass: the prompt prefix they share runs once, not once per micro-batch
    assert cfg.trainer.micro_batch_size >= cfg.selfplay.batch_per_group
    # the rest stays at the paper's values
    assert cfg.trainer.grad_clip == 1.0 and cfg.rewards.unlearnable == 0.0


def test_every_profile_validates():
    for name in PROFILES:
        assert load_config(profile=name).profile == name


def _models(model: type[BaseModel]):
    yield model
    for info in model.model_fields.values():
        ann = info.annotation
        if isinstance(ann, type) and issubclass(ann, BaseModel):
            yield from _models(ann)


def test_every_field_is_documented_and_every_section_forbids_extra_keys():
    for model in _models(AZRConfig):
        assert model.model_config.get("extra") == "forbid", model.__name__
    rows = config_reference()
    assert len(rows) > 40
    undocumented = [key for key, _default, desc in rows if not desc.strip()]
    assert undocumented == []
    keys = {key for key, _, _ in rows}
    assert {
        "selfplay.references_k",
        "executor.timeout_s",
        "model.name_or_path",
        "trainer.lr",
        "run.run_dir",
        "tracking.experiment",
    } <= keys


def test_file_then_overrides_win_in_order(tmp_path: Path):
    path = tmp_path / "c.yaml"
    path.write_text("selfplay:\n  references_k: 3\n  batch_per_group: 8\ntrainer:\n  lr: 1e-5\n")
    cfg = load_config(path, ["selfplay.references_k=2", "rollout.stop=['</answer>', '<|im_end|>']"])
    assert cfg.selfplay.references_k == 2  # override beats file
    assert cfg.selfplay.batch_per_group == 8  # file beats default
    assert cfg.trainer.lr == 1e-5  # `1e-5` is a float, not the string PyYAML would make of it
    assert cfg.rollout.stop == ["</answer>", "<|im_end|>"]
    assert cfg.selfplay.learnability_rollouts == 8  # untouched default


def test_profile_chosen_in_file_and_overridden(tmp_path: Path):
    path = tmp_path / "c.yaml"
    path.write_text("profile: cpu-tiny\nrun:\n  seed: 7\n")
    cfg = load_config(path)
    assert cfg.profile == "cpu-tiny" and cfg.selfplay.batch_per_group == 6 and cfg.run.seed == 7
    cfg = load_config(path, ["profile=default"])
    assert cfg.profile == "default" and cfg.selfplay.batch_per_group == 64 and cfg.run.seed == 7


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        (["selfplay.refrences_k=3"], "unknown key 'selfplay.refrences_k' (did you mean 'selfplay.references_k'?)"),
        (["nosuchsection.x=1"], "unknown key 'nosuchsection'"),
        (["selfplay.references_k=abc"], "selfplay.references_k: Input should be a valid integer"),
        (["selfplay.references_k=true"], "selfplay.references_k: Input should be a valid integer"),
        (["selfplay.references_k=-1"], "selfplay.references_k: Input should be greater than or equal to 0"),
        (["rewards.unlearnable=zero"], "rewards.unlearnable: Input should be a valid number"),
        (["trainer.lr=fast"], "trainer.lr:"),
        (["run.seed.x=1"], "run.seed: Input should be a valid integer"),
        (["run.seed=1", "run.seed.x=1"], "run.seed is a value, not a section"),
        (["profile=huge"], "unknown profile 'huge'"),
        (["novalue"], "must look like key.sub=value"),
    ],
)
def test_errors_name_the_key(overrides: list[str], expected: str):
    with pytest.raises(ConfigError) as info:
        load_config(None, overrides)
    assert expected in str(info.value)


def test_unknown_key_in_file_is_named(tmp_path: Path):
    path = tmp_path / "c.yaml"
    path.write_text("buffers:\n  seed_quota: 3\n  cap: 100\n")
    with pytest.raises(ConfigError, match="unknown key 'buffers.cap'"):
        load_config(path)
    path.write_text("- just\n- a list\n")
    with pytest.raises(ConfigError, match="must hold a mapping"):
        load_config(path)
    with pytest.raises(ConfigError, match="cannot read config file"):
        load_config(tmp_path / "missing.yaml")


def test_override_values_are_yaml_scalars():
    assert parse_override("a.b=1e-6") == (["a", "b"], 1e-6)
    assert parse_override("a.b=null") == (["a", "b"], None)
    assert parse_override("a=x=y") == (["a"], "x=y")
    assert parse_override("a.b=[1, 2]") == (["a", "b"], [1, 2])


def test_resolved_config_is_saved_and_round_trips(tmp_path: Path):
    cfg = load_config(None, ["selfplay.references_k=5", "run.name=exp"], profile="cpu-tiny")
    (tmp_path / "run").mkdir()
    session = save_session_config(cfg, tmp_path / "run")
    path = tmp_path / "run" / "config.yaml"
    assert sorted(p.name for p in path.parent.iterdir()) == ["config.yaml", "configs"]  # no temp file left behind
    text = path.read_text()
    assert "references_k: 5" in text and "profile: cpu-tiny" in text and "timeout_s:" in text
    assert load_config(path) == cfg and session.read_text() == text
    # A later session is recorded beside it; config.yaml stays what the run began as.
    save_session_config(load_config(path, ["run.iterations=99"]), tmp_path / "run")
    assert load_config(path) == cfg and len(list((tmp_path / "run" / "configs").iterdir())) == 2


def test_docstring_examples_run():
    result = doctest.testmod(yaml_overrides)
    assert result.attempted > 0 and result.failed == 0
