"""Bad input: each gets one clear error naming the problem and the fix, and nothing committed is touched.

Config (unknown key, wrong type under one strict rule, impossible values, malformed YAML), hostile JSON lines for
`azr validate` / `azr grade` (huge line, invalid UTF-8, deep nesting), a run folder with a corrupt Parquet file or of
another schema version (`azr sql`), a missing or damaged model folder, a damaged checkpoint.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from pydantic import BaseModel

from azr_core.common.config_base import Section
from azr_core.config import AZRConfig, ConfigError, load_config
from azr_core.executor.config import ExecutorConfig
from azr_core.policy.config import ModelConfig, TrainerConfig
from azr_core.policy.integrity import CorruptFolderError, check_checkpoint
from azr_core.policy.model import ModelNotFoundError, resolve_model_path
from azr_core.policy.tiny import make_tiny_model_dir

REPO = Path(__file__).resolve().parents[2]


def _tree_digest(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file() and p.name != "WRITER.lock"
    }


# ---- config: one strict rule everywhere ----------------------------------------------------------------------------


def _sections(model: type[BaseModel]):
    yield model
    for info in model.model_fields.values():
        ann = info.annotation
        if isinstance(ann, type) and issubclass(ann, BaseModel):
            yield from _sections(ann)


def test_every_section_follows_the_one_strict_rule():
    for model in _sections(AZRConfig):
        assert issubclass(model, Section), model.__name__
        assert model.model_config["strict"] and model.model_config["extra"] == "forbid", model.__name__
        assert model.model_config["allow_inf_nan"] is False, model.__name__


@pytest.mark.parametrize(
    ("override", "expected"),
    [
        # the example: both are integers, both refuse YAML `true` the same way
        ("executor.workers=true", "executor.workers: Input should be a valid integer (got True): write a whole"),
        ("selfplay.references_k=true", "selfplay.references_k: Input should be a valid integer (got True): write"),
        ("trainer.micro_batch_size=true", "trainer.micro_batch_size: Input should be a valid integer"),
        ("rollout.max_new_tokens='64'", "rollout.max_new_tokens: Input should be a valid integer (got '64')"),
        ("tracking.register_every=1.5", "tracking.register_every: Input should be a valid integer"),
        ("trainer.betas=[true, 0.9]", "trainer.betas.0: Input should be a valid number"),
        ("trainer.hostfile=3", "trainer.hostfile: Input is not a valid path"),
        ("executor.wrkers=2", "unknown key 'executor.wrkers' (did you mean 'executor.workers'?)"),
        ("tracking.nonsense=2", "unknown key 'tracking.nonsense'"),
        # impossible values
        ("executor.memory_mb=-5", "executor.memory_mb: Input should be greater than 16 (got -5): pick a value"),
        ("executor.timeout_s=0", "executor.timeout_s: Input should be greater than 0"),
        ("trainer.lr=.inf", "trainer.lr: Input should be a finite number (got inf): write a finite number"),
        ("executor.timeout_s=.nan", "executor.timeout_s: Input should be a finite number"),
        ("rollout.top_p=1.5", "rollout.top_p: Input should be less than or equal to 1"),
        ("trainer.zero_stage=4", "trainer.zero_stage: Input should be less than or equal to 3"),
        ("rollout.backend=tpu", "rollout.backend: Input should be 'auto', 'hf', 'hf-batching' or 'vllm'"),
    ],
)
def test_bad_config_values_get_one_error_with_the_fix(override: str, expected: str):
    with pytest.raises(ConfigError) as info:
        load_config(None, [override])
    text = str(info.value)
    assert expected in text
    assert text.count("\n") == 1  # one problem, one line under the heading


def test_lenient_fields_still_read_their_text_forms(tmp_path: Path):
    cfg = load_config(None, ["trainer.betas=[0.8, 1]", "trainer.hostfile=/etc/hosts", "model.cache_dir=/tmp/x"])
    assert cfg.trainer.betas == (0.8, 1.0) and cfg.trainer.hostfile == Path("/etc/hosts")
    # The dumped config (JSON) validates back: this is how it reaches the Prefect tasks and the workers.
    assert AZRConfig.model_validate(cfg.model_dump(mode="json")) == cfg
    assert TrainerConfig.model_validate(cfg.trainer.model_dump(mode="json")) == cfg.trainer


def test_a_section_validated_alone_explains_its_error():
    with pytest.raises(ConfigError, match=r"workers: Input should be a valid integer \(got True\)"):
        ExecutorConfig.model_validate({"workers": True})
    with pytest.raises(ValueError, match="valid integer"):  # keyword construction: pydantic's own error
        ExecutorConfig(workers=True)


def test_malformed_yaml_file_is_named(tmp_path: Path):
    path = tmp_path / "c.yaml"
    path.write_text("selfplay:\n  references_k: [1, 2\n  batch_per_group: 3\n")
    with pytest.raises(ConfigError, match=r"config file .*c\.yaml is not valid YAML"):
        load_config(path)
    path.write_text("executor:\n  workers: yes\n")  # YAML 1.1 reads `yes` as true: refused like true
    with pytest.raises(ConfigError, match="executor.workers: Input should be a valid integer"):
        load_config(path)


# ---- hostile JSON lines --------------------------------------------------------------------------------------------


def _azr(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run([sys.executable, "-m", "azr_core.cli", *args], capture_output=True, text=True,
                          timeout=120, env=env, cwd=REPO)  # fmt: skip


GOOD = b'{"id": 1, "task_type": "deduction", "program": "def f(x):\\n    return x", "input": "1", "answer": "1"}\n'


@pytest.mark.parametrize("command", ["validate", "grade"])
@pytest.mark.parametrize(
    ("bad_line", "expected"),
    [
        (b'{"id": 2, "program": "' + b"a" * (9 << 20) + b'", "input": "1"}\n', "line 2: longer than 8 MiB"),
        (
            b'{"id": 2, "program": "\xff\xfe", "input": "1", "answer": "1", "task_type": "deduction"}\n',
            "line 2: not UTF-8",
        ),  # fmt: skip
        (b'{"id": 2, "x": ' + b"[" * 100_000 + b"]" * 100_000 + b"}\n", "line 2: JSON nested deeper than 64"),
    ],
    ids=["huge-line", "invalid-utf8", "deep-nesting"],
)
def test_hostile_jsonl_is_refused_before_anything_runs(tmp_path: Path, command: str, bad_line: bytes, expected: str):
    path = tmp_path / "tasks.jsonl"
    path.write_bytes(GOOD + bad_line)
    res = _azr(command, str(path), "--workers", "1")
    assert res.returncode == 2, res.stderr
    assert expected in " ".join(res.stderr.split())
    assert "Traceback" not in res.stderr
    assert res.stdout == ""  # refused before the first program ran


# ---- run folders ---------------------------------------------------------------------------------------------------


@pytest.fixture
def run_dir(tmp_path: Path) -> Path:
    from azr_core.config import StoreConfig
    from azr_core.store import open_run

    run_dir = tmp_path / "run"
    with open_run(run_dir) as store:
        store.config = StoreConfig(fsync=False)
        for it in (1, 2):
            w = store.begin()
            w.write("rollouts", [{"rollout_id": f"{it}-{i}", "role": "solve", "task_type": "deduction",
                                  "correct": True, "reward": 1.0} for i in range(3)])  # fmt: skip
            w.commit(f"ckpt{it}")
    return run_dir


def test_corrupt_parquet_in_a_run_folder_is_named_with_the_fix(run_dir: Path):
    bad = next((run_dir / "tables" / "rollouts" / "iteration=2").glob("*.parquet"))
    bad.write_bytes(b"not parquet at all" * 8)
    before = _tree_digest(run_dir)
    res = _azr("sql", "--run", str(run_dir), "SELECT count(*) FROM rollouts")
    assert res.returncode == 1
    assert str(bad) in res.stderr and "hint:" in res.stderr and "Restore it from a backup" in res.stderr
    ok = _azr("sql", "--run", str(run_dir), "--format", "json", "SELECT count(*) AS n FROM rollouts WHERE iteration=1")
    assert ok.returncode == 0 and json.loads(ok.stdout) == {"n": 3}
    assert _tree_digest(run_dir) == before  # nothing in the folder touched


def test_run_folder_of_another_schema_version_is_refused(run_dir: Path):
    from azr_core.store import open_run

    (run_dir / "SCHEMA").write_text(json.dumps({"schema_version": 99}))
    before = _tree_digest(run_dir)
    res = _azr("sql", "--run", str(run_dir), "SELECT count(*) FROM rollouts")
    assert res.returncode == 2
    assert "schema version 99" in res.stderr and "start a new run folder" in res.stderr
    with pytest.raises(Exception, match="schema version 99"):
        open_run(run_dir)  # the writer refuses too, before recovering anything
    assert _tree_digest(run_dir) == before


# ---- model folders and checkpoints ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory) -> Path:
    return make_tiny_model_dir(tmp_path_factory.mktemp("tiny") / "model")


def test_missing_or_damaged_model_folder(tmp_path: Path, tiny_dir: Path):
    with pytest.raises(ModelNotFoundError, match="Model folder not found"):
        resolve_model_path(ModelConfig(name_or_path=str(tmp_path / "gone")), progress=None)
    broken = tmp_path / "broken"
    broken.mkdir()
    for f in tiny_dir.iterdir():
        (broken / f.name).write_bytes(f.read_bytes())
    assert resolve_model_path(ModelConfig(name_or_path=str(broken)), progress=None) == str(broken)
    weights = next(broken.glob("*.safetensors"))
    weights.write_bytes(weights.read_bytes()[:-100])
    with pytest.raises(CorruptFolderError, match=r"model\.safetensors is truncated .*: copy the model folder again"):
        resolve_model_path(ModelConfig(name_or_path=str(broken)), progress=None)
    (broken / "config.json").write_text("{ half a json")
    with pytest.raises(CorruptFolderError, match=r"config\.json is unreadable or not JSON"):
        resolve_model_path(ModelConfig(name_or_path=str(broken)), progress=None)


@pytest.mark.slow
def test_damaged_checkpoint_is_refused_by_name_and_the_trainer_is_untouched(tmp_path: Path, tiny_dir: Path):
    import torch

    from azr_core.policy.trainer.engine import PolicyTrainer

    cfg = TrainerConfig(lr=1e-3, micro_batch_size=2, zero_stage=0)
    trainer = PolicyTrainer(ModelConfig(name_or_path=str(tiny_dir)), cfg)
    good = trainer.save_checkpoint(tmp_path / "ckpt")
    assert check_checkpoint(good)["step"] == 0
    before = {k: v.detach().clone() for k, v in trainer.module.state_dict().items()}

    def damaged(name: str, damage) -> Path:
        copy = tmp_path / name
        subprocess.run(["cp", "-a", str(good), str(copy)], check=True)
        damage(copy)
        return copy

    def truncate_state(p: Path) -> None:
        state = max((p / "deepspeed").rglob("*.pt"), key=lambda f: f.stat().st_size)
        state.write_bytes(state.read_bytes()[: state.stat().st_size // 2])

    cases = {
        "state": (truncate_state, "is damaged"),
        "meta": (lambda p: (p / "trainer.json").write_text("{"), "trainer.json is unreadable or not JSON"),
        "weights": (lambda p: next((p / "hf").glob("*.safetensors")).write_bytes(b"\0" * 4), "too short"),
    }
    for name, (damage, expected) in cases.items():
        path = damaged(name, damage)
        with pytest.raises(CorruptFolderError) as info:
            trainer.load_checkpoint(path)
        assert expected in str(info.value) and "restore this checkpoint folder from a backup" in str(info.value)
    after = trainer.module.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    trainer.load_checkpoint(good)  # the intact one still loads
