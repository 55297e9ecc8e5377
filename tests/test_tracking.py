"""MLflow tracking against a real SQLite store: resume across Tracker objects, params, metrics, model versions."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

from azr_core.policy.tiny import make_tiny_model_dir
from azr_core.tracking.registry import get_version_by_alias, load_model_folder, model_download_uri, set_alias
from azr_core.tracking.runs import (
    CHANGED_PARAM_PREFIX,
    RUN_FILE,
    TAG_FLOW_RUN,
    TAG_ITERATION,
    TAG_RUN_DIR,
    Tracker,
    TrackingConfig,
    flatten_params,
    git_commit,
)


@pytest.fixture(scope="module")
def uri(tmp_path_factory) -> str:
    """One SQLite store per module: creating its tables costs seconds."""
    return f"sqlite:///{tmp_path_factory.mktemp('mlflow') / 'mlflow.db'}"


def cfg(uri: str, **kw) -> TrackingConfig:
    return TrackingConfig(tracking_uri=uri, **kw)


def test_flatten_params_nests_with_dots_and_respects_the_length_limit():
    from mlflow.utils.validation import MAX_PARAM_VAL_LENGTH

    flat = flatten_params({"a": {"b": {"c": 1}, "d": [1, 2]}, "e": None, "f": "x" * 10_000, "g": True,
                           "uri": "postgresql://bob:s3cret@db:5432/mlflow"})  # fmt: skip
    assert flat["uri"] == "postgresql://bob:***@db:5432/mlflow"
    assert flat["a.b.c"] == "1" and flat["a.d"] == "[1,2]" and flat["e"] == "None" and flat["g"] == "True"
    assert len(flat["f"]) == MAX_PARAM_VAL_LENGTH and flat["f"].endswith("...")


def test_run_is_resumed_by_a_second_tracker(uri, tmp_path):
    run_dir = tmp_path / "run"
    first = Tracker(run_dir, cfg(uri), run_name="resume-test")
    changed = first.log_config({"trainer": {"lr": 1e-6, "betas": [0.9, 0.99]}, "run": {"iterations": 20}})
    assert changed == {}
    first.log_metrics({"solve/accuracy": 0.25, "reward mean": -0.5}, step=1)
    first.close()
    assert (run_dir / RUN_FILE).is_file()

    second = Tracker(run_dir, cfg(uri))  # e.g. the next flow run, in another process
    assert second.run_id == first.run_id
    client = MlflowClient(uri)
    assert client.get_run(second.run_id).info.status == "RUNNING"
    second.log_metrics({"solve/accuracy": 0.5}, step=2)
    # A resumed session with a longer budget: params are write-once, the new value lands in a tag.
    changed = second.log_config({"trainer": {"lr": 1e-6, "betas": [0.9, 0.99]}, "run": {"iterations": 40}})
    assert changed == {"run.iterations": ("20", "40")}
    second.close()

    run = client.get_run(first.run_id)
    assert run.info.status == "FINISHED" and run.info.run_name == "resume-test"
    assert run.data.params == {"trainer.lr": "1e-06", "trainer.betas": "[0.9,0.99]", "run.iterations": "20"}
    assert run.data.tags[CHANGED_PARAM_PREFIX + "run.iterations"] == "40"
    assert run.data.tags[TAG_RUN_DIR] == str(run_dir.resolve())
    history = client.get_metric_history(first.run_id, "solve/accuracy")
    assert [(m.step, m.value) for m in history] == [(1, 0.25), (2, 0.5)]
    assert run.data.metrics["reward mean"] == -0.5
    if git_commit()[0]:
        assert run.data.tags["mlflow.source.git.commit"] == git_commit()[0]


def test_run_is_found_by_its_key_when_the_id_was_never_recorded(uri, tmp_path):
    """A crash between create_run and writing the run id (or another URI of the same store) must not fork the run."""
    run_dir = tmp_path / "run"
    first = Tracker(run_dir, cfg(uri))
    data = json.loads((run_dir / RUN_FILE).read_text())
    data["runs"] = {}
    (run_dir / RUN_FILE).write_text(json.dumps(data))
    assert Tracker(run_dir, cfg(uri)).run_id == first.run_id


def test_separate_run_folders_get_separate_runs(uri, tmp_path):
    assert Tracker(tmp_path / "a", cfg(uri)).run_id != Tracker(tmp_path / "b", cfg(uri)).run_id


def test_metrics_must_be_numbers(uri, tmp_path):
    tracker = Tracker(tmp_path / "run", cfg(uri))
    with pytest.raises(TypeError, match="'bad'"):
        tracker.log_metrics({"bad": "0.5"}, step=0)
    tracker.log_metrics({"t": torch.tensor(1.5), "weird#name": 2}, step=0)  # tensors convert; bad chars replaced
    assert MlflowClient(uri).get_run(tracker.run_id).data.metrics == {"t": 1.5, "weird_name": 2.0}


def test_log_batch_splits_past_mlflow_limits(uri, tmp_path):
    tracker = Tracker(tmp_path / "run", cfg(uri))
    tracker.log_config({f"k{i}": i for i in range(250)})  # 100 params per batch at most
    tracker.log_metrics({f"m{i}": float(i) for i in range(1500)}, step=3)  # 1000 metrics per batch at most
    data = MlflowClient(uri).get_run(tracker.run_id).data
    assert len(data.params) == 250 and len(data.metrics) == 1500


def test_disabled_tracker_does_nothing(tmp_path):
    tracker = Tracker(tmp_path / "run", TrackingConfig(enabled=False, tracking_uri="sqlite:///nowhere/x.db"))
    tracker.log_config({"a": 1})
    tracker.log_metrics({"a": 1.0}, step=0)
    assert tracker.register_checkpoint(tmp_path, 0) is None and not tracker.should_register(10)
    tracker.close()
    assert not (tmp_path / "run").exists()


def test_should_register_every_k_iterations(uri, tmp_path):
    tracker = Tracker(tmp_path / "run", cfg(uri, register_every=5))
    assert [i for i in range(1, 12) if tracker.should_register(i)] == [5, 10]
    assert tracker.should_register(7, final=True)
    assert not Tracker(tmp_path / "run", cfg(uri, register_every=0)).should_register(10, final=True)


def test_checkpoint_is_registered_and_loads_back(uri, tmp_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    # A trainer checkpoint: the HF folder in hf/, optimiser state beside it (which must not be uploaded).
    ckpt = tmp_path / "run" / "checkpoints" / "3"
    make_tiny_model_dir(ckpt / "hf", hidden=16, layers=1)
    (ckpt / "deepspeed").mkdir()
    (ckpt / "deepspeed" / "optim.pt").write_bytes(b"x" * 1000)
    tracker = Tracker(tmp_path / "run", cfg(uri, registered_model="azr-policy"))
    mv = tracker.register_checkpoint(ckpt, iteration=3, flow_run_id="flow-run-123")
    assert mv is not None and str(mv.version) == "1"  # the first version of azr-policy in this store
    assert mv.tags[TAG_ITERATION] == "3" and mv.tags[TAG_FLOW_RUN] == "flow-run-123"
    assert mv.tags[TAG_RUN_DIR] == str((tmp_path / "run").resolve()) and mv.run_id == tracker.run_id
    if git_commit()[0]:
        assert mv.tags["azr.git_commit"] == git_commit()[0]
    # Registering the same iteration again (a resumed iteration) gives the same version, not a new one.
    assert str(tracker.register_checkpoint(ckpt, iteration=3).version) == "1"

    folder = load_model_folder("models:/azr-policy/1", tmp_path / "dl", tracking_uri=uri)
    names = {p.name for p in folder.iterdir()}
    assert {"config.json", "model.safetensors", "tokenizer.json"} <= names and "deepspeed" not in names
    loaded = AutoModelForCausalLM.from_pretrained(folder)
    original = AutoModelForCausalLM.from_pretrained(ckpt / "hf")
    for (name, a), (_, b) in zip(loaded.state_dict().items(), original.state_dict().items(), strict=True):
        assert torch.equal(a, b), name
    tok = AutoTokenizer.from_pretrained(folder)
    assert tok.decode(tok("f(x)")["input_ids"], skip_special_tokens=True) == "f(x)"


def test_aliases_point_at_versions(uri, tmp_path):
    name = "azr-policy-alias-test"
    tracker = Tracker(tmp_path / "run", cfg(uri, registered_model=name))
    make_tiny_model_dir(tmp_path / "m", hidden=16, layers=1)
    v1 = tracker.register_checkpoint(tmp_path / "m", iteration=1)
    v2 = tracker.register_checkpoint(tmp_path / "m", iteration=2)
    assert (str(v1.version), str(v2.version)) == ("1", "2")
    set_alias(name, "champion", v1.version, tracking_uri=uri)
    assert str(get_version_by_alias(name, "champion", tracking_uri=uri).version) == "1"
    set_alias(name, "champion", 2, tracking_uri=uri)  # moving an alias
    champion = get_version_by_alias(name, "champion", tracking_uri=uri)
    assert str(champion.version) == "2" and champion.tags[TAG_ITERATION] == "2"
    folder = load_model_folder(f"models:/{name}@champion", tracking_uri=uri)
    assert (folder / "config.json").is_file()
    assert model_download_uri(f"models:/{name}/latest", tracking_uri=uri) == v2.source
    with pytest.raises(MlflowException):
        get_version_by_alias(name, "nope", tracking_uri=uri)


def test_register_refuses_a_folder_without_a_model(uri, tmp_path):
    tracker = Tracker(tmp_path / "run", cfg(uri, registered_model="azr-policy-empty"))
    with pytest.raises(FileNotFoundError, match="config.json"):
        tracker.register_checkpoint(Path(tmp_path), iteration=1)


def test_default_tracking_uri_is_the_state_folders_sqlite_store(monkeypatch, tmp_path):
    from azr_core.tracking.runs import resolve_tracking_uri

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.setenv("AZR_STATE_DIR", str(tmp_path / "state"))
    assert resolve_tracking_uri() == f"sqlite:///{tmp_path / 'state' / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:5999")
    assert resolve_tracking_uri() == "http://127.0.0.1:5999"
    assert resolve_tracking_uri("sqlite:////x/y.db") == "sqlite:////x/y.db"  # the config wins over both
