"""`run_iteration` end to end with the embedded default model (SmolLM2-135M-Instruct) in the real DeepSpeed policy
workers, the real firejail executor, the Parquet store and an MLflow store: seeding, then two training iterations, the
second in a new session that resumes from the first one's checkpoint. Small budgets keep it to a couple of minutes."""

from __future__ import annotations

from pathlib import Path

import pytest

from azr_core.config import load_config
from azr_core.selfplay.iteration import run_iteration
from azr_core.selfplay.session import Session
from azr_core.store import connect

pytestmark = [pytest.mark.slow, pytest.mark.sandbox]


def _cfg(tmp_path: Path):
    return load_config(
        None,
        [
            f"run.run_dir={tmp_path / 'run'}",
            f"tracking.tracking_uri=sqlite:///{tmp_path / 'mlflow.db'}",
            "tracking.register_every=0",
            "store.fsync=false",
            "selfplay.batch_per_group=2",
            "selfplay.degenerate_retries=1",  # at most one resample of a batch with no live group
            "selfplay.references_k=1",
            "selfplay.induction_inputs=2",
            "selfplay.learnability_rollouts=2",
            "rollout.max_new_tokens=48",
            "buffers.seed_quota=2",
            "buffers.seed_round_size=2",
            "buffers.seed_max_rounds=1",
        ],
        profile="cpu-tiny",
    )


def test_run_iteration_with_the_real_model_trains_commits_and_resumes(tmp_path):
    cfg = _cfg(tmp_path)
    with Session(cfg) as s:
        first = run_iteration(s)
        tokenizer = s.tokenizer
    assert first["committed"] == 1 and first["step"] == 1  # cpu-tiny: one optimiser step on the whole batch
    con = connect(tmp_path / "run")
    # the model's own words: every rollout generated tokens, and the stored prompt is what the tokenizer counts
    rows = con.execute(
        "SELECT prompt, completion, prompt_tokens, completion_tokens, purpose FROM rollouts WHERE iteration=1"
    ).fetchall()
    purposes = {r[4] for r in rows}
    assert {"seed", "propose", "solve"} <= purposes, purposes
    assert all(r[3] > 0 for r in rows)
    prompt, _, prompt_tokens, *_ = rows[0]
    assert prompt_tokens == len(tokenizer(prompt)["input_ids"])
    # every proposal was judged by the sandbox: valid, or a reason
    props = con.execute("SELECT valid, reason FROM proposals WHERE iteration=1").fetchall()
    assert props and all(valid or reason for valid, reason in props)
    # the update batch holds every group, with TRR++ advantages of zero mean in each
    batch = con.execute(
        "SELECT role, task_type, avg(advantage) FROM rollouts WHERE in_batch AND iteration=1 GROUP BY ALL"
    ).fetchall()
    assert {(r[0], r[1]) for r in batch} == {
        (role, t) for role in ("propose", "solve") for t in ("deduction", "abduction", "induction")
    }
    assert all(abs(r[2]) < 1e-9 for r in batch)
    metrics = con.execute("SELECT metrics FROM iterations WHERE iteration=1").fetchone()[0]
    assert metrics["train/step"] == 1
    assert (tmp_path / "run" / "checkpoints" / "000001" / "hf" / "config.json").is_file()
    con.close()

    # a new session resumes from the checkpoint: the trainer continues at step 1, seeding is not paid again
    with Session(cfg) as s:
        assert s.last_iteration == 1
        second = run_iteration(s)
    assert second["committed"] == 2 and second["step"] == 2
    con = connect(tmp_path / "run")
    assert con.execute("SELECT count(*) FROM rollouts WHERE iteration=2 AND purpose='seed'").fetchone()[0] == 0
    steps = con.execute("SELECT iteration, step FROM iterations ORDER BY iteration").fetchall()
    assert steps[-2:] == [(1, 1), (2, 2)], steps
