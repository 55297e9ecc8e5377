"""Worker processes under the real `deepspeed` launcher (CPU ranks, gloo): results, ZeRO-2 equivalence, failures."""

from __future__ import annotations

import os
import signal
import time

import pytest
import torch
from safetensors.torch import load_file

from azr_core.policy.config import ModelConfig, RolloutConfig, TrainerConfig
from azr_core.policy.rollout.base import SamplingParams, Script
from azr_core.policy.tiny import make_tiny_model_dir
from azr_core.policy.trainer.client import PolicyWorkers, WorkerError
from azr_core.policy.trainer.records import SequenceRecord, free_port, shard_records
from azr_core.policy.trainer.shm import SHM_DIR, SHM_PREFIX

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory):
    return make_tiny_model_dir(tmp_path_factory.mktemp("tiny") / "model")


def _group(tiny_dir, tmp_path, workers: int, **trainer) -> PolicyWorkers:
    cfg = TrainerConfig(
        num_workers=workers,
        zero_stage=2,
        lr=1e-3,
        micro_batch_size=2,
        worker_timeout_s=120,
        **trainer,
    )
    return PolicyWorkers(
        ModelConfig(name_or_path=str(tiny_dir)),
        RolloutConfig(batch_size=4),
        cfg,
        log_path=tmp_path / f"workers-{workers}.log",
        start_timeout_s=400,
    )


def _batch(group: PolicyWorkers) -> list[SequenceRecord]:
    outs = group.generate(["ab", "cd", "hello", "x", "yz"], SamplingParams(n=2, max_new_tokens=6, seed=5))
    assert [o.prompt for o in outs] == ["ab", "cd", "hello", "x", "yz"]
    adv = [0.9, -0.4, 1.3, -1.1, 0.2, 0.5, -0.7, 1.0, -0.3, 0.8]
    recs = [
        SequenceRecord(o.prompt_token_ids, c.token_ids, c.logprobs, 0.0, f"g{i % 3}")
        for i, o in enumerate(outs)
        for c in o.completions
    ]
    return [
        SequenceRecord(r.prompt_token_ids, r.completion_token_ids, r.old_logprobs, a, r.group)
        for r, a in zip(recs, adv, strict=True)
    ]


def test_sharding_balances_tokens():
    recs = [SequenceRecord([1] * n, [2] * n, [0.0] * n, 0.0) for n in (9, 1, 5, 5, 3, 7)]
    shards = shard_records(recs, 2)
    loads = [sum(len(r.prompt_token_ids) * 2 for r in s) for s in shards]
    assert sorted(len(s) for s in shards) == [3, 3] and abs(loads[0] - loads[1]) <= 4


def test_zero2_two_ranks_match_one_rank_and_failures_are_reported(tiny_dir, tmp_path):
    # One rank: the reference step; the batch is sampled here and replayed on two ranks.
    with _group(tiny_dir, tmp_path, 1) as one:
        info = one.ping()
        assert info[0]["world_size"] == 1 and info[0]["backend"] == "hf" and info[0]["device"] == "cpu"
        records = _batch(one)
        m1 = one.train_step(records)
        lp1 = one.compute_logprobs(records)
        w1 = load_file(one.save_checkpoint(tmp_path / "one") / "hf" / "model.safetensors")
        # A rank that raises reports its traceback and rank; the group is stopped, the caller does not hang.
        bad = [SequenceRecord([1, 2], [10**6], [0.0], 1.0)]  # token id far outside the vocabulary
        with pytest.raises(WorkerError) as err:
            one.train_step(bad)
        assert err.value.rank == 0 and "IndexError" in err.value.error
        with pytest.raises(WorkerError, match="not running"):
            one.ping()
    assert m1["ratio_mean"] == pytest.approx(1.0, abs=1e-4)

    port = free_port()
    with _group(tiny_dir, tmp_path, 2, master_port=port) as two:
        info = two.ping()
        assert [i["rank"] for i in info] == [0, 1] and {i["world_size"] for i in info} == {2}
        # DeepSpeed's CPU all-reduce workspaces (RAM in /dev/shm) are unlinked once both ranks mapped them: nothing
        # of this group is left there even if it is killed below (it used to leak 66 MiB per rank per group).
        assert not list(SHM_DIR.glob(f"{SHM_PREFIX}_{os.getuid()}_*_{port}_*"))
        m2 = two.train_step(records)
        lp2 = two.compute_logprobs(records)
        w2 = load_file(two.save_checkpoint(tmp_path / "two") / "hf" / "model.safetensors")
        assert m2["loss"] == pytest.approx(m1["loss"], rel=1e-5, abs=1e-7)
        assert m2["grad_norm"] == pytest.approx(m1["grad_norm"], rel=1e-5)
        assert m2["tokens"] == m1["tokens"] and m2["sequences"] == m1["sequences"] == 10
        for name in w1:
            torch.testing.assert_close(w2[name], w1[name], atol=1e-6, rtol=0)
        for a, b in zip(lp1, lp2, strict=True):
            assert a == pytest.approx(b, abs=1e-5)
        # Scripted answers cross the protocol with their blocks, split over the ranks, in the prompts' order.
        script = Script(4, ("<in>",), 3, closer="", unclosed="")
        stops = tuple("abcdefghijklmnopqrstuvwxyz")
        scripted = two.generate_scripted(
            ["ab", "cd", "hello"], SamplingParams(n=2, max_new_tokens=4, seed=2, stop=stops), [script] * 3
        )
        assert [o.prompt for o in scripted] == ["ab", "cd", "hello"]
        for o in scripted:
            for c in o.completions:
                assert c.blocks and c.blocks[0].context_ids == o.prompt_token_ids
                assert c.text == "".join(b.prefix + b.completion.text for b in c.blocks)
        # A rank killed outright (as by the OOM killer) is named; the caller gets the error within seconds.
        os.kill(info[1]["pid"], signal.SIGKILL)
        start = time.monotonic()
        with pytest.raises(WorkerError) as err:
            two.generate(["ab"] * 4, SamplingParams(n=1, max_new_tokens=4))
        assert time.monotonic() - start < 60
        assert err.value.rank in (None, 1)
        assert two.proc is None  # the launcher and the surviving rank were stopped


def test_launcher_failure_is_reported_not_hung(tmp_path):
    group = PolicyWorkers(
        ModelConfig(name_or_path=str(tmp_path / "missing-model")),
        RolloutConfig(),
        TrainerConfig(num_workers=1),
        log_path=tmp_path / "w.log",
        start_timeout_s=300,
    )
    with pytest.raises(WorkerError, match="tried"):
        group.start()
    assert group.proc is None
