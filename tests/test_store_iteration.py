"""The core pieces fit together: one iteration's rows from completions to committed, queryable tables."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from azr_core.advantages import trr_advantages
from azr_core.config import load_config
from azr_core.proposals import (
    FORMAT_REASON,
    grade_request,
    parse_answer,
    parse_proposal,
    proposal_row,
    validate_candidates,
)
from azr_core.rewards import learnability, learnability_reward, solver_reward
from azr_core.store import TaskBuffers, connect, open_run, task_to_row
from azr_core.task_types import new_id


def _answer(body: str) -> str:
    return f"reasoning</think>\n<answer>\n{body}\n</answer>"


@pytest.mark.sandbox
def test_one_iteration_from_completions_to_sql(tmp_path: Path, executor):
    cfg = load_config(None, ["store.fsync=false"], profile="cpu-tiny")
    rng = random.Random(0)
    with open_run(tmp_path, cfg) as store:
        buffers = TaskBuffers.from_connection(connect(tmp_path))
        refs = buffers.sample_references("deduction", cfg.selfplay.references_k, rng)
        completions = [
            _answer("```python\ndef f(xs):\n    return sorted(xs)[::-1]\n```\n```input\n[3, 1, 2]\n```"),
            _answer("```python\ndef f(x):\n    return 1 // 0\n```\n```input\n1\n```"),  # crashes
            "no format at all",
        ]
        pids = [new_id() for _ in completions]
        candidates = [parse_proposal("deduction", c, reference_ids=[t.task_id for t in refs]) for c in completions]
        outcomes = validate_candidates(executor, candidates, iteration=1, rng=rng, proposal_ids=pids)
        assert [o.valid for o in outcomes] == [True, False, False]
        new_tasks = [o.task for o in outcomes if o.task and buffers.add(o.task)]
        assert new_tasks[0].output == "[3, 2, 1]"

        # n learnability rollouts on the new task, then the solver batch (new task first).
        answers = ["```output\n[3, 2, 1]\n```", "```output\n[1, 2, 3]\n```"]
        learn = [parse_answer("deduction", _answer(a)) for a in answers]
        graded = executor.grade_many([grade_request(new_tasks[0], a.answer) for a in learn])
        rate = learnability([float(g.correct) for g in graded])
        assert rate == 0.5
        batch = buffers.solver_batch("deduction", 2, rng, new_tasks=new_tasks)
        assert batch[0] == new_tasks[0]
        solves = [parse_answer("deduction", _answer("```output\n[3, 2, 1]\n```")) for _ in batch]
        verdicts = executor.grade_many([grade_request(t, a.answer) for t, a in zip(batch, solves, strict=True)])

        p_rewards = learnability_reward(completions, format_ok=[c.format_ok for c in candidates],
                                        valid=[o.valid for o in outcomes], solve_rate=[rate, None, None])  # fmt: skip
        s_rewards = solver_reward(["x"] * len(batch), format_ok=[a.format_ok for a in solves],
                                  correct=[v.correct for v in verdicts])  # fmt: skip
        assert p_rewards == [0.5, -1.0, -1.0]
        rewards = p_rewards + s_rewards
        roles = ["propose"] * 3 + ["solve"] * len(batch)
        adv = trr_advantages(rewards, roles, ["deduction"] * len(rewards))

        with store.begin() as w:
            w.write("proposals", [proposal_row(o, pid, reward=r, solve_rate=rate if o.valid else None,
                                               n_solves=2 if o.valid else 0)
                                  for o, pid, r in zip(outcomes, pids, p_rewards, strict=True)])  # fmt: skip
            w.write("tasks", [task_to_row(t) for t in new_tasks])
            w.write("rollouts", [
                {"rollout_id": new_id(), "role": role, "task_type": "deduction", "reward": r, "advantage": a,
                 "in_batch": True, "purpose": "propose" if role == "propose" else "solve"}
                for role, r, a in zip(roles, rewards, adv, strict=True)
            ])  # fmt: skip
            w.write("iterations", [{"stage": "train", "step": 1, "metrics": {"valid_rate/deduction": 1 / 3}}])
            w.commit("ckpt-1")

    con = connect(tmp_path)
    assert con.sql("SELECT count(*) FROM tasks").fetchall() == [(4,)]  # 3 seeds + 1 new
    assert con.sql("SELECT valid, reason IS NULL FROM proposals ORDER BY valid DESC").fetchall()[0] == (True, True)
    reasons = [r for (r,) in con.sql("SELECT reason FROM proposals WHERE NOT valid ORDER BY reason").fetchall()]
    assert "ZeroDivisionError" in reasons[0] and reasons[1] == FORMAT_REASON  # the executor's reason, recorded
    by_role = dict(con.sql("SELECT role, round(sum(advantage), 9) FROM rollouts GROUP BY role").fetchall())
    assert by_role == {"propose": 0.0, "solve": 0.0}  # TRR++: each group centred
    assert con.sql("SELECT metrics['valid_rate/deduction'] FROM iterations WHERE iteration = 1").fetchall() == [
        (pytest.approx(1 / 3),)
    ]
