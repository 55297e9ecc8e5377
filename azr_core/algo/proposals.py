"""From completions to tasks and answers: parse proposals, validate them on the executor, parse solver answers. What
differs per task type is the type's own (azr_core.algo.types); here is what all types share.

Nothing here raises on a malformed completion: every failure becomes a recorded reason (a format failure, a missing
block, an input that is not a literal argument list, a program the executor refused), so one bad sample never stops
a batch. Reasons read `category: detail` like the executor's, so history queries can group on the category. The
proposer reward reads `format_ok` and `valid` from the outcome.

`lenient=True` looks for the fenced blocks anywhere in the completion when the `<think>`/`<answer>` format is broken,
so a small model's valid program can still enter the buffers; its format failure is still recorded (and penalised).
"""

from __future__ import annotations

from collections.abc import Sequence

from azr_core.algo.candidates import (
    FORMAT_REASON,
    Candidate,
    ProposalOutcome,
    SolverAnswer,
    ValidatingExecutor,
    ValidationResultLike,
    answer_region,
    entry_function,
    input_key,
)
from azr_core.algo.tasks import Task, TaskType
from azr_core.algo.types import get as task_type_spec
from azr_core.algo.types.induction import split_induction_pairs
from azr_core.executor.executor import GradeRequest

__all__ = [
    "FORMAT_REASON",
    "Candidate",
    "ProposalOutcome",
    "SolverAnswer",
    "ValidatingExecutor",
    "ValidationResultLike",
    "entry_function",
    "grade_request",
    "input_key",
    "parse_answer",
    "parse_proposal",
    "split_induction_pairs",
    "validate_candidates",
]


def parse_proposal(
    task_type: TaskType | str,
    completion: str,
    *,
    n_inputs: int = 10,
    reference: Task | None = None,
    reference_ids: Sequence[str] = (),
    think_prefilled: bool = True,
    lenient: bool = False,
    rename_entry: bool = True,
    reject_multiple: bool = True,
    min_distinct: int | None = None,
    parsing: str = "reference",
    inputs: str = "expression",
    buffer_broken_format: bool = True,
    reject_revealing_message: bool = False,
) -> Candidate:
    """Turn a proposer completion into a Candidate (deduction/abduction: program + input; induction: inputs + message).

    For induction, `reference` is the program the proposer was shown; the candidate runs on it. `rename_entry` and
    `reject_multiple` are the reference's rules for the entry function (see `entry_function`). `min_distinct`: the
    distinct inputs an induction proposal needs (None: all `n_inputs`); repeats are dropped from the task.
    `parsing`: how the answer is read (`read_answer`). `inputs`: 'expression' (checked here, evaluated in the sandbox)
    or 'literal'. `buffer_broken_format`: a proposal whose format is broken is still parsed and validated, and a valid
    one joins the buffers (its reward is the format error's, as the reference); False: it is rejected.
    `reject_revealing_message`: refuse an induction message that contains the program (the reference does not).

    >>> text = "plan</think><answer>```python\\ndef f(x):\\n    return x*2\\n```\\n```input\\n3\\n```</answer>"
    >>> c = parse_proposal("deduction", text)
    >>> (c.format_ok, c.program, c.input, c.reason)
    (True, 'def f(x):\\n    return x*2', '3', None)
    >>> parse_proposal("abduction", "no tags at all").reason
    'format: expected <think>...</think> then one <answer>...</answer>'
    """
    spec = task_type_spec(task_type)
    refs = tuple(reference_ids)
    format_ok, region, _ = answer_region(completion, think_prefilled=think_prefilled, lenient=lenient, parsing=parsing)
    if region is None or (not format_ok and not buffer_broken_format):
        return Candidate(spec.name, False, reason=FORMAT_REASON, reference_ids=refs)
    return spec.parse(region, Candidate(spec.name, format_ok, reference_ids=refs), reference=reference,
                      n_inputs=n_inputs, min_distinct=min_distinct, rename_entry=rename_entry,
                      reject_multiple=reject_multiple, inputs=inputs,
                      reject_revealing_message=reject_revealing_message)  # fmt: skip


def validate_candidates(
    executor: ValidatingExecutor,
    candidates: Sequence[Candidate],
    *,
    iteration: int,
    shown_fraction: float = 0.5,
    proposal_ids: Sequence[str | None] | None = None,
) -> list[ProposalOutcome]:
    """Run every parsed candidate on the executor (one `validate_many` call for the whole batch) and build tasks.

    deduction/abduction: the program runs on its input; the output becomes the gold answer.
    induction: the reference program runs on each of the N inputs; every one must be valid (as the reference), then
    the pairs are split shown / held out in order.
    """
    ids = list(proposal_ids) if proposal_ids is not None else [None] * len(candidates)
    requests: list[tuple[str, str]] = []
    spans: list[tuple[int, int]] = []
    for c in candidates:
        start = len(requests)
        if c.parsed and c.program is not None:
            requests.extend(task_type_spec(c.task_type).run_requests(c))
        spans.append((start, len(requests)))
    results = list(executor.validate_many(requests)) if requests else []
    if len(results) != len(requests):
        raise RuntimeError(f"executor returned {len(results)} results for {len(requests)} programs")
    outcomes = []
    for c, (start, end), pid in zip(candidates, spans, ids, strict=True):
        if not c.parsed:
            outcomes.append(ProposalOutcome(c, valid=False, reason=c.reason))
        else:
            spec = task_type_spec(c.task_type)
            outcomes.append(spec.outcome(c, results[start:end], iteration=iteration, shown_fraction=shown_fraction,
                                         proposal_id=pid))  # fmt: skip
    return outcomes


def parse_answer(
    task_type: TaskType | str,
    completion: str,
    *,
    think_prefilled: bool = True,
    lenient: bool = False,
    empty_is_format_error: bool = False,
    parsing: str = "reference",
) -> SolverAnswer:
    """Reduce a solver completion to its answer text.

    'reference' parsing: the answer is the last `<answer>` block (whatever the format, so that a learnability
    rollout is graded on it); in it, the last ```output / ```input block, or the bare answer text when it holds none;
    for induction, the last fenced block of any tag, and no fenced block is a format error. 'strict': exactly one
    answer block, its first block of the task's tag (induction: ```python, else the bare text).

    A broken format gives format_ok=False (the solver reward is then the format error's whatever the answer). An
    empty answer is a wrong one (as the reference), or a format error with `empty_is_format_error`.

    >>> parse_answer("deduction", "x doubles</think><answer>```output\\n[1, 2]\\n```</answer>")
    SolverAnswer(format_ok=True, answer='[1, 2]', reason=None)
    >>> a = parse_answer("abduction", "<answer>1</answer>")
    >>> (a.format_ok, a.answer)
    (False, '1')
    >>> parse_answer("induction", "ok</think><answer>```\\ndef f(x):\\n    return x\\n```</answer>").answer
    'def f(x):\\n    return x'
    """
    spec = task_type_spec(task_type)
    format_ok, region, tagged = answer_region(completion, think_prefilled=think_prefilled, lenient=lenient,
                                              parsing=parsing)  # fmt: skip
    if region is None:
        return SolverAnswer(False, None, FORMAT_REASON)
    text, problem = spec.answer_text(region, tagged=tagged, parsing=parsing)
    if problem:
        return SolverAnswer(False, None, problem)
    if not text:
        if empty_is_format_error:
            return SolverAnswer(False, None, f"format: empty answer (no ```{spec.answer_tag} content)")
        return SolverAnswer(format_ok, None, f"parse: empty answer (no ```{spec.answer_tag} block)")
    return SolverAnswer(format_ok, text, None if format_ok else FORMAT_REASON)


def grade_request(task: Task, answer: str) -> GradeRequest:
    """What the executor needs to grade `answer` to `task` (the task type's grading plan: induction is graded on the
    held-out pairs only)."""
    return task_type_spec(task.task_type).grade_request(task, answer)
