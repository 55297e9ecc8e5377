"""The profiles a run's settings start from (`profile` in the config): differences from the field defaults of
azr_core/config.py, which are the paper's settings. `default` is the paper's algorithm on the embedded SmolLM2-135M;
`cpu-tiny` is small enough for SmolLM2-135M on two CPU cores, and docs/fidelity.md lists each of its differences with
the measurement behind it. The `azr-*` profiles are the reference code's self-play runs (its `scripts/selfplay/*.sh`,
branch `paper`): the paper's algorithm with each script's model, GPUs and memory settings.
"""

from __future__ import annotations

from typing import Any

# The reference's self-play runs (github LeapLabTHU/Absolute-Zero-Reasoner, branch `paper`, scripts/selfplay/). Its
# six scripts share every algorithm setting (those are azr_core/config.py's defaults, so these profiles inherit them)
# and differ in the model, the GPUs (trainer.n_gpus_per_node on one node, here `trainer.num_workers`: one rank per GPU),
# the experiment name, and for Llama in three settings of its own (`extra`). Ulysses sequence parallelism (2/4/8) and
# vLLM tensor parallelism (2/4) also differ between scripts; neither has an equivalent here (below).
PAPER_RUNS: dict[str, dict[str, Any]] = {
    "azr-coder-7b": {"script": "coder7b.sh", "model": "Qwen/Qwen2.5-Coder-7B", "gpus": 4, "name": "azr_coder7b"},
    "azr-coder-3b": {"script": "coder3b.sh", "model": "Qwen/Qwen2.5-Coder-3B", "gpus": 2, "name": "azr_coder3b"},
    "azr-coder-14b": {"script": "coder14b.sh", "model": "Qwen/Qwen2.5-Coder-14B", "gpus": 8, "name": "azr_coder14b"},
    "azr-7b": {"script": "7b.sh", "model": "Qwen/Qwen2.5-7B", "gpus": 4, "name": "azr_7b"},
    "azr-14b": {"script": "14b.sh", "model": "Qwen/Qwen2.5-14B", "gpus": 8, "name": "azr_14b"},
    "azr-llama-8b": {
        "script": "llama.sh",
        "model": "meta-llama/Llama-3.1-8B",
        "gpus": 4,
        "name": "azr_llama",
        "extra": {
            # seed_batch_factor 1 instead of 4: seeding stops at 64 x 1 tasks
            "buffers": {"seed_quota": 64},
            # reject_multiple_functions False: several top-level functions are accepted. Its f_replace_location
            # any_last (rename the last function to f when none is f) has no setting: the first one is renamed here.
            "selfplay": {"reject_multiple_functions": False},
        },
    },
}

# What each script sets and how it lands here. Equal to the field defaults (inherited): train_batch_size 64 ->
# selfplay.batch_per_group; max_prompt_length 6144 -> selfplay.max_prompt_tokens; max_response_length 8096 ->
# rollout.max_new_tokens; lr 1e-6 -> trainer.lr; rollout n 1, temperature 1.0 -> rollout.n, rollout.temperature;
# no KL loss, kl_coef 0 -> trainer.kl_coef 0; ppo_mini_batch_size 128, which the reference's main overrides to the
# whole 6 x 64 batch -> trainer.mini_batch_size None (one step per iteration); reward n_samples 8 ->
# selfplay.learnability_rollouts; seed_batch_factor 4 -> buffers.seed_quota 64 x 4 = 256 (seed rounds of
# train_batch_size -> buffers.seed_round_size 64); pretrained_tokenizer (the plain-text template) ->
# selfplay.prompt_template raw; ast_check -> executor.static_checks; project_name 'azr' -> tracking.experiment;
# save_freq/test_freq 10 -> tracking.register_every 10 (a model version, evaluated on registration).
# Set by _paper_run: model.path -> model.name_or_path; n_gpus_per_node x nnodes -> trainer.num_workers;
# ppo_micro_batch_size_per_gpu 16 -> trainer.micro_batch_size; enable_gradient_checkpointing ->
# trainer.gradient_checkpointing; rollout name vllm -> rollout.backend; gpu_memory_utilization 0.4 ->
# rollout.gpu_memory_utilization; the engine's length, prompt + response = 6144 + 8096 -> rollout.max_model_len;
# experiment_name -> run.name.
# No equivalent here (docs/fidelity.md lists them too): ulysses_sequence_parallel_size, tensor_model_parallel_size,
# max_num_batched_tokens, enforce_eager, free_cache_engine, use_remove_padding, the FSDP offload switches,
# log_prob_micro_batch_size_per_gpu (old log-probs are recomputed in trainer.micro_batch_size passes), include_ref and
# the reference model's offload (no reference model: KL is off), critic_warmup, total_epochs 30 (the reference's step
# count is 30 x the batches of its train_files, a file it does not train on; here run.iterations), val files/batch size
# and val_before_train (evaluation is the `evaluation` section), remove_previous_ckpt_in_save and
# del_local_ckpt_after_load (a checkpoint per iteration here, run.keep_checkpoints of them kept), resume_mode auto (runs
# always resume), logger/wandb settings (MLflow), reward_fn extraction_type and math_metric, the seed file paths and
# pretrain_pred_steps (seeding runs inside the run), executor qwq, banned_keywords_for_errors_and_exceptions (no
# error-prediction task), the four intrinsic rewards (complexity, edit distance, Halstead, answer diversity: all off in
# the scripts) and intrinsic_combine_method, pred_data_mix_strategy max_new and gen_data_probabilities_strategy uniform
# (the fixed behaviour here), valid_program_filter all, max_programs 16384 (no buffer cap here), batched_estimate,
# composite functions (off), remove_comments/remove_after_return/remove_print/use_original_code_as_ref,
# code_f_reward_type binary (the fixed behaviour here), update_iteration 1, data shuffle, debug.


def _paper_run(profile: str, *, script: str, model: str, gpus: int, name: str, extra: dict | None = None) -> dict:
    """A reference script's run: default's algorithm, with the script's model, GPUs and memory settings."""
    settings: dict[str, Any] = {
        "model": {"name_or_path": model},
        "run": {"run_dir": f"runs/{profile}", "name": name},
        "rollout": {"backend": "vllm", "gpu_memory_utilization": 0.4, "max_model_len": 6144 + 8096},
        # 16 sequences per pass as the script's per-GPU micro-batch; there they are spread over a Ulysses group (each
        # GPU holds a part of every sequence), here a rank holds whole sequences: lower it if memory runs out (the
        # update is the same, its token mean does not depend on the micro-batch).
        "trainer": {"num_workers": gpus, "micro_batch_size": 16, "gradient_checkpointing": True},
    }
    for section, values in (extra or {}).items():
        settings[section] = {**settings.get(section, {}), **values}
    return settings


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
            # The list of what the checks refuse (issue: shown as enforced) is ~650 tokens of a proposer prompt.
            "max_prompt_tokens": 2048,
            "lenient_parsing": True,
        },
        "buffers": {"seed_quota": 8, "seed_round_size": 8, "seed_max_rounds": 2},
        "evaluation": {"limit": 16, "max_new_tokens": 160, "template": "chat"},  # minutes, not hours, on 2 cores
        "rewards": {"empty_answer_is_format_error": True},
        # batch_size 48: a stage's prompts in one generate call (propose: 3 types x 6; solve: 18 solves and the
        # learnability rollouts together), whose decode steps cost about the same for 18 rows as for 48.
        # Temperature: the reference's 1.0 (inherited). Under the reference's rules 10 iterations at 1.0 against 0.7:
        # valid deduction/abduction proposals 44+41 of 120 against 52+50, novel ones 10 against 1, the probe's gain
        # the same (docs/fidelity.md, the lever table).
        "rollout": {"backend": "hf", "max_new_tokens": 128, "batch_size": 48},
        # One CPU rank: ZeRO has nothing to partition, and stage 2's flat gradient buckets cost a step 1.16x plain
        # AdamW here against 1.02x for stage 0 (bench/bench_policy.py). lr: the paper's 1e-6 is for 7B models.
        # No entropy bonus (paper: 0.001): then sequences with zero advantage can be left out of the passes exactly.
        # The sampler's log-probs as the old ones: on one CPU rank the sampler is the trainer's own module (equal to
        # 1e-4, tests/test_policy_rollout.py), and recomputing them cost 14-20 s of a ~130 s iteration here.
        # micro_batch_size 6 = selfplay.batch_per_group: a group's sequences go through the update in one pass, so
        # the prompt prefix they share runs once (with 4, a proposer group's ~900 shared tokens ran twice).
        "trainer": {
            "micro_batch_size": 6,
            "lr": 3e-5,
            "entropy_coef": 0.0,
            "zero_stage": 0,
            "recompute_old_logprobs": False,
        },
    },
    **{name: _paper_run(name, **run) for name, run in PAPER_RUNS.items()},
}
