"""A whole self-play iteration through the stage functions, with a scripted policy standing in for the model
(fast; the real model runs in the pipeline integration test). Real executor, real store, real MLflow store."""

from __future__ import annotations

import pytest

from azr_core.algo.tasks import Task, TaskType
from azr_core.selfplay import stages
from azr_core.selfplay.commit import commit
from azr_core.selfplay.iteration import run_iteration
from azr_core.selfplay.session import Session
from azr_core.store import connect
from azr_core.store.compaction import read_compaction
from tests.scripted import ScriptedPolicy, block_role, make_session

pytestmark = pytest.mark.sandbox


def test_one_iteration_end_to_end(tmp_path, caplog):
    policy = ScriptedPolicy()
    s = make_session(tmp_path, policy)

    def disk_full():
        raise OSError(28, "No space left on device")

    s.store.maybe_compact = disk_full  # a compaction failing after the commit point must not fail the iteration
    with s:
        out = run_iteration(s)
    assert out["committed"] == 1 and out["step"] == 1  # the trainer's step, one per (whole-batch) mini-batch
    assert "compaction after iteration 1 failed" in caplog.text
    con = connect(tmp_path / "run")
    props = con.execute("SELECT stage, valid, reason, task_type FROM proposals").fetchall()
    assert any(r[1] for r in props if r[0] == "propose") and any(not r[1] for r in props)
    reasons = {r[2].split(":")[0] for r in props if r[2]}
    assert "check" in reasons and "parse" in reasons  # the banned import; the completion cut at the length limit
    # the induction proposals ran on a reference program: all 4 inputs valid -> a task, first 2 shown
    ind = con.execute("SELECT shown_inputs, held_inputs FROM tasks WHERE task_type='induction' AND iteration=1")
    ind = ind.fetchall()
    # (the policy numbers its inputs in order: the first two are shown, the last two held out)
    assert ind and all(len(r[0]) == len(r[1]) == 2 and max(map(int, r[0])) < min(map(int, r[1])) for r in ind)
    # a skeleton answer is trained on as its pieces: the model's blocks, never the blocks opened for it
    pieces = [r for step in policy.trained for r in step if r.group == "propose/induction"]
    assert not pieces or all(len(r.completion_token_ids) == 4 for r in pieces)
    batch = con.execute(
        "SELECT role, task_type, count(*), avg(advantage) FROM rollouts WHERE in_batch GROUP BY ALL"
    ).fetchall()
    assert {(r[0], r[1]) for r in batch} == {
        (role, t) for role in ("propose", "solve") for t in ("deduction", "abduction", "induction")
    }
    for *_, mean_adv in batch:
        assert abs(mean_adv) < 1e-9  # TRR++: zero mean within each group
    metrics = con.execute("SELECT metrics FROM iterations WHERE iteration=1").fetchone()[0]
    assert metrics["proposals/deduction"] == 4 and 0 < metrics["valid_rate/deduction"] < 1
    assert metrics["seed/proposals"] > 0 and metrics["train/step"] == 1
    # Each part of the reward logged per role and type: the shares of a group's deciders sum to 1, and a part's mean
    # is the mean reward of the rollouts it decided (proposals: format, validity, learnability by default).
    for group in ("propose/deduction", "solve/deduction"):
        shares = {k: v for k, v in metrics.items() if k.startswith("reward_share/") and k.endswith("/" + group)}
        assert shares and abs(sum(shares.values()) - 1) < 1e-9, shares
    rows = con.execute("SELECT reward FROM proposals WHERE iteration = 1 AND task_type = 'deduction' AND "
                       "stage = 'propose' AND NOT valid AND format_ok").fetchall()  # fmt: skip
    assert rows and metrics["reward/validity/propose/deduction"] == -1.0 == rows[0][0]
    assert set(k.split("/")[1] for k in metrics if k.startswith("reward/") and "/propose/" in k) <= {
        "format", "validity", "learnability"}  # fmt: skip
    # solve_accuracy is the reward's verdict: a correct rollout has reward 1, and only those
    acc = con.execute(
        "SELECT avg((reward = 1)::INT), avg(correct::INT) FROM rollouts WHERE role='solve' AND purpose='solve' "
        "AND task_type='deduction'"
    ).fetchone()
    assert acc[0] == acc[1] == metrics["solve_accuracy/deduction"]
    # only sequences with a non-zero advantage were forwarded (cpu-tiny: no entropy bonus, so that is exact)
    trained = [r for step in policy.trained for r in step]
    assert trained and all(r.advantage != 0 for r in trained)
    zero = con.execute("SELECT count(*) FROM rollouts WHERE in_batch AND advantage = 0").fetchone()[0]
    assert zero > 0 and metrics["train/skipped_sequences"] >= zero  # pieces: a skeleton answer has one per block
    # (the scripted policy's prompt ids never extend the previous piece's: its answers stay apart, and say so)
    assert metrics["train/answers_split"] > 0
    assert (tmp_path / "run" / "checkpoints" / "000001").is_dir()
    import mlflow

    client = mlflow.MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    exp = client.get_experiment_by_name("azr")
    run = client.search_runs([exp.experiment_id])[0]
    assert run.data.metrics["valid_rate/deduction"] == metrics["valid_rate/deduction"]


def test_seeding_draws_references_from_its_own_tasks_and_runs_once(tmp_path):
    policy = ScriptedPolicy()
    with make_session(tmp_path, policy) as s:
        seeded = stages.seed(s, 1)
        assert seeded.rounds == 2 + 2  # quota 4 not reached by the programs, then two induction rounds
        first = [t for t in seeded.tasks if t.task_type == "deduction"]
        assert first, "round 1 produced no valid seed program"
        # a program validated in round 1 is shown as a reference to a later seed prompt
        later = [p.prompt for p in seeded.proposals[3:] if p.task_type in ("deduction", "abduction")]
        assert any(first[0].program in p for p in later)
        # deduction and abduction share the seed set; induction seeds use its programs
        programs = {t.program for t in seeded.tasks if t.task_type == "abduction"}
        assert {t.program for t in first} == programs
        assert s.buffers.size("deduction") == s.buffers.size("abduction") == 1 + len(first)
        assert seeded.summary()["buffer_sizes"]["deduction"] == 1 + len(first)  # after seeding's own additions
        assert any(t.task_type == "induction" and t.program in programs for t in seeded.tasks)
        # a later iteration pays nothing for seeding
        assert stages.seed(s, 2).proposals == []


def test_duplicate_proposals_share_learnability_and_reward(tmp_path):
    policy = ScriptedPolicy(repeat=True)
    with make_session(tmp_path, policy, **{"buffers.seed_max_rounds": 0, "selfplay.batch_per_group": 6}) as s:
        proposed = stages.propose(s, stages.seed(s, 1))
        validated = stages.execute_validate(s, proposed)
        dups = [p for p in validated.proposals if p.valid and p.task_type == "deduction"]
        assert len(dups) == 2 and dups[0].task_id == dups[1].task_id and dups[1].duplicate
        solved = stages.solve(s, validated)
        probed = [x for x in solved.probes if x.task.task_id == dups[0].task_id]
        assert len(probed) == s.cfg.selfplay.learnability_rollouts  # one estimate per distinct task
        stages.reward(s, solved)
        assert dups[0].n_solves == dups[1].n_solves > 0
        assert dups[0].solve_rate == dups[1].solve_rate and dups[0].reward == dups[1].reward
        assert not dups[0].in_buffers and not dups[1].in_buffers  # new this batch: learnability, not a copy


def test_a_copy_of_a_buffered_task_gets_the_known_task_reward(tmp_path):
    policy = ScriptedPolicy(repeat=True)
    over = {"buffers.seed_max_rounds": 0, "selfplay.batch_per_group": 6, "rewards.known_task": -0.5}
    with make_session(tmp_path, policy, **over) as s:
        run_iteration(s)  # `return x * 3` joins the buffers
        validated = stages.execute_validate(s, stages.propose(s, stages.seed(s, 2)))
        copies = [p for p in validated.proposals if p.valid and p.task_type == "deduction"]
        assert copies and all(p.in_buffers and p.duplicate for p in copies)
        stages.reward(s, stages.solve(s, validated))
        assert all(p.reward == -0.5 for p in copies)
        invalid = [p for p in validated.proposals if not p.valid and p.task_type == "deduction"]
        assert invalid and all(p.reward == -1.0 for p in invalid)  # still below a copy
    (tmp_path / "paper").mkdir()
    with make_session(tmp_path / "paper", ScriptedPolicy(repeat=True), **{**over, "rewards.known_task": "null"}) as s:
        run_iteration(s)
        validated = stages.execute_validate(s, stages.propose(s, stages.seed(s, 2)))
        stages.reward(s, stages.solve(s, validated))
        copies = [p for p in validated.proposals if p.valid and p.task_type == "deduction"]
        # as the paper: its learnability reward (no rollouts for a known task: unlearnable, rewards.unlearnable)
        assert copies and all(p.in_buffers and p.reward == s.cfg.rewards.unlearnable for p in copies)


def test_a_copy_of_a_buffered_program_gets_the_known_program_reward(tmp_path):
    policy = ScriptedPolicy(repeat=True)
    over = {"buffers.seed_max_rounds": 0, "selfplay.batch_per_group": 6, "rewards.known_program": -0.75}
    with make_session(tmp_path, policy, **over) as s:
        run_iteration(s)  # `return x * 3` on 3 joins the buffers
        s.buffers.add(Task(TaskType.ABDUCTION, "def f(x):\n    # a comment\n    return x * 3", "4", "12", iteration=1))
        validated = stages.execute_validate(s, stages.propose(s, stages.seed(s, 2)))
        stages.reward(s, stages.solve(s, validated))
        copies = [p for p in validated.proposals if p.valid and p.task_type != "induction"]
        assert copies and all(p.reward == -0.75 for p in copies)  # the same program, whatever its input or comments
        assert all(p.reward != -0.75 for p in validated.proposals if p.task_type == "induction")


class DeadThenAlive(ScriptedPolicy):
    """While `dead`: every proposal is the same valid task (`return x * 3` on 3; induction: inputs 1-4) and every
    answer is cut at the length limit, so each proposal is unlearnable (reward 0) and each solve a format error (-1):
    every group is degenerate. Then it answers as ScriptedPolicy(repeat=True), whose valid program is that task."""

    def __init__(self) -> None:
        super().__init__(repeat=True)
        self.dead = True

    def _completion(self, prompt: str, i: int) -> tuple[str, str]:
        role, block = block_role(prompt), prompt.rsplit("```", 1)[-1].strip()
        if not self.dead or role == "inputs":
            return super()._completion(prompt, i)
        if role == "program":
            return ("def f(x):\n    return x * 3\n```", "stop") if block == "python" else ("3\n```", "stop")
        return "nonsense", "length"


def _attempt(s: Session, previous):
    return stages.reward(s, stages.solve(s, stages.execute_validate(s, stages.propose(s, previous))))


def test_a_batch_with_no_live_group_is_sampled_again_and_joins_the_next(tmp_path):
    policy = DeadThenAlive()
    over = {"buffers.seed_max_rounds": 0, "selfplay.batch_per_group": 3, "selfplay.degenerate_retries": 2}
    with make_session(tmp_path, policy, **over) as s:
        first = _attempt(s, stages.seed(s, 1))
        assert first.live_groups == [] and all(b.advantage == 0 for b in first.batch)
        assert first.solved.validated.new_tasks and stages.resample(s, first)
        policy.dead = False
        second = _attempt(s, first)
        assert second.attempt == 2 and second.live_groups and not stages.resample(s, second)
        # one batch: the first attempt's rollouts too, advantages of zero mean over each whole group
        mine = [*second.solved.validated.proposals, *second.solved.solves]
        assert len(second.batch) == len(first.batch) + len(mine)
        assert {id(b) for b in first.batch} <= {id(b) for b in second.batch}
        for group in second.live_groups:
            assert abs(sum(b.advantage for b in second.batch if b.group == group)) < 1e-9
        # one accumulating batch per iteration, which each attempt appends to (no chain of earlier results)
        whole = second.solved.validated.proposed.batch
        assert whole is first.solved.validated.proposed.batch and whole.attempt == 2
        assert whole.rollouts is second.batch and len(whole.proposals) == 2 * 3 * 3
        assert whole.probes[: len(first.solved.probes)] == first.solved.probes
        # a task new in the first attempt is a duplicate in the second, never a second new task
        (x3,) = [t for t in first.solved.validated.new_tasks if t.task_type == "deduction"]
        again = [p for p in second.solved.validated.proposals if p.task_id == x3.task_id]
        assert again and all(p.duplicate and not p.in_buffers for p in again)
        assert x3.task_id not in {t.task_id for t in second.solved.validated.new_tasks}
        summary = commit(s, stages.update(s, second))
    con = connect(tmp_path / "run")
    assert con.execute("SELECT count(*) FROM proposals WHERE iteration = 1").fetchone()[0] == 2 * 3 * 3
    assert con.execute("SELECT count(*) FROM rollouts WHERE in_batch").fetchone()[0] == len(second.batch)
    assert con.execute("SELECT count(*) FROM tasks WHERE task_id = ?", [x3.task_id]).fetchone()[0] == 1
    metrics = con.execute("SELECT metrics FROM iterations WHERE iteration = 1").fetchone()[0]
    assert metrics["attempts"] == 2 and metrics["groups/live"] == len(second.live_groups) > 0
    assert summary["committed"] == 1


@pytest.mark.parametrize("retries", [0, 2])
def test_resampling_is_bounded_by_degenerate_retries(tmp_path, retries):
    over = {"buffers.seed_max_rounds": 0, "selfplay.batch_per_group": 2, "selfplay.degenerate_retries": retries}
    with make_session(tmp_path, DeadThenAlive(), **over) as s:  # dead throughout: no attempt has a live group
        run_iteration(s)
    metrics = connect(tmp_path / "run").execute("SELECT metrics FROM iterations WHERE iteration = 1").fetchone()[0]
    assert metrics["attempts"] == 1 + retries and metrics["groups/live"] == 0
    assert metrics["proposals/deduction"] == 2 * (1 + retries)


def test_rollout_n_gives_n_completions_per_prompt(tmp_path):
    with make_session(tmp_path, **{"buffers.seed_max_rounds": 0, "rollout.n": 2}) as s:
        proposed = stages.propose(s, stages.seed(s, 1))
        assert len(proposed.proposals) == 2 * 3 * s.cfg.selfplay.batch_per_group


def test_over_long_prompts_are_dropped_and_counted(tmp_path):
    with make_session(tmp_path, **{"buffers.seed_max_rounds": 0, "selfplay.max_prompt_tokens": 16}) as s:
        proposed = stages.propose(s, stages.seed(s, 1))
        assert proposed.proposals == [] and proposed.filtered_prompts == 3 * s.cfg.selfplay.batch_per_group
        out = run_iteration(s)  # nothing to train on: the iteration still commits
        assert out["committed"] == 1


def test_resume_continues_after_last_commit_and_drops_partial_rows(tmp_path):
    # Compaction after every commit: the commit stage runs it, and the resumed session rebuilds its buffers from
    # segment files.
    compact = {"store.compact_every": 1}
    with make_session(tmp_path, **compact) as s:
        run_iteration(s)
        stages.execute_validate(s, stages.propose(s, stages.seed(s, 2)))
        # a crash here: half an iteration, partial files from a writer that never committed
        with s.store.begin(2) as w:
            w.write("proposals", [{"proposal_id": "zzzz", "task_type": "deduction", "stage": "propose"}])
            w._closed = True  # leave the partition behind, as a killed process would
        size = len(s.buffers)
    assert (tmp_path / "run" / "tables" / "proposals" / "iteration=2").exists()
    with make_session(tmp_path, **compact) as s2:
        assert s2.last_iteration == 1
        assert read_compaction(tmp_path / "run").upto == 1
        assert len(s2.buffers) == size  # rebuilt from the segments
        assert not (tmp_path / "run" / "tables" / "proposals" / "iteration=2").exists()
        out = run_iteration(s2)
        assert out["stage_seconds"]["seed"] < 0.01  # seeding is not paid again on resume
    con = connect(tmp_path / "run")
    ids = con.execute("SELECT proposal_id FROM proposals").fetchall()
    assert len(ids) == len(set(ids)) and ("zzzz",) not in ids
    assert con.execute("SELECT max(iteration) FROM rollouts").fetchone()[0] == 2
    assert con.execute("SELECT count(DISTINCT task_id) = count(*) FROM tasks").fetchone()[0]
    assert con.execute("SELECT count(*) FROM proposals WHERE stage = 'seed' AND iteration = 2").fetchone()[0] == 0
    assert read_compaction(tmp_path / "run").upto == 2


def test_second_writer_is_refused(tmp_path):
    from azr_core.store import StoreError

    with make_session(tmp_path):
        with pytest.raises(StoreError, match="another process"):
            make_session(tmp_path)


def test_a_failed_session_ends_its_mlflow_run_failed(tmp_path):
    import mlflow

    with pytest.raises(RuntimeError, match="boom"):
        with make_session(tmp_path, **{"buffers.seed_max_rounds": 0}) as s:
            run_iteration(s)
            raise RuntimeError("boom")
    client = mlflow.MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    run = client.search_runs([client.get_experiment_by_name("azr").experiment_id])[0]
    assert run.info.status == "FAILED" and "boom" in run.data.tags["azr.end_reason"]
    with make_session(tmp_path, **{"buffers.seed_max_rounds": 0}) as s:
        run_iteration(s)  # a resumed session continues the same MLflow run and ends it FINISHED
    run = client.get_run(run.info.run_id)
    assert run.info.status == "FINISHED"


def test_the_sandbox_on_the_hosts_needs_a_worker_group(tmp_path):
    with pytest.raises(ValueError, match="not a worker group: set executor.placement=driver"):
        make_session(tmp_path, **{"executor.placement": "hosts"})
