"""A task type is one unit (azr_core.algo.types): a fourth type, defined here in one class, runs a whole iteration
end to end (propose, validate in the sandbox, solve, grade, TRR++, update, commit) with nothing else changed."""

from __future__ import annotations

import ast
from collections.abc import Sequence

import pytest

from azr_core.algo import types as task_types
from azr_core.algo.candidates import Candidate, ProposalOutcome, ValidationResultLike
from azr_core.algo.prompt_text import fence, program_proposer
from azr_core.algo.tasks import SEED_INPUT, SEED_PROGRAM, Task
from azr_core.algo.types import ProgramTaskType
from azr_core.config import ConfigError, load_config
from azr_core.executor.executor import GradeRequest
from azr_core.selfplay.iteration import run_iteration
from azr_core.store import connect
from tests.scripted import ScriptedPolicy, make_session

pytestmark = pytest.mark.sandbox


class TypeOf(ProgramTaskType):
    """program + input -> the name of the type `f` returns (`'int'`): a program type with its own gold and prompts."""

    name = "typeof"
    answer_tag = "output"
    seed_role = None  # no seeding: the buffer starts from the zero task

    def proposer_text(self, references, *, n_inputs, compact, worked_example, timeout_s):
        return program_proposer(references, purpose="A test subject must name the type of what it returns.",
                                hard="naming the returned type", timeout_s=timeout_s, compact=compact)  # fmt: skip

    def solver_text(self, task, *, compact, timeout_s):
        return (f"# Task: Name the type of the value `f` returns, as a string, in a fenced output block.\n\n"
                f"{fence('python', task.program)}\n{fence('input', task.input or '')}\n")  # fmt: skip

    def outcome(
        self, c: Candidate, results: Sequence[ValidationResultLike], *, iteration, shown_fraction, proposal_id
    ) -> ProposalOutcome:
        out = super().outcome(c, results, iteration=iteration, shown_fraction=shown_fraction, proposal_id=proposal_id)
        if not out.valid or out.task is None:
            return out
        gold = repr(type(ast.literal_eval(out.task.output or "None")).__name__)  # the run's output is a literal
        task = Task(self.name, out.task.program, out.task.input, gold, iteration=iteration, proposal_id=proposal_id,
                    reference_ids=c.reference_ids)  # fmt: skip
        return ProposalOutcome(c, valid=True, reason=None, task=task, output=gold)

    def grade_request(self, task: Task, answer: str) -> GradeRequest:
        return GradeRequest("deduction", answer, output=task.output)  # compare values with the gold type name

    def zero_tasks(self) -> list[Task]:
        return [Task(self.name, SEED_PROGRAM, SEED_INPUT, "'str'")]


class TypeOfPolicy(ScriptedPolicy):
    """The scripted policy of tests/scripted.py, which also answers the fourth type's solver prompts."""

    def _completion(self, prompt: str, i: int) -> tuple[str, str]:
        if "Name the type of the value" in prompt:
            return "'int'\n```", "stop"  # right for the proposals (x * k on 3), wrong for the zero task ('str')
        return super()._completion(prompt, i)

    def train_step(self, records, *, total_tokens=None):
        self.trained.append(list(records))
        self.steps += 1
        return {"loss": 0.5, "sequences": float(len(records)), "step": float(self.steps)}


@pytest.fixture
def typeof():
    spec = task_types.register(TypeOf())
    yield spec
    task_types.unregister(spec.name)


def test_a_fourth_type_runs_one_iteration_end_to_end(tmp_path, typeof):
    policy = TypeOfPolicy()
    s = make_session(tmp_path, policy, **{"selfplay.task_types": "[deduction, abduction, induction, typeof]"})
    with s:
        out = run_iteration(s)
    assert out["committed"] == 1
    con = connect(tmp_path / "run")
    # its zero task was committed with the built-in ones
    assert con.execute("SELECT output FROM tasks WHERE iteration = 0 AND task_type = 'typeof'").fetchall() == [
        ("'str'",)
    ]
    props = con.execute(
        "SELECT valid, reason FROM proposals WHERE task_type = 'typeof' AND stage = 'propose'"
    ).fetchall()
    assert len(props) == 4 and any(v for v, _ in props) and any(not v for v, _ in props)
    new = con.execute("SELECT output FROM tasks WHERE iteration = 1 AND task_type = 'typeof'").fetchall()
    assert new and {o for (o,) in new} == {"'int'"}  # the type's own gold, computed from the sandbox's output
    groups = {
        r[0] for r in con.execute("SELECT DISTINCT role || '/' || task_type FROM rollouts WHERE in_batch").fetchall()
    }
    assert {"propose/typeof", "solve/typeof"} <= groups and len(groups) == 8
    graded = con.execute(
        "SELECT correct, count(*) FROM rollouts WHERE role = 'solve' AND task_type = 'typeof' GROUP BY ALL"
    ).fetchall()
    assert dict(graded).get(True, 0) > 0  # 'int' graded right on the new tasks
    metrics = con.execute("SELECT metrics FROM iterations WHERE iteration = 1").fetchone()[0]
    assert metrics["proposals/typeof"] == 4 and metrics["new_tasks/typeof"] == len(new)
    assert "novel_programs/typeof" in metrics and "edit_distance/typeof" in metrics  # it writes programs
    trained = {r.group for step in policy.trained for r in step}
    assert trained & {"propose/typeof", "solve/typeof"}


def test_an_unregistered_type_is_refused_with_the_registered_names(tmp_path):
    with pytest.raises(ValueError, match="unknown task type 'nope'.*deduction, abduction, induction"):
        make_session(tmp_path, **{"selfplay.task_types": "[deduction, nope]"})


def test_a_type_named_twice_is_a_config_error():
    with pytest.raises(ConfigError, match="named twice: deduction"):
        load_config(None, ["selfplay.task_types=[deduction, abduction, deduction]"])


def test_a_taken_name_is_refused_unless_replaced(typeof):
    with pytest.raises(ValueError, match="already registered"):
        task_types.register(TypeOf())
    assert task_types.register(typeof) is typeof  # the same object again is fine
    assert task_types.registered()[:3] == ("deduction", "abduction", "induction")


def test_a_run_of_one_type_proposes_and_solves_only_that_type(tmp_path):
    s = make_session(tmp_path, **{"selfplay.task_types": "[abduction]"})
    with s:
        assert [t.name for t in s.types] == ["abduction"]
        run_iteration(s)
    con = connect(tmp_path / "run")
    assert con.execute("SELECT DISTINCT task_type FROM rollouts").fetchall() == [("abduction",)]
    assert con.execute("SELECT DISTINCT task_type FROM tasks").fetchall() == [("abduction",)]
