"""What a task type is: one object that owns everything the self-play loop does differently per type.

The loop (azr_core.selfplay), the prompt renderer (azr_core.algo.prompts) and the proposal/answer dispatch
(azr_core.algo.proposals) never branch on a type's name: they ask the type's `TaskTypeSpec`. A new type is one subclass
in one module, registered with `azr_core.algo.types.register` and enabled by `selfplay.task_types`.

`ProgramTaskType` is the shared base of the types whose proposer writes a program and one input (deduction,
abduction): they differ only in their prompt wording, the block a solver answers in, and how an answer is graded.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, ClassVar, Literal

from azr_core.algo.candidates import (
    Candidate,
    ProposalOutcome,
    ValidationResultLike,
    entry_function,
    input_key,
    with_changes,
)
from azr_core.algo.prompt_text import program_proposer
from azr_core.algo.tasks import Task, seed_tasks
from azr_core.executor.executor import GradeRequest
from azr_core.lang.parsing import InputError, extract_fenced

if TYPE_CHECKING:
    from azr_core.algo.buffers import TaskBuffers

#: How a type takes part in seeding: "programs" types share one seed set of programs (each valid seed program becomes
#: a task of every such type); "inputs" types write inputs for those programs afterwards; None: no seeding (the
#: type's buffer starts from its zero task alone).
SeedRole = Literal["programs", "inputs"] | None


class TaskTypeSpec:
    """One task type. Subclasses set the class attributes and implement the methods marked as such."""

    #: The type's name: the `task_type` column, the TRR++ group (`propose/<name>`, `solve/<name>`), the metrics.
    name: ClassVar[str]
    #: The fenced block a solver's answer is read from (```output, ```input, ```python).
    answer_tag: ClassVar[str]
    #: True when the proposer writes the program (the copy measures and `rewards.known_program` apply).
    proposes_program: ClassVar[bool] = True
    seed_role: ClassVar[SeedRole] = None

    def __repr__(self) -> str:
        return f"<task type {self.name}>"

    # ---- prompts ----------------------------------------------------------------------------------------------------

    def proposer_text(
        self, references: Sequence[Task], *, n_inputs: int, compact: bool, worked_example: bool, timeout_s: float
    ) -> str:
        """The user message asking the proposer for a new task of this type."""
        raise NotImplementedError

    def solver_text(self, task: Task, *, compact: bool, timeout_s: float) -> str:
        """The user message asking the solver to solve `task` (its known side only)."""
        raise NotImplementedError

    def propose_blocks(self, n_inputs: int) -> tuple[str, ...]:
        """The fenced blocks of a proposer's answer, in order (the answer skeleton opens them)."""
        return ("python", "input")

    def solve_blocks(self) -> tuple[str, ...]:
        """The fenced blocks of a solver's answer."""
        return (self.answer_tag,)

    # ---- proposals --------------------------------------------------------------------------------------------------

    def references(self, buffers: TaskBuffers, rng: random.Random, *, k: int, distinct_programs: bool) -> list[Task]:
        """What the proposer is shown: K reference tasks of this type (subclasses may draw otherwise)."""
        return buffers.sample_references(self.name, k, rng, distinct_programs=distinct_programs)

    def parse(self, region: str, base: Candidate, *, reference: Task | None, **options: Any) -> Candidate:
        """The candidate in the answer text `region` (`base` carries the type, format verdict and reference ids);
        `options` are `azr_core.algo.proposals.parse_proposal`'s settings."""
        raise NotImplementedError

    def run_requests(self, c: Candidate) -> list[tuple[str, str]]:
        """The (program, input) runs that validate a parsed candidate."""
        return [(c.program or "", c.input or "")]

    def outcome(
        self, c: Candidate, results: Sequence[ValidationResultLike], *, iteration: int, shown_fraction: float,
        proposal_id: str | None,
    ) -> ProposalOutcome:  # fmt: skip
        """The task a parsed candidate yields from its runs' results, or why not."""
        raise NotImplementedError

    def from_seed(self, task: Task) -> Task:
        """This type's task on a seed program (program, input, output) of the shared seed set."""
        return Task(self.name, task.program, task.input, task.output, iteration=task.iteration,
                    proposal_id=task.proposal_id, reference_ids=task.reference_ids)  # fmt: skip

    def zero_tasks(self) -> list[Task]:
        """The task(s) the type's buffer starts from: the paper's zero triplet for a built-in type (the identity on
        one input; induction's with one pair shown and one held out). A type of its own overrides it."""
        return [t for t in seed_tasks() if t.task_type == self.name]

    # ---- answers ----------------------------------------------------------------------------------------------------

    def answer_text(self, region: str, *, tagged: bool, parsing: str) -> tuple[str, str | None]:
        """(the answer's text, a format problem or None) from the answer `region`. 'reference': the last block of the
        answer tag, else the bare answer; 'strict': its first block. Text outside an `<answer>` (`tagged` False,
        lenient parsing) counts only as an explicit block."""
        blocks = extract_fenced(region, self.answer_tag)
        text = (blocks[-1] if parsing == "reference" else blocks[0]).strip() if blocks else region.strip()
        return ("" if not tagged and not blocks else text), None

    def grade_request(self, task: Task, answer: str) -> GradeRequest:
        """What the executor needs to grade `answer` to `task`."""
        raise NotImplementedError


class ProgramTaskType(TaskTypeSpec):
    """A type whose proposer writes a program `f` and one input (deduction, abduction): the run gives the output.
    A subclass sets its wording (`purpose`, `hard`) and its solver's request; the executor's grading plan of the same
    name grades it."""

    proposes_program = True
    seed_role: ClassVar[SeedRole] = "programs"
    #: What the test subject will do with the program and input (the proposer prompt's purpose, a sentence or two).
    purpose: ClassVar[str]
    #: What the difficulty criterion of the proposer prompt is about.
    hard: ClassVar[str]

    def proposer_text(
        self, references: Sequence[Task], *, n_inputs: int, compact: bool, worked_example: bool, timeout_s: float
    ) -> str:
        return program_proposer(references, purpose=self.purpose, hard=self.hard, timeout_s=timeout_s,
                                compact=compact, worked_example=worked_example)  # fmt: skip

    def grade_request(self, task: Task, answer: str) -> GradeRequest:
        plan = str(self.name)  # the executor's plan of the same name: deduction or abduction
        return GradeRequest(plan, answer, program=task.program, input=task.input, output=task.output)  # type: ignore[arg-type]

    def parse(self, region: str, base: Candidate, *, reference: Task | None, **options: Any) -> Candidate:
        programs = extract_fenced(region, "python")
        found_inputs = extract_fenced(region, "input")
        if not programs:
            return with_changes(base, reason="parse: missing ```python block")
        program, reason = entry_function(programs[0], rename=options.get("rename_entry", True),
                                         reject_multiple=options.get("reject_multiple", True))  # fmt: skip
        if reason:
            return with_changes(base, program=program, reason=reason)
        if not found_inputs:
            return with_changes(base, program=program, reason="parse: missing ```input block")
        inp = found_inputs[0].strip()
        try:
            input_key(inp, options.get("inputs", "expression"))
        except InputError as exc:
            return with_changes(base, program=program, input=inp, reason=f"input: {exc}")
        return with_changes(base, program=program, input=inp)

    def outcome(
        self, c: Candidate, results: Sequence[ValidationResultLike], *, iteration: int, shown_fraction: float,
        proposal_id: str | None,
    ) -> ProposalOutcome:  # fmt: skip
        res = results[0]
        if not res.valid:
            return ProposalOutcome(c, valid=False, reason=res.reason or "execution: invalid")
        task = Task(self.name, c.program or "", c.input, res.output, iteration=iteration, proposal_id=proposal_id,
                    reference_ids=c.reference_ids)  # fmt: skip
        return ProposalOutcome(c, valid=True, reason=None, task=task, output=res.output)
