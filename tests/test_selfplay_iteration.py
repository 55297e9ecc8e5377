"""A whole self-play iteration through the stage functions, with a scripted policy standing in for the model
(fast; the real model runs in the pipeline integration test). Real executor, real store, real MLflow store."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest

from azr_core.config import load_config
from azr_core.policy.rollout.base import Completion, PromptOutput
from azr_core.selfplay import stages
from azr_core.selfplay.commit import commit
from azr_core.selfplay.session import Session
from azr_core.store import connect
from azr_core.store.compaction import read_compaction

pytestmark = pytest.mark.sandbox

DEDUCTION = "<think>plan</think><answer>```python\ndef f(x):\n    return x * {k}\n```\n```input\n{k}\n```</answer>"
INDUCTION = "ok</think><answer>```input\n1\n```\n```input\n2\n```\n```input\n'a'\n```\n```message\nsame\n```</answer>"


class ScriptedPolicy:
    """Proposals: valid ones with fresh programs, a banned import, a malformed one; answers: right or wrong."""

    def __init__(self) -> None:
        self.counter = itertools.count(2)
        self.steps = 0
        self.saved: list[Path] = []

    def _text(self, prompt: str, i: int) -> str:
        if "Output" in prompt and "Inputs that can be plugged" in prompt:
            return INDUCTION
        if "Create a Python Code Snippet" in prompt:
            k = next(self.counter)
            return [
                DEDUCTION.format(k=k),
                "<think>x</think><answer>```python\nimport os\ndef f(x):\n    return 1\n```\n```input\n1\n```</answer>",
                "no format at all",
            ][k % 3]
        if "```output" in prompt or "output" in prompt.lower():
            return "<think>t</think><answer>```output\n4\n```</answer>" if i % 2 else "garbage"
        return "<think>t</think><answer>```python\ndef f(x):\n    return x\n```</answer>"

    def generate(self, prompts, params):
        out = []
        for p in prompts:
            comps = [self._text(p, i) for i in range(params.n)]
            out.append(PromptOutput(p, [1, 2, 3], [Completion(c, [5] * 4, [-0.5] * 4, "stop") for c in comps]))
        return out

    def train_step(self, records):
        assert records, "update called with no records"
        groups = {r.group for r in records}
        assert groups <= {
            f"{role}/{t}" for role in ("propose", "solve") for t in ("deduction", "abduction", "induction")
        }
        self.steps += 1
        return {"loss": 0.5, "sequences": float(len(records))}

    def save_checkpoint(self, path):
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        (path / "trainer.json").write_text("{}")
        self.saved.append(path)
        return path

    def load_checkpoint(self, path):
        return self.steps

    def close(self):
        pass


class CharTokenizer:
    def apply_chat_template(self, conversation, tokenize=False, add_generation_prompt=True):
        return "\n".join(f"<{m['role']}>{m['content']}" for m in conversation) + "\n<assistant>"


def make_session(tmp_path: Path, **over) -> Session:
    overrides = [
        f"run.run_dir={tmp_path / 'run'}",
        "executor.workers=3",
        "executor.timeout_s=2.0",
        f"tracking.tracking_uri=sqlite:///{tmp_path / 'mlflow.db'}",
        "tracking.register_every=0",
        "store.fsync=false",
        "buffers.seed_quota=2",
        "buffers.seed_max_rounds=2",
    ]
    overrides += [f"{k}={v}" for k, v in over.items()]
    cfg = load_config(None, overrides, profile="cpu-tiny")
    return Session(cfg, policy=ScriptedPolicy(), tokenizer=CharTokenizer())


def run_iteration(s: Session) -> dict:
    state = s.begin_iteration()
    out = {}
    for stage in (stages.seed, stages.propose, stages.execute_validate, stages.solve, stages.reward, stages.update):
        out[stage.__name__] = stage(s, state)
    out["commit"] = commit(s, state)
    return out


def test_one_iteration_end_to_end(tmp_path, caplog):
    s = make_session(tmp_path)

    def disk_full():
        raise OSError(28, "No space left on device")

    s.store.maybe_compact = disk_full  # a compaction failing after the commit point must not fail the iteration
    try:
        out = run_iteration(s)
    finally:
        s.close()
    assert out["commit"]["committed"] == 1
    assert "compaction after iteration 1 failed" in caplog.text
    assert out["execute_validate"]["valid"] >= 1
    con = connect(tmp_path / "run")
    props = con.execute("SELECT stage, valid, reason, task_type FROM proposals").fetchall()
    assert any(r[1] for r in props) and any(not r[1] for r in props)
    reasons = {r[2].split(":")[0] for r in props if r[2]}
    assert "check" in reasons and reasons & {"format", "parse"}  # cpu-tiny parses leniently
    # the induction proposals ran on the reference program: identity on three inputs -> a valid task
    assert con.execute("SELECT count(*) FROM tasks WHERE task_type='induction' AND iteration=1").fetchone()[0] >= 1
    batch = con.execute(
        "SELECT role, task_type, count(*), avg(advantage) FROM rollouts WHERE in_batch GROUP BY ALL"
    ).fetchall()
    assert {(r[0], r[1]) for r in batch} == {
        (role, t) for role in ("propose", "solve") for t in ("deduction", "abduction", "induction")
    }
    for *_, mean_adv in batch:
        assert abs(mean_adv) < 1e-9  # TRR++: zero mean within each group
    metrics = con.execute("SELECT metrics FROM iterations WHERE iteration=1").fetchone()[0]
    assert metrics["proposals/deduction"] == 4 and 0 <= metrics["valid_rate/deduction"] <= 1
    assert (tmp_path / "run" / "checkpoints" / "000001").is_dir()
    import mlflow

    client = mlflow.MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    exp = client.get_experiment_by_name("azr")
    run = client.search_runs([exp.experiment_id])[0]
    assert run.data.metrics["valid_rate/deduction"] == metrics["valid_rate/deduction"]


def test_resume_continues_after_last_commit_and_drops_partial_rows(tmp_path):
    # Compaction after every commit: the commit stage runs it, and the resumed session rebuilds its buffers from
    # segment files.
    compact = {"store.compact_every": 1}
    s = make_session(tmp_path, **compact)
    try:
        run_iteration(s)
        state = s.begin_iteration()
        stages.seed(s, state)
        stages.propose(s, state)
        stages.execute_validate(s, state)
        # a crash here: half an iteration, partial files from a writer that never committed
        with s.store.begin(2) as w:
            w.write("proposals", [{"proposal_id": "zzzz", "task_type": "deduction", "stage": "propose"}])
            w._closed = True  # leave the partition behind, as a killed process would
    finally:
        s.close()
    assert (tmp_path / "run" / "tables" / "proposals" / "iteration=2").exists()
    s2 = make_session(tmp_path, **compact)
    try:
        assert s2.last_iteration == 1
        assert read_compaction(tmp_path / "run").upto == 1
        assert len(s2.buffers) == len(s.buffers)  # rebuilt from the segments
        assert not (tmp_path / "run" / "tables" / "proposals" / "iteration=2").exists()
        run_iteration(s2)
    finally:
        s2.close()
    con = connect(tmp_path / "run")
    ids = con.execute("SELECT proposal_id FROM proposals").fetchall()
    assert len(ids) == len(set(ids)) and ("zzzz",) not in ids
    assert con.execute("SELECT max(iteration) FROM rollouts").fetchone()[0] == 2
    assert con.execute("SELECT count(DISTINCT task_id) = count(*) FROM tasks").fetchone()[0]
    assert read_compaction(tmp_path / "run").upto == 2


def test_second_writer_is_refused(tmp_path):
    from azr_core.store import StoreError

    s = make_session(tmp_path)
    try:
        with pytest.raises(StoreError, match="another process"):
            make_session(tmp_path)
    finally:
        s.close()
