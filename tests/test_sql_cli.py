"""`azr sql`: output formats, --schema, errors and exit codes, and the real `azr` entry point."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import typer
from typer.testing import CliRunner

from azr_core.commands.sql import DEFAULT_RUN_DIR, format_table, register
from azr_core.commands.sql_core import fast_main, fast_parser
from azr_core.config import RunConfig, StoreConfig
from azr_core.store import SCHEMA_VERSION, open_run


@dataclass
class Result:
    exit_code: int
    stdout: str
    stderr: str

    @property
    def output(self) -> str:
        return self.stdout + self.stderr


@pytest.fixture(scope="module", params=["typer", "fast"])
def app(request):
    """The two front ends of `azr sql`: the typer command (help, `azr --help`) and the typer-free path `azr sql`
    takes. Every test below runs through both."""
    if request.param == "fast":
        return "fast"
    app = typer.Typer()

    @app.callback()
    def main() -> None:  # a group, as in the real CLI: `sql` stays a subcommand
        pass

    register(app)
    return app


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    run_dir = tmp_path_factory.mktemp("run")
    with open_run(run_dir) as store:
        store.config = StoreConfig(fsync=False)
        for it in (1, 2):
            w = store.begin()
            w.write("rollouts", [{"rollout_id": f"{it}-{i}", "role": "solve", "task_type": "deduction",
                                  "correct": i < it, "reward": 1.0 if i < it else -0.5,
                                  "completion": "line1\nline2"} for i in range(3)])  # fmt: skip
            w.commit(f"ckpt{it}")
        w = store.begin()  # an uncommitted iteration: never visible
        w.write("rollouts", [{"rollout_id": "ghost", "role": "solve", "task_type": "deduction"}])
    return run_dir


def invoke(app, *args: str) -> Result:
    if app == "fast":
        out, err = io.StringIO(), io.StringIO()
        try:
            code = fast_main(list(args), out=out, err=err)
        except SystemExit as exc:  # argparse's own usage errors
            code = int(exc.code)
        return Result(code, out.getvalue(), err.getvalue())
    res = CliRunner().invoke(app, ["sql", *args])
    return Result(res.exit_code, res.stdout, res.stderr)


QUERY = "SELECT iteration, avg(correct::INT) AS solve_rate, count(*) AS n FROM rollouts GROUP BY ALL ORDER BY 1"


def test_table_output_is_aligned_and_sees_committed_rows_only(app, run_dir):
    res = invoke(app, QUERY, "--run", str(run_dir))
    assert res.exit_code == 0, res.output
    lines = res.output.splitlines()
    assert lines[0].split() == ["iteration", "solve_rate", "n"]
    assert [line.split() for line in lines[2:4]] == [["1", "0.3333333333333333", "3"], ["2", "0.6666666666666666", "3"]]
    assert lines[-1] == "(2 rows)"
    assert len({len(line) for line in lines[:4]}) == 1  # aligned columns


def test_csv_and_json_to_stdout(app, run_dir):
    res = invoke(app, QUERY, "--run", str(run_dir), "--format", "csv")
    assert res.exit_code == 0 and res.output.splitlines() == [
        "iteration,solve_rate,n", "1,0.3333333333333333,3", "2,0.6666666666666666,3",
    ]  # fmt: skip
    res = invoke(
        app, "SELECT rollout_id, completion FROM rollouts ORDER BY 1 LIMIT 1", "-r", str(run_dir), "-f", "json"
    )
    assert res.exit_code == 0
    assert [json.loads(line) for line in res.output.splitlines()] == [
        {"rollout_id": "1-0", "completion": "line1\nline2"}
    ]


@pytest.mark.parametrize("fmt", ["csv", "json", "parquet"])
def test_file_outputs(app, run_dir, tmp_path, fmt):
    out = tmp_path / f"result.{fmt}"
    res = invoke(app, "SELECT * FROM rollouts ORDER BY rollout_id", "-r", str(run_dir), "-f", fmt, "-o", str(out))
    assert res.exit_code == 0, res.output
    assert res.output == ""
    if fmt == "parquet":
        table = pq.read_table(out)
        assert table.num_rows == 6 and "ghost" not in table.column("rollout_id").to_pylist()
    elif fmt == "csv":
        assert out.read_text().splitlines()[0].startswith("rollout_id,role,task_type")
    else:
        assert len(out.read_text().splitlines()) == 6
    assert [p.name for p in tmp_path.iterdir()] == [out.name]  # no temp file left


def test_parquet_needs_an_output_file(app, run_dir):
    res = invoke(app, "SELECT 1", "-r", str(run_dir), "-f", "parquet")
    assert res.exit_code == 2 and "--output" in res.output


def test_bad_query_prints_duckdbs_error_and_fails(app, run_dir):
    res = invoke(app, "SELECT nope FROM rollouts", "-r", str(run_dir))
    assert res.exit_code == 1
    assert 'Binder Error: Referenced column "nope" not found' in res.stderr
    res = invoke(app, "SELEC 1", "-r", str(run_dir))
    assert res.exit_code == 1 and "Parser Error" in res.stderr


def test_missing_or_foreign_run_folder(app, run_dir, tmp_path):
    res = invoke(app, "SELECT 1", "-r", str(tmp_path / "absent"))
    assert res.exit_code == 2 and "does not exist" in res.stderr
    foreign = tmp_path / "old"
    foreign.mkdir()
    (foreign / "SCHEMA").write_text(json.dumps({"schema_version": SCHEMA_VERSION + 1}))
    res = invoke(app, "SELECT 1", "-r", str(foreign))
    assert res.exit_code == 2 and "schema version" in res.stderr


def test_schema_lists_views_and_columns(app, run_dir):
    res = invoke(app, "--schema", "-r", str(run_dir))
    assert res.exit_code == 0
    assert "committed iteration 2" in res.output
    for view in ("proposals", "tasks", "rollouts", "iterations"):
        assert f"\n{view}\n" in res.output
    assert "  advantage" in res.output and "MAP(VARCHAR, DOUBLE)" in res.output
    assert "TRR++ advantage" in res.output and "the iteration that committed the row" in res.output  # meanings
    data = json.loads(invoke(app, "--schema", "-r", str(run_dir), "-f", "json").output)
    assert data["committed_iteration"] == 2 and data["views"]["rollouts"]["reward"] == "DOUBLE"


def test_query_or_schema_is_required(app, run_dir):
    assert invoke(app, "-r", str(run_dir)).exit_code == 2


def test_default_run_folder_is_the_configs():
    assert DEFAULT_RUN_DIR == RunConfig().run_dir


def test_format_table_cuts_long_cells():
    text = format_table(["a", "b"], [("x" * 100, None), ("y", 2)], max_width=10)
    assert "xxxxxxxxx…" in text and "NULL" in text and "x" * 11 not in text


def test_the_real_azr_command(run_dir):
    """Through the installed entry point: the command is registered in azr_core.cli."""
    proc = subprocess.run(
        [sys.executable, "-m", "azr_core.cli", "sql", "SELECT count(*) AS n FROM rollouts", "--run", str(run_dir),
         "--format", "csv"],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == ["n", "6"]


def test_fast_path_declares_the_typer_commands_options():
    """`azr sql` runs through argparse; its options must stay those the typer command documents."""
    app = typer.Typer()
    app.callback()(lambda: None)
    register(app)
    cmd = typer.main.get_command(app).commands["sql"]
    typer_opts = {(p.name, tuple(sorted(p.opts)), p.default) for p in cmd.params}
    fast = {
        (a.dest if a.dest != "fmt" else "fmt", tuple(sorted(a.option_strings or [a.dest])), a.default)
        for a in fast_parser()._actions
        if a.dest != "help"
    }
    norm = {(n, o, str(d) if d is not None else None) for n, o, d in typer_opts}
    assert norm == {(n, o, str(d) if d is not None else None) for n, o, d in fast}


def test_azr_sql_does_not_import_typer(run_dir):
    code = (
        "import sys; sys.argv = ['azr', 'sql', 'SELECT 1', '--run', sys.argv[1]]\n"
        "from azr_core import cli\n"
        "try:\n    cli.main()\nexcept SystemExit as e:\n    assert e.code == 0, e.code\n"
        "print(sorted(m for m in ('typer', 'pydantic', 'pyarrow') if m in sys.modules))"
    )
    proc = subprocess.run([sys.executable, "-c", code, str(run_dir)], capture_output=True, text=True, check=True)
    assert proc.stdout.splitlines()[-1] == "[]"
