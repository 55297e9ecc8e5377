"""The update schedule of an iteration: mini-batches, recomputed old log-probs, and leaving out sequences that add
nothing, exactly (the real DeepSpeed trainer on a tiny model)."""

from __future__ import annotations

import doctest

import pytest
import torch

from azr_core.policy.config import ModelConfig, TrainerConfig
from azr_core.policy.tiny import make_tiny_model_dir
from azr_core.policy.trainer import schedule
from azr_core.policy.trainer.engine import PolicyTrainer
from azr_core.policy.trainer.records import SequenceRecord
from azr_core.policy.trainer.schedule import plan_update, run_update


def _rec(adv: float, n: int = 3, group: str = "solve/deduction") -> SequenceRecord:
    return SequenceRecord([1, 2], [3] * n, [-1.0] * n, adv, group)


def test_doctests():
    result = doctest.testmod(schedule)
    assert result.attempted > 0 and result.failed == 0


def test_the_default_is_one_step_on_the_whole_batch_as_the_reference():
    recs = [_rec(a) for a in (1.0, -1.0, 0.0, 0.5, 0.0)]
    (only,) = plan_update(recs, TrainerConfig())
    # entropy bonus on (the paper's 0.001): a zero-advantage sequence still has a gradient, so nothing is left out
    assert only.sequences == 5 and len(only.records) == 5 and only.total_tokens == 15


def test_mini_batches_in_order_and_zero_advantages_left_out_only_when_exact():
    recs = [_rec(a, n=i + 1) for i, a in enumerate((1.0, 0.0, 0.0, -1.0, 0.0))]
    cfg = TrainerConfig(mini_batch_size=2, entropy_coef=0.0)
    plan = plan_update(recs, cfg)
    assert [m.sequences for m in plan] == [2, 2, 1]
    assert [[r.advantage for r in m.records] for m in plan] == [[1.0], [-1.0], []]
    assert [m.total_tokens for m in plan] == [1 + 2, 3 + 4, 5]  # the left-out tokens still count
    kept = plan_update(recs, TrainerConfig(mini_batch_size=2, entropy_coef=0.0, skip_zero_advantage=False))
    assert [len(m.records) for m in kept] == [2, 2, 1]
    with_kl = plan_update(recs, TrainerConfig(mini_batch_size=2, entropy_coef=0.0, kl_coef=0.1))
    assert [len(m.records) for m in with_kl] == [2, 2, 1]


class Recorder:
    def __init__(self) -> None:
        self.calls: list[tuple] = []

    def compute_logprobs(self, records):
        self.calls.append(("logprobs", [r.advantage for r in records]))
        return [[-0.5] * len(r.completion_token_ids) for r in records]

    def train_step(self, records, *, total_tokens=None):
        self.calls.append(("step", [(r.advantage, tuple(r.old_logprobs)) for r in records], total_tokens))
        return {"loss": 1.0, "sequences": float(len(records)), "step": float(len(self.calls) - 1)}


def test_old_logprobs_are_recomputed_once_before_the_first_step():
    rec = Recorder()
    recs = [_rec(1.0), _rec(0.0), _rec(-1.0)]
    # (the Recorder's log-probs are 0.5 from the sampler's: past the default gap alarm, tested below)
    out = run_update(rec, recs, TrainerConfig(mini_batch_size=2, entropy_coef=0.0, max_logprob_gap=None))
    assert rec.calls[0] == ("logprobs", [1.0, -1.0])  # only what runs forward, all before any step
    assert rec.calls[1] == ("step", [(1.0, (-0.5,) * 3)], 6)
    assert rec.calls[2] == ("step", [(-1.0, (-0.5,) * 3)], 3)
    assert out["optimizer_steps"] == 2 and out["skipped_sequences"] == 1 and out["step"] == 2
    assert out["logprob_gap"] == pytest.approx(0.5)
    sampler = Recorder()
    run_update(sampler, recs, TrainerConfig(recompute_old_logprobs=False))
    assert sampler.calls[0][0] == "step" and sampler.calls[0][1][0][1] == (-1.0,) * 3  # the sampler's log-probs
    with pytest.raises(schedule.LogprobGapError, match="max_logprob_gap=0.1"):
        run_update(Recorder(), recs, TrainerConfig(mini_batch_size=2, entropy_coef=0.0))


@pytest.mark.parametrize("recompute", [True, False])
def test_a_stale_weight_sync_trips_the_logprob_gap_alarm(tiny_dir, recompute):
    """Rollouts from a copy of the weights (as vLLM holds one): in sync, the gap is float noise; after an update the
    copy did not receive, the update fails naming the gap (with recomputation before any step is taken)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from azr_core.policy.rollout.base import SamplingParams
    from azr_core.policy.rollout.hf import HFBackend
    from azr_core.policy.trainer.records import summarize

    trainer = _trainer(tiny_dir)
    # One step at lr 1e-2 moves this tiny model's log-probs by ~0.1 nats; in sync the gap is < 1e-4: 0.01 between.
    cfg = trainer.cfg.model_copy(update={"recompute_old_logprobs": recompute, "max_logprob_gap": 0.01})

    class OneRank:  # what PolicyWorkers returns: the ranks' sums merged into metrics
        compute_logprobs = staticmethod(trainer.compute_logprobs)

        @staticmethod
        def train_step(records, *, total_tokens=None):
            return summarize([trainer.train_step(records, total_tokens=total_tokens)])

    sampler = HFBackend(AutoModelForCausalLM.from_pretrained(tiny_dir), AutoTokenizer.from_pretrained(tiny_dir))
    params = SamplingParams(n=2, max_new_tokens=8, seed=0)

    def batch() -> list[SequenceRecord]:
        outs = sampler.generate(["abc", "hello", "xy"], params)
        advs = iter([1.0, -1.0, 0.5, -0.5, 1.0, -1.0])
        return [SequenceRecord(o.prompt_token_ids, c.token_ids, c.logprobs, next(advs), "g")
                for o in outs for c in o.completions]  # fmt: skip

    synced = run_update(OneRank, batch(), cfg)
    assert synced["logprob_gap"] < 1e-4 and trainer.step == 1
    with pytest.raises(schedule.LogprobGapError, match="stale or failed weight sync") as err:
        run_update(OneRank, batch(), cfg)  # the sampler still holds the weights before that step
    assert "trainer.max_logprob_gap=0.01" in str(err.value)
    assert trainer.step == (1 if recompute else 2)  # recomputed: caught before the step
    sampler.sync_weights(trainer.named_weights())
    assert run_update(OneRank, batch(), cfg)["logprob_gap"] < 1e-4


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory):
    return make_tiny_model_dir(tmp_path_factory.mktemp("tiny") / "model")


def _trainer(tiny_dir) -> PolicyTrainer:
    cfg = TrainerConfig(lr=1e-2, micro_batch_size=2, zero_stage=0, entropy_coef=0.0)
    return PolicyTrainer(ModelConfig(name_or_path=str(tiny_dir)), cfg)


def _weights(t: PolicyTrainer) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in t.module.named_parameters()}


def test_leaving_out_zero_advantage_sequences_gives_the_same_update(tiny_dir):
    full, lean = _trainer(tiny_dir), _trainer(tiny_dir)
    recs = [SequenceRecord([5, 6, 7], [8, 9, 10, 11], [-2.0] * 4, adv, "g") for adv in (1.0, 0.0, -0.5, 0.0, 0.0, 0.75)]
    total = sum(len(r.completion_token_ids) for r in recs)
    m_full = full.train_step(recs)
    m_lean = lean.train_step([r for r in recs if r.advantage], total_tokens=total)
    # The gradient itself, scale included (AdamW's first step is nearly scale-free, so the weights alone would not
    # show a wrong token normalisation).
    assert m_lean["grad_norm"] == pytest.approx(m_full["grad_norm"], rel=1e-5)
    a, b = _weights(full), _weights(lean)
    assert any(not torch.equal(v, _weights(_trainer(tiny_dir))[k]) for k, v in a.items())  # the step moved them
    for k in a:
        # A weight whose gradient is near AdamW's eps moves by g / (|g| + eps) * lr, which amplifies the summation
        # order's float noise: up to 3.2e-6 on 2 of 3200 weights on this VM's CPU. 1e-5 is a thousandth of the step.
        torch.testing.assert_close(a[k], b[k], rtol=0, atol=1e-5)
    # A mini-batch with nothing left to run still takes its step: AdamW's moments move the weights as they would
    # after a zero-gradient backward over the whole mini-batch.
    zeros = [SequenceRecord([5, 6], [7, 8], [-2.0] * 2, 0.0, "g") for _ in range(3)]
    before = _weights(lean)
    full.train_step(zeros)
    lean.train_step([], total_tokens=6)
    after = _weights(lean)
    assert any(not torch.equal(before[k], after[k]) for k in after) and full.step == lean.step == 2
    for k, v in _weights(full).items():
        torch.testing.assert_close(v, after[k], rtol=0, atol=1e-5)  # as above


def test_an_answer_trained_as_one_sequence_gives_the_update_of_its_pieces(tiny_dir):
    from azr_core.policy.rollout.base import Completion
    from azr_core.selfplay.sampling import training_records

    # A skeleton answer: the model wrote [8, 9] after the prompt, the skeleton opened a block ([20, 21]), the model
    # wrote [10, 11, 12]. Each piece's prompt is everything before it.
    prompt, a, opened, b = [5, 6, 7], [8, 9], [20, 21], [10, 11, 12]
    pieces = [(prompt, Completion("", a, [-2.0, -1.0], "stop")),
              (prompt + a + opened, Completion("", b, [-1.5, -0.5, -3.0], "stop"))]  # fmt: skip
    (one,) = training_records(pieces, 0.75, "propose/deduction")
    assert one.prompt_token_ids == prompt and one.completion_token_ids == a + opened + b
    assert one.sampled == [True, True, False, False, True, True, True] and one.n_sampled == 5
    apart = [SequenceRecord(ids, c.token_ids, c.logprobs, 0.75, "propose/deduction") for ids, c in pieces]
    other = [SequenceRecord([5, 6], [9, 8, 7], [-2.0] * 3, -0.75, "propose/deduction")]
    merged, split = _trainer(tiny_dir), _trainer(tiny_dir)
    lp_merged = merged.compute_logprobs([one])[0]
    lp_split = split.compute_logprobs(apart)
    assert lp_merged[:2] == pytest.approx(lp_split[0], abs=1e-5)
    assert lp_merged[4:] == pytest.approx(lp_split[1], abs=1e-5)
    m_merged, m_split = merged.train_step([one, *other]), split.train_step([*apart, *other])
    assert m_merged["tokens"] == m_split["tokens"] == 5 + 3  # the opened block takes no loss and is not counted
    assert m_merged["grad_norm"] == pytest.approx(m_split["grad_norm"], rel=1e-5)
    for k, v in _weights(merged).items():
        # As above, AdamW's first step amplifies float noise where a gradient is near eps; the batches differ in
        # shape here (and so in summation order): 1.2e-5 on 1 of 2048 weights seen. 5e-5 is 1/200 of the step.
        torch.testing.assert_close(v, _weights(split)[k], rtol=0, atol=5e-5)
    # A tokenizer that merged tokens across a boundary: the pieces stay apart (still the same gradient)
    broken = [pieces[0], ([5, 6, 99, 20, 21], pieces[1][1])]
    assert [r.completion_token_ids for r in training_records(broken, 1.0, "g")] == [a, b]
    assert training_records([(prompt, Completion("", [], [], "stop"))], 1.0, "g") == []
