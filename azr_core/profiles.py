"""The profiles a run's settings start from (`profile` in the config): differences from the field defaults of
azr_core/config.py, which are the paper's settings. `default` is the paper's algorithm; `cpu-tiny` is small enough for
SmolLM2-135M on two CPU cores, and docs/fidelity.md lists each of its differences with the measurement behind it.
"""

from __future__ import annotations

from typing import Any

PROFILES: dict[str, dict[str, Any]] = {
    "default": {},
    # One iteration of SmolLM2-135M on 2 CPU cores in a few minutes: ~12 proposals, ~12 solves, a few learnability
    # rollouts for the rare valid proposal, short completions, one small update. Seeding is bounded by rounds since
    # almost every early proposal of this model is invalid. Each setting's measured reason is in docs/fidelity.md.
    "cpu-tiny": {
        "run": {"run_dir": "runs/cpu-tiny", "iterations": 30},
        "selfplay": {
            "references_k": 2,
            "induction_inputs": 4,
            # 213 of 234 induction proposals in a 30-iteration run wrote one input four times; 34 of them held 2-3
            # distinct inputs: those become tasks over their distinct inputs instead of invalid proposals.
            "induction_distinct_inputs": 2,
            "learnability_rollouts": 4,
            "batch_per_group": 6,  # 4 left 2 of 30 iterations with every group degenerate (no gradient)
            "degenerate_retries": 2,  # 6 left 6 of 30 so (the identity habit): sample such a batch again
            "prompt_template": "chat",  # an instruct model: its own chat template
            "response_prefill": "skeleton",
            "skeleton_nonempty_blocks": True,
            "skeleton_block_tokens": 48,  # an input or an answer: as the learning bench's probe allows its answers
            "compact_prompts": True,
            "max_prompt_tokens": 1024,
            "lenient_parsing": True,
        },
        "buffers": {"seed_quota": 8, "seed_round_size": 8, "seed_max_rounds": 2},
        "evaluation": {"limit": 16, "max_new_tokens": 160, "template": "chat"},  # minutes, not hours, on 2 cores
        "rewards": {"empty_answer_is_format_error": True},
        # batch_size 48: a stage's prompts in one generate call (propose: 3 types x 6; solve: 18 solves and the
        # learnability rollouts together), whose decode steps cost about the same for 18 rows as for 48.
        "rollout": {"backend": "hf", "temperature": 0.7, "max_new_tokens": 128, "batch_size": 48},
        # One CPU rank: ZeRO has nothing to partition, and stage 2's flat gradient buckets cost a step 1.16x plain
        # AdamW here against 1.02x for stage 0 (bench/bench_policy.py). lr: the paper's 1e-6 is for 7B models.
        # No entropy bonus (paper: 0.001): then sequences with zero advantage can be left out of the passes exactly.
        # The sampler's log-probs as the old ones: on one CPU rank the sampler is the trainer's own module (equal to
        # 1e-4, tests/test_policy_rollout.py), and recomputing them cost 14-20 s of a ~130 s iteration here.
        "trainer": {
            "micro_batch_size": 4,
            "lr": 3e-5,
            "entropy_coef": 0.0,
            "zero_stage": 0,
            "recompute_old_logprobs": False,
        },
    },
}
