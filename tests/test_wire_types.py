"""The types that cross between the loop, the client and the worker processes are plain data: importing them (and the
client and the policy interface) does not import torch, so the loop needs no DeepSpeed engine to build a batch."""

from __future__ import annotations

import subprocess
import sys

from stackutil import REPO


def test_wire_types_the_client_and_the_policy_interface_import_without_torch():
    code = (
        "import sys\n"
        "from azr_core.policy.rollout.base import SamplingParams, Completion, PromptOutput, Script\n"
        "from azr_core.policy.trainer.records import SequenceRecord, split_micro_batches, summarize\n"
        "from azr_core.policy.interface import Policy, Trainable\n"
        "from azr_core.policy.trainer.client import PolicyWorkers\n"
        "print(sorted(m for m in ('torch', 'deepspeed', 'transformers') if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == "[]", out.stdout


def test_summarize_merges_ranks_as_the_engine_reports_them():
    from azr_core.policy.trainer.records import SequenceRecord, split_micro_batches, summarize

    same = {"sequences": 1.0, "grad_norm": 2.0, "step": 1.0}
    ranks = [
        {"loss": 1.0, "tokens": 3.0, "pg_loss_sum": 3.0, **same},
        {"loss": 2.0, "tokens": 1.0, "pg_loss_sum": 1.0, **same},
    ]
    m = summarize(ranks)
    assert m["tokens"] == 4.0 and m["pg_loss"] == 1.0 and m["grad_norm"] == 2.0 and m["step"] == 1.0
    recs = [SequenceRecord([1], [2], [0.0], 0.0, g) for g in "aaabba"]
    assert [[r.group for r in c] for c in split_micro_batches(recs, 2)] == [["a", "a"], ["a"], ["b", "b"], ["a"]]
