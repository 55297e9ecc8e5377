"""One typed configuration for a run: every default visible here, every field documented.

Resolution order (later wins): the profile's settings (`default` = the paper's; `cpu-tiny` = small enough for an
iteration of SmolLM2-135M on 2 CPU cores in minutes), a YAML file, then `key.sub=value` overrides whose values are
read as YAML scalars. Unknown keys and wrong types raise ConfigError naming the key. The resolved config is written
into the run folder as `config.yaml`, and loading that file gives the same config back.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, Field, ValidationError, field_validator

from azr_core.common.config_base import ConfigError, Section, explain
from azr_core.common.yaml_overrides import deep_merge, parse_override, parse_yaml, set_path
from azr_core.eval.config import QUICK_SUITE, eval_default
from azr_core.executor.config import ExecutorConfig
from azr_core.policy.config import ModelConfig, RolloutConfig, TrainerConfig
from azr_core.profiles import PROFILES
from azr_core.store.config import StoreConfig
from azr_core.store.layout import RESOLVED_CONFIG_NAME  # noqa: F401 - the run folder's name for it, re-exported
from azr_core.tracking.store import TrackingConfig

_Section = Section  # the one strict rule of every section (azr_core/common/config_base.py)


class RunConfig(_Section):
    """Where the run lives, how long it lasts, how it is seeded."""

    run_dir: str = Field("runs/azr", description="Folder holding everything of the run (tables, checkpoints, config).")
    name: str | None = Field(None, description="Human name of the run (MLflow run name); None derives one.")
    seed: int = Field(0, description="Seed of the self-play RNG (reference sampling, solver batches, splits).")
    iterations: int = Field(500, ge=0, description="Training iterations (one optimiser step each) in the whole run.")
    max_iterations_per_session: int | None = Field(
        None, ge=1, description="Stop a flow run after this many iterations; the next (scheduled) run resumes."
    )
    max_wall_s: float | None = Field(None, gt=0, description="Stop a flow run after this wall time (seconds).")
    keep_checkpoints: int = Field(
        2, ge=1, description="Newest checkpoints kept in run_dir/checkpoints (each holds the optimiser state)."
    )


class SelfPlayConfig(_Section):
    """The algorithm: how tasks are proposed, split, estimated and batched (Absolute Zero paper settings)."""

    task_types: list[str] = Field(
        ["deduction", "abduction", "induction"],
        min_length=1,
        description="The task types the run proposes and solves, in this order (TRR++ groups, batches, metrics). "
        "The paper's three by default; a type of your own is a module registered with azr_core.algo.types.register "
        "before the run starts.",
    )

    @field_validator("task_types")
    @classmethod
    def _distinct_types(cls, names: list[str]) -> list[str]:
        repeated = sorted({n for n in names if names.count(n) > 1})
        if repeated:
            raise ValueError(f"task types named twice: {', '.join(repeated)}; name each type once")
        return names

    references_k: int = Field(6, ge=0, description="K reference triplets shown to a deduction/abduction proposer.")
    reference_sampling: Literal["uniform", "distinct_programs"] = Field(
        "uniform",
        description="How the K references are drawn from a type's buffer. 'uniform': K tasks uniformly without "
        "replacement (the reference). 'distinct_programs': K different programs, each drawn uniformly among the "
        "buffer's programs, so one program buffered with many inputs is not shown K times.",
    )
    induction_inputs: int = Field(
        10, ge=2, description="N inputs an induction proposer must write; all N must parse and run (as the reference)."
    )
    induction_distinct_inputs: int | None = Field(
        None,
        ge=2,
        description="Distinct inputs an induction proposal must hold: a repeated input value is dropped (the first "
        "kept) and at least this many must remain; None: all N. The reference neither checks nor drops repeats (its "
        "held-out pairs can then repeat the shown ones and grade nothing).",
    )
    induction_shown_fraction: float = Field(
        0.5,
        gt=0.0,
        lt=1.0,
        description="Share of an induction task's N pairs shown to the solver: the first int(N * share) (rounded "
        "down), in the proposer's order (the reference shows the first N // 2); the rest are held out for grading.",
    )
    learnability_rollouts: int = Field(8, ge=1, description="n solver rollouts per new task to estimate learnability.")
    batch_per_group: int = Field(
        64,
        ge=1,
        description="Prompts per (role, task type) group: proposer prompts per type and solver tasks per type "
        "(each sampled rollout.n times).",
    )
    prompt_template: Literal["raw", "chat"] = Field(
        "raw",
        description="'raw': the paper's template for base models ('A conversation between User and Assistant ... "
        "User: {prompt}\\nAssistant: <think>'); 'chat': the model's own chat template with that text as system prompt.",
    )
    response_prefill: Literal["think", "skeleton", "none"] = Field(
        "think",
        description="What opens the assistant's answer. 'think': '<think>' (the paper). 'skeleton': an empty think "
        "block and the answer's blocks opened one by one for the model, each ended at its closing fence, the answer "
        "closed in code (azr_core.selfplay.sampling; a deviation for small models: the format is given, the "
        "content is learned; only what the model wrote is trained on). 'none': nothing.",
    )
    skeleton_block_tokens: int = Field(
        64,
        ge=1,
        description="Under 'skeleton': most new tokens of a value block (an input, an output, the message); a program "
        "block may use rollout.max_new_tokens.",
    )
    degenerate_retries: int = Field(
        0,
        ge=0,
        description="When every TRR++ group of an iteration's batch is degenerate (all advantages zero: no gradient), "
        "sample a new batch (propose, validate, solve, reward) up to this many times; the rollouts of all attempts "
        "form one batch and their advantages are computed together. Paper and reference: 0 (such an iteration takes "
        "no gradient). A deviation in the spirit of DAPO's dynamic sampling, for small batches.",
    )
    skeleton_nonempty_blocks: bool = Field(
        False,
        description="Under 'skeleton': the first token of each block may not close it or leave it blank (end of "
        "sequence, whitespace, a fence's backtick are suppressed at that one step; log-probs stay the model's own). "
        "SmolLM2-135M otherwise closed nearly every induction ```input block empty: 1 valid induction proposal in 180. "
        "hf rollout backend only.",
    )
    compact_prompts: bool = Field(
        False,
        description="Shorter prompts (every section of the reference's, in fewer words): fewer tokens to generate "
        "from and train on. The reference's structure in full when false.",
    )
    worked_example: bool = Field(
        False,
        description="Add a complete answer (a working program and input in the <think>/<answer> format) to the "
        "proposer prompts. The reference shows only a placeholder program of the format; a complete one invites "
        "copying it.",
    )
    max_prompt_tokens: int = Field(
        6144,
        ge=16,
        description="Prompts longer than this many tokens are dropped before generation and counted "
        "(`filtered_prompts/...` metrics), never truncated (paper: 6144).",
    )
    rename_entry_function: bool = Field(
        True, description="A proposal whose one function is not named `f` has it renamed to `f` (as the reference)."
    )
    reject_multiple_functions: bool = Field(
        True,
        description="Reject a proposal with more than one top-level function (the reference rejects any second "
        "`def`, nested ones too, against its own prompt; nested helpers are allowed here).",
    )
    lenient_parsing: bool = Field(
        False,
        description="Take fenced blocks from a completion whose <think>/<answer> format is broken (the format "
        "failure is still recorded and penalised), so a small model's valid programs can reach the buffers.",
    )
    answer_parsing: Literal["reference", "strict"] = Field(
        "reference",
        description="How a completion's answer is read. 'reference': the format is right when it starts with "
        "<think>...</think> then <answer>...</answer>; the last <answer> block is read whatever the format; a solver's "
        "last ```output/```input block is graded; an induction answer is the last fenced block of any tag (none is "
        "a format error). 'strict': exactly one <answer> block, its first block of the task's tag, and only a "
        "```python fence is code.",
    )
    buffer_broken_format: bool = Field(
        True,
        description="A proposal whose <think>/<answer> format is broken is still validated, and a valid one joins the "
        "buffers; its proposer reward is rewards.format_error (the reference). False: such a proposal is invalid.",
    )
    reject_revealing_message: bool = Field(
        False,
        description="Refuse an induction proposal whose message contains the program's text (the reference accepts "
        "it; the solver then sees the program).",
    )
    learnability_needs_format: bool = Field(
        False,
        description="A learnability rollout counts as solved only when its format is right too. The reference "
        "grades the answer of its last <answer> block alone (false); a grading that crashed in the sandbox is left "
        "out of the solve rate either way.",
    )
    advantage_std_eps: float = Field(
        1e-6, gt=0.0, description="A group whose reward std is below this gets zero advantages (no division by ~0)."
    )


class BuffersConfig(_Section):
    """Seeding: a bounded phase before the first training iteration (committed with it, never paid again). The current
    model proposes with no update; each valid task joins the seed set at once, so later seed prompts draw their
    references from it. Deduction and abduction share one seed set (as the reference); induction seeds take their
    programs from it. Every valid task is kept afterwards (exact duplicates aside): no cap. Solver batches take the
    iteration's new tasks first, then fill uniformly (azr_core.algo.buffers)."""

    seed_quota: int = Field(
        256,
        ge=1,
        description="Seeding stops once the shared deduction/abduction seed set, and then the induction set, hold "
        "this many tasks (reference: train_batch_size 64 x seed_batch_factor 4).",
    )
    seed_round_size: int = Field(64, ge=1, description="Proposals generated in one seeding round.")
    seed_max_rounds: int = Field(
        100,
        ge=0,
        description="Seeding rounds at most, for each of the two sets; then training starts with what it has "
        "(the zero triplet at least).",
    )


class RewardsConfig(_Section):
    """Reward values (paper: 1 / -0.5 / -1 for the solver; learnability for the proposer)."""

    correct: float = Field(1.0, description="Solver: format right and answer correct.")
    wrong_answer: float = Field(-0.5, description="Solver: format right, answer wrong.")
    format_error: float = Field(-1.0, description="Solver or proposer: the completion's format is wrong.")
    invalid_proposal: float = Field(-1.0, description="Proposer: the proposal fails validation.")
    empty_answer_is_format_error: bool = Field(
        False,
        description="Solver: an empty answer counts as a format error (format_error) instead of a wrong answer "
        "(wrong_answer, as the reference). Under the answer skeleton a model that writes nothing has not answered.",
    )
    unlearnable: float = Field(
        0.0, description="Proposer: valid but solved always or never (paper 0; the reference code uses -0.5)."
    )
    known_task: float | None = Field(
        None,
        description="Proposer: a valid proposal that is an exact copy of a task already in the buffers (a reference, "
        "the zero triplet). None: its learnability reward, as the paper and the reference. A value below `unlearnable` "
        "makes copying worth less than any new valid task and more than an invalid one. Measured on cpu-tiny: without "
        "it SmolLM2-135M collapsed onto re-proposing the identity zero triplet (60 of 60 valid deduction proposals of "
        "iterations 1-10); with -0.5 it left the identity but proposed no valid deduction or abduction task at all in "
        "iterations 2-4; with -0.1 it made more new deduction and abduction tasks (7 and 24 in 30 iterations "
        "instead of 0 and 3) but fewer valid induction proposals (60 of 180 instead of 172 of 228) and no larger "
        "probe gain, so cpu-tiny keeps None.",
    )

    known_program: float | None = Field(
        None,
        description="Proposer: a valid deduction/abduction proposal whose program is already in the buffers with any "
        "input (the same program once comments, docstrings and layout are set aside: "
        "azr_core.algo.proposer_measures.program_key), a copy of a program rather than of a task. None: its "
        "learnability reward (the paper and the reference). A deviation to measure against copying.",
    )


class EvaluationConfig(_Section):
    """Evaluation of each model version the run registers (every `tracking.register_every` iterations, and the last
    iteration of each flow run). The commit (or the flow's closing register) task emits the Prefect event
    `azr.model.registered`; the `evaluate` deployment's trigger (prefect.yaml) runs the evaluation as a flow run of
    its own, so training neither waits for it nor fails with it."""

    on_register: bool = Field(True, description="Announce each registered version for evaluation (the event).")
    suite: str = Field(QUICK_SUITE, description="Quick suite: benchmarks (names or a suite) to run.")
    limit: int = Field(64, ge=1, description="First N items of each benchmark of the quick suite.")
    max_new_tokens: int = Field(eval_default("max_new_tokens"), ge=1, description="Most tokens generated per answer.")
    template: Literal["raw", "chat"] = Field(
        eval_default("template"), description="Evaluation prompt template (raw: the paper's)."
    )
    promote: bool = Field(
        True,
        description="After the evaluation, run the promotion gate on the version, judged on this quick suite: the "
        "first version becomes champion, later ones must beat it (paired test).",
    )


class AZRConfig(Section):
    """The whole configuration of a run."""

    profile: str = Field(
        "default",
        description="Profile the settings started from (see azr_core/profiles.py): default, cpu-tiny, and the "
        "reference's runs azr-coder-7b, azr-coder-3b, azr-coder-14b, azr-7b, azr-14b, azr-llama-8b.",
    )
    run: RunConfig = Field(default_factory=RunConfig, description=RunConfig.__doc__)
    selfplay: SelfPlayConfig = Field(default_factory=SelfPlayConfig, description=SelfPlayConfig.__doc__)
    buffers: BuffersConfig = Field(default_factory=BuffersConfig, description=BuffersConfig.__doc__)
    rewards: RewardsConfig = Field(default_factory=RewardsConfig, description=RewardsConfig.__doc__)
    store: StoreConfig = Field(default_factory=StoreConfig, description=StoreConfig.__doc__)
    executor: ExecutorConfig = Field(default_factory=ExecutorConfig, description=ExecutorConfig.__doc__)
    model: ModelConfig = Field(default_factory=ModelConfig, description=ModelConfig.__doc__)
    rollout: RolloutConfig = Field(default_factory=RolloutConfig, description=RolloutConfig.__doc__)
    trainer: TrainerConfig = Field(default_factory=TrainerConfig, description=TrainerConfig.__doc__)
    tracking: TrackingConfig = Field(default_factory=TrackingConfig, description=TrackingConfig.__doc__)
    evaluation: EvaluationConfig = Field(default_factory=EvaluationConfig, description=EvaluationConfig.__doc__)

    def to_yaml(self) -> str:
        """The resolved config as YAML (every field, defaults included)."""
        return yaml.safe_dump(self.model_dump(mode="json"), sort_keys=False, allow_unicode=True)


def _explain(exc: ValidationError) -> str:
    return explain(exc, AZRConfig)


def build_config(data: Mapping[str, Any]) -> AZRConfig:
    """Validate a plain dict into an AZRConfig, with errors that name keys."""
    try:
        return AZRConfig.model_validate(dict(data))
    except ValidationError as exc:
        raise ConfigError(_explain(exc)) from None


def load_config(
    path: str | Path | None = None, overrides: Iterable[str] = (), *, profile: str | None = None
) -> AZRConfig:
    """Resolve a config: profile, then the YAML file at `path`, then `key.sub=value` overrides.

    The profile is taken from a `profile=` override, else the file's `profile:` key, else `profile`, else `default`.
    """
    file_data: dict[str, Any] = {}
    if path is not None:
        try:
            loaded = parse_yaml(Path(path).read_text(encoding="utf-8"))
        except OSError as exc:
            raise ConfigError(f"cannot read config file {path}: {exc}") from None
        except yaml.YAMLError as exc:
            raise ConfigError(f"config file {path} is not valid YAML: {exc}") from None
        if loaded is not None and not isinstance(loaded, dict):
            raise ConfigError(f"config file {path} must hold a mapping of sections, not {type(loaded).__name__}")
        file_data = loaded or {}
    over_data: dict[str, Any] = {}
    for item in overrides:
        keys, value = parse_override(item)
        set_path(over_data, keys, value)
    chosen = over_data.get("profile", file_data.get("profile", profile or "default"))
    if chosen not in PROFILES:
        raise ConfigError(f"profile: unknown profile {chosen!r}; known: {', '.join(PROFILES)}")
    data = deep_merge(deep_merge(PROFILES[chosen], file_data), over_data)
    data["profile"] = chosen
    return build_config(data)


def config_reference(model: type[BaseModel] = AZRConfig, prefix: str = "") -> list[tuple[str, str, str]]:
    """(key, default, description) for every leaf setting: the documentation `--help` and the README can show."""
    rows = []
    for name, info in model.model_fields.items():
        ann = info.annotation
        if isinstance(ann, type) and issubclass(ann, BaseModel):
            rows.extend(config_reference(ann, prefix + name + "."))
        else:
            default = info.get_default(call_default_factory=True)
            rows.append((prefix + name, repr(default), info.description or ""))
    return rows
