"""The four tables of a run: their columns (name, DuckDB type, meaning), versioned.

Every table is partitioned by iteration (`tables/<table>/iteration=N/part-*.parquet`); the `iteration` column comes
from the folder name, so it is not stored in the files (compacted segment files, `segments/<table>/`, do store it).
Bump SCHEMA_VERSION on any change below or of the layout: a run folder records the version it was written with, and
a reader of another version refuses it with a clear error.

Versions: 1 = per-iteration files only; 2 = 1 plus compaction (COMPACTED, segments/), which a version-1 reader would
silently miss; 3 = 2 plus the proposer measures' columns of `proposals` (novel, complexity, halstead_effort,
edit_distance, edit_distance_norm). Readers unite files by column name and read a column that older files lack as
null, so version-1 and -2 folders read as they are. A writer that opens one marks it version 3 first (before, a
version-1 folder became 2 at its first compaction): the files it adds would make an older reader, which takes the
first file's columns for all, fail or drop the new columns.

The columns are plain data here (no pyarrow import), so `azr sql` starts fast; the Parquet schema is derived from
them when writing. The meanings are what `azr sql --schema` prints.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any, NamedTuple

if TYPE_CHECKING:
    import pyarrow as pa

SCHEMA_VERSION = 3
READABLE_SCHEMA_VERSIONS = (1, 2, 3)
PARTITION_COLUMN = "iteration"


class Column(NamedTuple):
    name: str
    sql_type: str
    meaning: str


_V, _B, _I, _L, _D, _VS = "VARCHAR", "BOOLEAN", "INTEGER", "BIGINT", "DOUBLE", "VARCHAR[]"

TABLES: dict[str, tuple[Column, ...]] = {
    "proposals": (
        Column("proposal_id", _V, "id; rollouts.proposal_id of the completion that made it"),
        Column("task_type", _V, "deduction | abduction | induction"),
        Column("stage", _V, "seed | propose"),
        Column("format_ok", _B, "the completion had the <think>/<answer> format"),
        Column("valid", _B, "the proposal became (or duplicated) a task"),
        Column("reason", _V, "why it was rejected, 'category: detail'; null when valid"),
        Column("program", _V, "the program (induction: the reference program)"),
        Column("input", _V, "deduction/abduction: the proposed input (call arguments)"),
        Column("output", _V, "deduction/abduction: the gold output the executor produced"),
        Column("inputs", _VS, "induction: the proposed inputs that parsed"),
        Column("message", _V, "induction: the proposer's message"),
        Column("task_id", _V, "the task it became (an existing one when duplicate); null when invalid"),
        Column("duplicate", _B, "an exact duplicate of a task already in the buffers"),
        Column("reference_ids", _VS, "tasks shown to the proposer"),
        Column("solve_rate", _D, "mean accuracy of the learnability rollouts; null when none ran"),
        Column("n_solves", _I, "number of learnability rollouts"),
        Column("reward", _D, "proposer reward; null for a seeding proposal (no update)"),
        Column("novel", _B, "valid, its canonical program + input value(s) in no buffer nor earlier in the batch"),
        Column("complexity", _D, "cognitive complexity of the program (ComplexiPy); null when invalid"),
        Column("halstead_effort", _D, "Halstead effort of the program (radon); null when invalid"),
        Column("edit_distance", _D, "deduction/abduction: mean AST tree edit distance to the references shown"),
        Column("edit_distance_norm", _D, "the same, each distance over the sum of both tree sizes (0 same, 1 apart)"),
    ),
    "tasks": (
        Column("task_id", _V, "content fingerprint: type + program + input(s)"),
        Column("task_type", _V, "deduction | abduction | induction"),
        Column("program", _V, "the program `f`"),
        Column("input", _V, "deduction/abduction: call arguments"),
        Column("output", _V, "deduction/abduction: repr of f(input)"),
        Column("shown_inputs", _VS, "induction: inputs shown to the solver"),
        Column("shown_outputs", _VS, "induction: their outputs"),
        Column("held_inputs", _VS, "induction: held-out inputs the solver's program is graded on"),
        Column("held_outputs", _VS, "induction: their outputs"),
        Column("message", _V, "induction: the proposer's message"),
        Column("proposal_id", _V, "the proposal that made it; null for the seed triplets"),
        Column("reference_ids", _VS, "tasks shown to its proposer"),
    ),
    "rollouts": (
        Column("rollout_id", _V, "id"),
        Column("role", _V, "propose | solve"),
        Column("task_type", _V, "deduction | abduction | induction"),
        Column("purpose", _V, "seed | propose | learnability | solve"),
        Column("task_id", _V, "solve: the task solved; propose: the task created, if any"),
        Column("proposal_id", _V, "propose: its proposal; learnability: the proposal being estimated"),
        Column("prompt", _V, "the prompt text (chat template applied)"),
        Column("completion", _V, "the generated text"),
        Column("answer", _V, "the parsed answer (solver); null otherwise"),
        Column("format_ok", _B, "the completion had the <think>/<answer> format"),
        Column("correct", _B, "solver verdict of the executor; null for proposer rollouts"),
        Column("reward", _D, "reward"),
        Column("advantage", _D, "TRR++ advantage; null when not in the update batch"),
        Column("in_batch", _B, "part of the policy update"),
        Column("prompt_tokens", _I, "prompt length in tokens"),
        Column("completion_tokens", _I, "completion length in tokens"),
    ),
    "iterations": (
        Column("stage", _V, "seed | train"),
        Column("step", _L, "optimiser steps taken so far, after this iteration"),
        Column("checkpoint_id", _V, "checkpoint written with this commit"),
        Column("started_at", "TIMESTAMPTZ", "when the iteration started"),
        Column("finished_at", "TIMESTAMPTZ", "when it committed"),
        Column("wall_s", _D, "wall time of the iteration, seconds"),
        Column("metrics", "MAP(VARCHAR, DOUBLE)", "named metrics, e.g. metrics['valid_rate/deduction']"),
    ),
}

#: Tables written outside the iteration commit (an evaluation runs after its version was committed, often from
#: another process): flat files `run_dir/<table>/part-*.parquet`, each written atomically and visible at once.
SIDE_TABLES: dict[str, tuple[Column, ...]] = {
    "evals": (
        Column("eval_id", _V, "one `azr eval run` (or eval flow run): all its rows share it"),
        Column("model", _V, "what was evaluated: a folder, an HF id or models:/azr-policy/N"),
        Column("model_version", _I, "registered model version; null for a folder or HF id"),
        Column("iteration", _I, "training iteration of the version; null when unknown"),
        Column("bench", _V, "benchmark: cruxeval-o, humaneval+, math500, ..."),
        Column("item_id", _V, "the benchmark's item id"),
        Column("sample", _I, "sample index of the item (0 for greedy)"),
        Column("template", _V, "raw | chat"),
        Column("prompt", _V, "the prompt text"),
        Column("completion", _V, "the generated text"),
        Column("answer", _V, "the answer taken from it (code benchmarks: the program)"),
        Column("correct", _B, "the grader's verdict"),
        Column("reason", _V, "why it is wrong; null when correct"),
        Column("completion_tokens", _I, "generated tokens"),
        Column("created_at", "TIMESTAMPTZ", "when the evaluation finished"),
    ),
}

#: Id columns that get Parquet Bloom filters, so `WHERE task_id = '...'` skips row groups without the id.
BLOOM_COLUMNS: dict[str, tuple[str, ...]] = {
    "proposals": ("proposal_id", "task_id"),
    "tasks": ("task_id", "proposal_id"),
    "rollouts": ("task_id", "proposal_id"),
    "iterations": (),
}


#: Tables whose rows a writer may sort by task_id (order within an iteration carries no meaning).
SORTED_TABLES: frozenset[str] = frozenset({"rollouts"})


class SchemaVersionError(RuntimeError):
    """The run folder was written with another schema version than this code reads."""


class SchemaError(ValueError):
    """Rows do not fit a table's schema (unknown table, unknown column, wrong type)."""


def _arrow_type(sql_type: str) -> pa.DataType:
    import pyarrow as pa

    return {
        _V: pa.string(),
        _B: pa.bool_(),
        _I: pa.int32(),
        _L: pa.int64(),
        _D: pa.float64(),
        _VS: pa.list_(pa.string()),
        "TIMESTAMPTZ": pa.timestamp("us", tz="UTC"),
        "MAP(VARCHAR, DOUBLE)": pa.map_(pa.string(), pa.float64()),
    }[sql_type]


@functools.cache
def schema_for(table: str) -> pa.Schema:
    """The Parquet schema of `table`, with the schema version and table name in its metadata."""
    import pyarrow as pa

    columns = TABLES.get(table) or SIDE_TABLES.get(table)
    if columns is None:
        raise SchemaError(f"unknown table {table!r}; tables: {', '.join([*TABLES, *SIDE_TABLES])}")
    return pa.schema(
        [(c.name, _arrow_type(c.sql_type)) for c in columns],
        metadata={b"azr.schema_version": str(SCHEMA_VERSION).encode(), b"azr.table": table.encode()},
    )


def to_arrow(table: str, rows: pa.Table | Iterable[Mapping[str, Any]]) -> pa.Table:
    """Rows (dicts, or an Arrow table) as an Arrow table of exactly `table`'s schema.

    Missing columns become nulls; unknown columns are an error (a typo must not vanish silently).
    """
    import pyarrow as pa

    schema = schema_for(table)
    if isinstance(rows, pa.Table):
        extra = set(rows.column_names) - set(schema.names)
        if extra:
            raise SchemaError(f"{table}: unknown columns {sorted(extra)}")
        try:
            cols = [
                rows.column(f.name).cast(f.type) if f.name in rows.column_names else pa.nulls(rows.num_rows, f.type)
                for f in schema
            ]
        except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError) as exc:
            raise SchemaError(f"{table}: {exc}") from None
        return pa.Table.from_arrays(cols, schema=schema)
    rows = list(rows)
    for row in rows:
        extra = set(row) - set(schema.names)
        if extra:
            raise SchemaError(f"{table}: unknown columns {sorted(extra)}")
    try:
        return pa.Table.from_pylist(rows, schema=schema)
    except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
        raise SchemaError(f"{table}: {exc}") from None
