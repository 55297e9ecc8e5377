"""The run store: atomic files, the commit protocol, recovery on resume, schema versions, DuckDB views."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from azr_core.algo.buffers import task_to_row
from azr_core.algo.tasks import seed_tasks
from azr_core.common import atomic as atomic_mod
from azr_core.common.atomic import atomic_write_bytes, temp_path_for
from azr_core.config import StoreConfig, load_config
from azr_core.store import (
    SCHEMA_VERSION,
    RunStore,
    SchemaError,
    SchemaVersionError,
    StoreError,
    connect,
    open_run,
    read_commit,
)
from azr_core.store.run import partition_dir

FAST = StoreConfig(fsync=False)


def rollout(i: int, **extra) -> dict:
    row = {"rollout_id": f"r{i}", "role": "solve", "task_type": "deduction", "purpose": "solve", "task_id": f"t{i % 3}",
           "prompt": "p", "completion": "c", "format_ok": True, "correct": i % 2 == 0, "reward": 1.0,
           "prompt_tokens": 10, "completion_tokens": 5}  # fmt: skip
    return row | extra


def count(run_dir: Path, table: str = "rollouts") -> int:
    return connect(run_dir).sql(f"SELECT count(*) FROM {table}").fetchall()[0][0]


def write_iteration(store: RunStore, n_rows: int, *, commit: bool = True) -> None:
    w = store.begin()
    w.write("rollouts", [rollout(i) for i in range(n_rows)])
    w.write("iterations", [{"stage": "train", "step": w.iteration, "metrics": {"rows": float(n_rows)}}])
    if commit:
        w.commit(checkpoint_id=f"ckpt-{w.iteration}")


@pytest.fixture
def run_dir(tmp_path: Path) -> Path:
    return tmp_path / "run"


def test_new_run_commits_the_seed_iteration_and_saves_config(run_dir: Path):
    cfg = load_config(None, ["store.fsync=false"], profile="cpu-tiny")
    zero = [task_to_row(t) for t in seed_tasks()]  # the store stores rows: the caller names the seeds
    with open_run(run_dir, cfg, zero) as store:
        assert store.last_iteration == 0
    assert json.loads((run_dir / "SCHEMA").read_text()) == {"schema_version": SCHEMA_VERSION}
    assert read_commit(run_dir).iteration == 0
    assert "profile: cpu-tiny" in (run_dir / "config.yaml").read_text()
    con = connect(run_dir)
    assert con.sql("SELECT task_type, program FROM tasks ORDER BY task_type").fetchall() == [
        ("abduction", "def f(x):\n    return x"), ("deduction", "def f(x):\n    return x"),
        ("induction", "def f(x):\n    return x"),
    ]  # fmt: skip
    assert con.sql("SELECT stage, iteration FROM iterations").fetchall() == [("seed", 0)]
    with open_run(run_dir, cfg, zero) as store:  # reopening does not seed twice
        assert store.last_iteration == 0
    assert count(run_dir, "tasks") == 3


def test_rows_are_invisible_until_commit(run_dir: Path):
    with open_run(run_dir) as store:
        store.config = FAST
        w = store.begin()
        w.write("rollouts", [rollout(i) for i in range(10)])
        assert count(run_dir) == 0  # the files exist, the commit does not
        before = connect(run_dir)  # a reader that connected before the commit keeps its snapshot
        w.commit("c1")
        assert count(run_dir) == 10
        assert before.sql("SELECT count(*) FROM rollouts").fetchall()[0][0] == 0
    state = read_commit(run_dir)
    assert (state.iteration, state.checkpoint_id) == (1, "c1")


def test_crash_before_commit_loses_nothing_committed_and_duplicates_nothing(run_dir: Path):
    with open_run(run_dir) as store:
        write_iteration(store, 5)
        write_iteration(store, 7, commit=False)  # the process dies here: files of iteration 2 lie on disk
    assert partition_dir(run_dir, "rollouts", 2).exists()
    assert count(run_dir) == 5
    with open_run(run_dir) as store:  # resume
        assert store.last_iteration == 1
        assert partition_dir(run_dir, "rollouts", 2) in store.removed_on_open
        assert not partition_dir(run_dir, "rollouts", 2).exists()
        write_iteration(store, 7)  # iteration 2 again, from scratch
    assert count(run_dir) == 12
    con = connect(run_dir)
    assert con.sql("SELECT iteration, count(*) FROM rollouts GROUP BY ALL ORDER BY 1").fetchall() == [(1, 5), (2, 7)]
    assert con.sql("SELECT count(*) FROM iterations WHERE stage = 'train'").fetchall() == [(2,)]


def test_crash_while_writing_commit_marker_keeps_the_previous_commit(run_dir: Path, monkeypatch):
    with open_run(run_dir) as store:
        write_iteration(store, 3)
        w = store.begin()
        w.write("rollouts", [rollout(i) for i in range(4)])

        def die(*_args, **_kwargs):
            raise OSError("disk gone")

        monkeypatch.setattr("azr_core.common.atomic.os.replace", die)
        with pytest.raises(OSError, match="disk gone"):
            w.commit()
        monkeypatch.undo()
    assert read_commit(run_dir).iteration == 1
    assert count(run_dir) == 3
    assert not list(run_dir.glob("~*")), "the temp marker was cleaned up"


def test_a_failed_file_write_leaves_no_file(run_dir: Path, monkeypatch):
    with open_run(run_dir) as store:
        w = store.begin()

        def broken_write(table, where, **kwargs):
            Path(where).write_bytes(b"PAR1 half a file")
            raise OSError("killed mid-write")

        monkeypatch.setattr("azr_core.store.run.pq.write_table", broken_write)
        with pytest.raises(OSError):
            w.write("rollouts", [rollout(0)])
        monkeypatch.undo()
        assert list(partition_dir(run_dir, "rollouts", 1).iterdir()) == []
        w.write("rollouts", [rollout(1)])
        w.commit()
    assert count(run_dir) == 1


def test_leftover_temp_files_never_match_the_parquet_glob(run_dir: Path):
    """A torn temp file inside a committed partition must not break queries (DuckDB globs `.x.parquet` too)."""
    with open_run(run_dir) as store:
        write_iteration(store, 4)
    part = partition_dir(run_dir, "rollouts", 1)
    torn = temp_path_for(part / "part-00009-deadbeef.parquet")
    torn.write_bytes(b"not parquet at all")
    assert not torn.name.endswith(".parquet") and not torn.name.startswith(".")
    assert count(run_dir) == 4  # the reader ignores it
    with open_run(run_dir) as store:
        assert torn in store.removed_on_open and not torn.exists()


def test_commits_are_in_order_and_single_use(run_dir: Path):
    with open_run(run_dir) as store:
        with pytest.raises(StoreError, match="next one is 1"):
            store.begin(3)
        w = store.begin(1)
        w.commit()
        with pytest.raises(StoreError, match="already committed"):
            w.write("rollouts", [rollout(0)])
        with pytest.raises(StoreError, match="already committed"):
            w.commit()


def test_leaving_the_block_without_commit_aborts(run_dir: Path):
    with open_run(run_dir) as store:
        with pytest.raises(RuntimeError), store.begin() as w:
            w.write("rollouts", [rollout(0)])
            raise RuntimeError("stage failed")
        assert not partition_dir(run_dir, "rollouts", 1).exists()
        assert store.begin().iteration == 1


def test_one_writer_at_a_time(run_dir: Path):
    with open_run(run_dir):
        with pytest.raises(StoreError, match="another process"):
            RunStore(run_dir)
    RunStore(run_dir).close()  # free again once the first writer closed


def test_schema_version_mismatch_is_a_clear_error(run_dir: Path):
    open_run(run_dir).close()
    (run_dir / "SCHEMA").write_text(json.dumps({"schema_version": SCHEMA_VERSION + 1}))
    with pytest.raises(
        SchemaVersionError, match=f"schema version {SCHEMA_VERSION + 1}.*reads version {SCHEMA_VERSION}"
    ):
        connect(run_dir)
    with pytest.raises(SchemaVersionError):
        RunStore(run_dir)
    (run_dir / "SCHEMA").write_text("garbage")
    with pytest.raises(SchemaVersionError, match="unreadable"):
        connect(run_dir)


def test_not_a_run_folder(tmp_path: Path):
    with pytest.raises(StoreError, match="does not exist"):
        connect(tmp_path / "nothing")
    with pytest.raises(StoreError, match="no SCHEMA file"):
        connect(tmp_path)


def test_files_carry_the_schema_version_and_no_iteration_column(run_dir: Path):
    with open_run(run_dir) as store:
        write_iteration(store, 2)
    (path,) = partition_dir(run_dir, "rollouts", 1).glob("*.parquet")
    meta = pq.read_schema(path).metadata
    assert meta[b"azr.schema_version"] == str(SCHEMA_VERSION).encode() and meta[b"azr.table"] == b"rollouts"
    assert "iteration" not in pq.read_schema(path).names  # it comes from the folder name


def test_rows_must_fit_the_schema(run_dir: Path):
    with open_run(run_dir) as store:
        w = store.begin()
        with pytest.raises(SchemaError, match="unknown columns \\['rewrad'\\]"):
            w.write("rollouts", [rollout(0, rewrad=1.0)])
        with pytest.raises(SchemaError, match="rollouts"):
            w.write("rollouts", [rollout(0, reward="high")])
        with pytest.raises(SchemaError, match="unknown table"):
            w.write("nope", [{}])
        assert w.write("rollouts", []) is None  # no rows, no file


def test_views_are_typed_and_empty_before_any_rows(run_dir: Path):
    with RunStore(run_dir):
        pass  # a run folder with nothing committed at all
    con = connect(run_dir)
    for table in ("proposals", "tasks", "rollouts", "iterations"):
        assert con.sql(f"SELECT count(*) FROM {table}").fetchall() == [(0,)]
    cols = {r[0]: r[1] for r in con.sql("DESCRIBE rollouts").fetchall()}
    assert cols["reward"] == "DOUBLE" and cols["iteration"] == "INTEGER" and cols["correct"] == "BOOLEAN"


def test_readers_run_while_the_trainer_writes(run_dir: Path):
    open_run(run_dir).close()
    errors: list[BaseException] = []
    seen: list[int] = []
    done = threading.Event()

    def trainer():
        try:
            with RunStore(run_dir, FAST) as store:
                for _ in range(15):
                    write_iteration(store, 50)
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)
        finally:
            done.set()

    thread = threading.Thread(target=trainer)
    thread.start()
    while not done.is_set() or len(seen) < 3:
        con = connect(run_dir)
        n_rows, n_its = con.sql("SELECT count(*), count(DISTINCT iteration) FROM rollouts").fetchall()[0]
        assert n_rows == 50 * n_its  # whole iterations only, never a part of one
        seen.append(n_its)
    thread.join()
    assert not errors
    seen.append(count(run_dir) // 50)
    assert seen == sorted(seen) and seen[-1] == 15


def test_atomic_write_replaces_whole_files(tmp_path: Path):
    path = tmp_path / "x.json"
    atomic_write_bytes(path, b"old")
    atomic_write_bytes(path, b"new")
    assert path.read_bytes() == b"new" and [p.name for p in tmp_path.iterdir()] == ["x.json"]
    assert atomic_mod.is_temp(temp_path_for(path)) and not atomic_mod.is_temp(path)


def test_rollouts_sorted_by_task_with_bloom_filters_make_lookups_skip_data(run_dir: Path):
    import duckdb

    with open_run(run_dir) as store:
        store.config = StoreConfig(fsync=False, sort_by_task=True, row_group_size=1024)
        w = store.begin()
        w.write("rollouts", [rollout(i, task_id=f"t{(i * 7) % 50:03d}") for i in range(3000)])
        w.commit()
    (path,) = partition_dir(run_dir, "rollouts", 1).glob("*.parquet")
    ids = pq.read_table(path, columns=["task_id"]).column(0).to_pylist()
    assert ids == sorted(ids) and pq.ParquetFile(path).metadata.num_row_groups == 3
    meta = duckdb.sql(f"SELECT path_in_schema, bloom_filter_offset FROM parquet_metadata('{path}')").fetchall()
    assert {p for p, off in meta if off is not None} == {"task_id", "proposal_id"}
    plan = connect(run_dir).sql("EXPLAIN ANALYZE SELECT completion FROM rollouts WHERE task_id = 't049'").fetchall()
    assert "Row Groups Scanned: 1 / 3" in plan[0][1]
    assert count(run_dir) == 3000
