"""The profiles of the reference's self-play runs: each resolves with its script's values, and a hub model that is not
here fails early with one message naming the model, its profile and the fix.

The expected values are copied by hand from the reference code (github LeapLabTHU/Absolute-Zero-Reasoner, branch
`paper`): `scripts/selfplay/<script>` with its line, and `absolute_zero_reasoner/configs/azr_ppo_trainer.yaml` (Y)
for what the scripts leave at the defaults. Nothing here needs the reference checkout or a network.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path
from typing import Any

import pytest

from azr_core.config import load_config
from azr_core.policy.config import ModelConfig
from azr_core.policy.model import ModelNotFoundError, resolve_model_path
from azr_core.profiles import PAPER_RUNS, PROFILES

# What differs between the scripts (line numbers are those of each script; the six share a layout, llama.sh has two
# more lines near the end).
SCRIPTS: dict[str, dict[str, Any]] = {
    "azr-coder-7b": {
        "script": "coder7b.sh",
        "model": "Qwen/Qwen2.5-Coder-7B",  # line 23: actor_rollout_ref.model.path
        "gpus": 4,  # lines 53-54: trainer.n_gpus_per_node=4, trainer.nnodes=1
        "experiment_name": "azr_coder7b",  # line 52
        "seed_batch_factor": 4,  # line 91
    },
    "azr-coder-3b": {
        "script": "coder3b.sh",
        "model": "Qwen/Qwen2.5-Coder-3B",  # line 23
        "gpus": 2,  # lines 53-54
        "experiment_name": "azr_coder3b",  # line 52
        "seed_batch_factor": 4,  # line 91
    },
    "azr-coder-14b": {
        "script": "coder14b.sh",
        "model": "Qwen/Qwen2.5-Coder-14B",  # line 23
        "gpus": 8,  # lines 53-54
        "experiment_name": "azr_coder14b",  # line 52
        "seed_batch_factor": 4,  # line 91
    },
    "azr-7b": {
        "script": "7b.sh",
        "model": "Qwen/Qwen2.5-7B",  # line 23
        "gpus": 4,  # lines 53-54
        "experiment_name": "azr_7b",  # line 52
        "seed_batch_factor": 4,  # line 91
    },
    "azr-14b": {
        "script": "14b.sh",
        "model": "Qwen/Qwen2.5-14B",  # line 23
        "gpus": 8,  # lines 53-54
        "experiment_name": "azr_14b",  # line 52
        "seed_batch_factor": 4,  # line 91
    },
    "azr-llama-8b": {
        "script": "llama.sh",
        "model": "meta-llama/Llama-3.1-8B",  # line 23
        "gpus": 4,  # lines 53-54
        "experiment_name": "azr_llama",  # line 52
        "seed_batch_factor": 1,  # line 91
        "reject_multiple_functions": False,  # line 107 (Y:266 True)
    },
}

# What the six scripts share (the same line in each).
SHARED = {
    "train_batch_size": 64,  # line 18: data.train_batch_size
    "max_prompt_length": 6144,  # line 20: data.max_prompt_length
    "max_response_length": 8096,  # line 22: data.max_response_length
    "lr": 1e-6,  # line 24: actor_rollout_ref.actor.optim.lr
    "ppo_micro_batch_size_per_gpu": 16,  # line 27
    "kl_loss_coef": 0.0,  # lines 28-29: use_kl_loss=False, kl_loss_coef=0.0
    "enable_gradient_checkpointing": True,  # line 32
    "rollout_name": "vllm",  # line 40
    "gpu_memory_utilization": 0.4,  # line 42
    "n": 1,  # line 45: actor_rollout_ref.rollout.n
    "temperature": 1.0,  # line 46
    "kl_coef": 0.0,  # line 48: algorithm.kl_ctrl.kl_coef
    "project_name": "azr",  # line 51
    "save_freq": 10,  # line 55
    "test_freq": 10,  # line 58
    "ast_check": True,  # line 72
    "n_samples": 8,  # line 73: azr.reward.n_samples
    "problem_types": 3,  # line 74: code_i, code_o, code_f
}

# Defaults of the reference's config (Y) that the scripts do not set, where a field here matches.
YAML = {
    "top_p": 1.0,  # Y:70 actor_rollout_ref.rollout.top_p
    "grad_clip": 1.0,  # Y:31 actor.grad_clip
    "clip_ratio": 0.2,  # Y:32 actor.clip_ratio
    "entropy_coeff": 0.001,  # Y:33 actor.entropy_coeff
    "warmup_steps": 0,  # Y:42 optim.lr_warmup_steps_ratio 0.
    "warmup_style": "constant",  # Y:44
    "io_n": 6,  # Y:213 azr.data_selection_strategy.io_n
    "num_inputs": 10,  # Y:236 azr.data_selection_strategy.num_inputs (code_f)
    "f_replace_location_renames": True,  # Y:268 not_first: a single function not named f is renamed
}


def test_every_reference_script_has_a_profile():
    assert set(SCRIPTS) == set(PAPER_RUNS) and set(SCRIPTS) <= set(PROFILES)
    assert {name: run["script"] for name, run in PAPER_RUNS.items()} == {n: s["script"] for n, s in SCRIPTS.items()}


@pytest.mark.parametrize("profile", sorted(SCRIPTS))
def test_profile_resolves_with_its_scripts_values(profile: str):
    want = SCRIPTS[profile]
    cfg = load_config(profile=profile)
    assert cfg.profile == profile
    # The script's own values.
    assert cfg.model.name_or_path == want["model"]
    assert cfg.trainer.num_workers == want["gpus"]  # one rank per GPU, one node
    assert cfg.run.name == want["experiment_name"]
    assert cfg.run.run_dir == f"runs/{profile}"
    assert cfg.buffers.seed_quota == SHARED["train_batch_size"] * want["seed_batch_factor"]
    assert cfg.selfplay.reject_multiple_functions == want.get("reject_multiple_functions", True)
    # What the scripts share.
    assert cfg.selfplay.batch_per_group == SHARED["train_batch_size"]
    assert cfg.buffers.seed_round_size == SHARED["train_batch_size"]  # a seeding round: one batch of proposals
    assert cfg.selfplay.max_prompt_tokens == SHARED["max_prompt_length"]
    assert cfg.rollout.max_new_tokens == SHARED["max_response_length"]
    assert cfg.rollout.max_model_len == SHARED["max_prompt_length"] + SHARED["max_response_length"]
    assert cfg.trainer.lr == SHARED["lr"]
    assert cfg.trainer.micro_batch_size == SHARED["ppo_micro_batch_size_per_gpu"]
    # ppo_mini_batch_size=128 (line 26) is overridden by the reference's main to the whole batch: one step.
    assert cfg.trainer.mini_batch_size is None
    assert cfg.trainer.kl_coef == SHARED["kl_coef"] == SHARED["kl_loss_coef"]
    assert cfg.trainer.gradient_checkpointing is SHARED["enable_gradient_checkpointing"]
    assert cfg.rollout.backend == SHARED["rollout_name"]
    assert cfg.rollout.gpu_memory_utilization == SHARED["gpu_memory_utilization"]
    assert cfg.rollout.n == SHARED["n"]
    assert cfg.rollout.temperature == SHARED["temperature"]
    assert cfg.tracking.experiment == SHARED["project_name"]
    assert cfg.tracking.register_every == SHARED["save_freq"] == SHARED["test_freq"]
    assert cfg.evaluation.on_register is True
    assert cfg.executor.static_checks is SHARED["ast_check"]
    assert cfg.selfplay.learnability_rollouts == SHARED["n_samples"]
    assert cfg.selfplay.prompt_template == "raw"  # pretrained_tokenizer=True (line 33): the plain-text template
    assert SHARED["problem_types"] == 3  # the three task types are always on here
    # The reference config's defaults the scripts leave alone.
    assert cfg.rollout.top_p == YAML["top_p"]
    assert cfg.trainer.grad_clip == YAML["grad_clip"]
    assert cfg.trainer.clip_ratio == YAML["clip_ratio"]
    assert cfg.trainer.entropy_coef == YAML["entropy_coeff"]
    assert cfg.trainer.warmup_steps == YAML["warmup_steps"]
    assert cfg.trainer.lr_schedule == YAML["warmup_style"]
    assert cfg.selfplay.references_k == YAML["io_n"]
    assert cfg.selfplay.induction_inputs == YAML["num_inputs"]
    assert cfg.selfplay.rename_entry_function is YAML["f_replace_location_renames"]


def test_coder_7b_is_default_with_the_model_and_the_hardware():
    """The paper's headline run: `default`'s algorithm, with the Qwen model and the script's hardware settings."""
    default = load_config(profile="default").model_dump(mode="json")
    coder = load_config(profile="azr-coder-7b").model_dump(mode="json")
    differ = {
        f"{section}.{key}"
        for section, fields in coder.items()
        if isinstance(fields, dict)
        for key, value in fields.items()
        if default[section][key] != value
    }
    assert differ == {
        "model.name_or_path",
        "run.run_dir",
        "run.name",
        "rollout.backend",
        "rollout.gpu_memory_utilization",
        "rollout.max_model_len",
        "trainer.num_workers",
        "trainer.micro_batch_size",
        "trainer.gradient_checkpointing",
    }


def test_paper_profiles_resolved_config_round_trips(tmp_path: Path):
    for profile in SCRIPTS:
        cfg = load_config(profile=profile)
        path = tmp_path / f"{profile}.yaml"
        path.write_text(cfg.to_yaml())
        assert load_config(path) == cfg


# ---- a hub model that is not here ------------------------------------------------------------------------------------


@pytest.fixture
def empty_hub_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty Hugging Face cache, and no hub: nothing is ever fetched."""
    from huggingface_hub import constants

    cache = tmp_path / "hub"
    cache.mkdir()
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))

    def no_hub(*_args: Any, **_kwargs: Any) -> None:
        raise ConnectionError("Name or service not known")

    monkeypatch.setattr("huggingface_hub.model_info", no_hub)
    return cache


def _assert_names_the_fix(message: str, model: str) -> None:
    assert f"hf download {model} --local-dir <folder>" in message
    assert "model.name_or_path=<folder>" in message
    assert "HF_HOME" in message


@pytest.mark.parametrize("profile", sorted(SCRIPTS))
def test_missing_hub_model_fails_early_naming_profile_and_fix(profile: str, empty_hub_cache: Path):
    cfg = load_config(profile=profile)
    with pytest.raises(ModelNotFoundError) as err:
        resolve_model_path(cfg.model, progress=None)
    message = str(err.value)
    assert f"Model '{SCRIPTS[profile]['model']}'" in message and f"profile {profile}" in message
    assert "no copy in the Hugging Face cache" in message and "ConnectionError" in message
    _assert_names_the_fix(message, SCRIPTS[profile]["model"])


def test_missing_hub_model_offline_mode_does_not_try_the_hub(empty_hub_cache: Path, monkeypatch: pytest.MonkeyPatch):
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr("huggingface_hub.model_info", lambda *a, **k: pytest.fail("the hub was asked"))
    with pytest.raises(ModelNotFoundError, match="HF_HUB_OFFLINE is set") as err:
        resolve_model_path(ModelConfig(name_or_path="someone/other-model"), progress=None)
    assert "of profile" not in str(err.value)  # no profile uses it: none is named
    _assert_names_the_fix(str(err.value), "someone/other-model")


def _cache_snapshot(cache: Path, repo: str, files: dict[str, bytes]) -> Path:
    """A Hugging Face cache entry as `hf download` leaves it: refs/main naming a snapshot folder."""
    root = cache / f"models--{repo.replace('/', '--')}"
    snapshot = root / "snapshots" / ("0" * 40)
    snapshot.mkdir(parents=True)
    (root / "refs").mkdir()
    (root / "refs" / "main").write_text("0" * 40)
    for name, data in files.items():
        (snapshot / name).write_bytes(data)
    return snapshot


def _safetensors() -> bytes:
    header = json.dumps({"w": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}}).encode()
    return struct.pack("<Q", len(header)) + header + b"\0" * 4


def test_cached_hub_model_loads_from_its_snapshot_without_the_hub(
    empty_hub_cache: Path, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.setattr("huggingface_hub.model_info", lambda *a, **k: pytest.fail("the hub was asked"))
    snapshot = _cache_snapshot(
        empty_hub_cache,
        "Qwen/Qwen2.5-Coder-7B",
        {"config.json": b'{"model_type": "qwen2"}', "model.safetensors": _safetensors()},
    )
    cfg = load_config(profile="azr-coder-7b")
    assert resolve_model_path(cfg.model, progress=None) == str(snapshot)


def test_incomplete_cached_snapshot_is_not_used(empty_hub_cache: Path):
    index = {"weight_map": {"a": "model-00001-of-00002.safetensors", "b": "model-00002-of-00002.safetensors"}}
    _cache_snapshot(
        empty_hub_cache,
        "Qwen/Qwen2.5-Coder-3B",
        {
            "config.json": b'{"model_type": "qwen2"}',
            "model.safetensors.index.json": json.dumps(index).encode(),
            "model-00001-of-00002.safetensors": _safetensors(),
        },
    )
    with pytest.raises(ModelNotFoundError, match="an incomplete copy .*1 weight shards missing") as err:
        resolve_model_path(load_config(profile="azr-coder-3b").model, progress=None)
    _assert_names_the_fix(str(err.value), "Qwen/Qwen2.5-Coder-3B")


def test_reachable_hub_returns_the_id(empty_hub_cache: Path, monkeypatch: pytest.MonkeyPatch):
    """With access to the hub the id is passed on and transformers downloads it, as before."""
    monkeypatch.setattr("huggingface_hub.model_info", lambda *a, **k: object())
    assert resolve_model_path(ModelConfig(name_or_path="Qwen/Qwen2.5-Coder-7B"), progress=None) == (
        "Qwen/Qwen2.5-Coder-7B"
    )


def test_every_profile_names_its_model():
    """docs/fidelity.md's table names each profile's model: every profile resolves to a model."""
    models = {name: load_config(profile=name).model.name_or_path for name in PROFILES}
    assert models["default"] == models["cpu-tiny"] == "smollm2-135m-instruct"
    assert all(models[name] == run["model"] for name, run in SCRIPTS.items())
