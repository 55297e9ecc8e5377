"""Compaction: segments replace per-iteration files without changing a single query result, at any crash point."""

from __future__ import annotations

import shutil
from datetime import UTC, datetime
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from azr_core.config import StoreConfig
from azr_core.store import RunStore, connect
from azr_core.store.compaction import COMPACTED_NAME, SEGMENTS_DIR, read_compaction
from azr_core.store.layout import StoreError, partition_dir

QUERIES = [
    "SELECT * FROM rollouts ORDER BY rollout_id",
    "SELECT * FROM proposals ORDER BY proposal_id",
    "SELECT * FROM tasks ORDER BY task_id",
    "SELECT iteration, stage, step FROM iterations ORDER BY iteration",
    "SELECT iteration, count(*), sum(reward) FROM rollouts GROUP BY ALL ORDER BY iteration",
]


def _cfg(**kw) -> StoreConfig:
    return StoreConfig(fsync=False, compact_every=0, **kw)


def _write(store: RunStore, iteration: int) -> None:
    now = datetime.now(UTC)
    with store.begin(iteration) as w:
        w.write("proposals", [
            {"proposal_id": f"p{iteration}-{k}", "task_type": "deduction", "program": f"def f(x): return x + {k}",
             "valid": k % 2 == 0, "reward": float(k), "task_id": f"t{iteration}-{k}"}
            for k in range(3)
        ])  # fmt: skip
        w.write("tasks", [{"task_id": f"t{iteration}-0", "task_type": "deduction", "program": "def f(x): return x",
                           "input": "1", "output": "1"}])  # fmt: skip
        if iteration % 3 != 1:  # some iterations have no rollouts: segments must cope with gaps
            w.write("rollouts", [
                {"rollout_id": f"r{iteration}-{k}", "task_id": f"t{iteration}-0", "role": "solve",
                 "task_type": "deduction", "reward": float(k % 2), "correct": k % 2 == 1}
                for k in range(4)
            ])  # fmt: skip
        w.write("iterations", [{"stage": "train", "step": iteration, "started_at": now, "finished_at": now}])
        w.commit()


def _results(run_dir: Path) -> list[list[tuple]]:
    con = connect(run_dir)
    return [con.execute(q).fetchall() for q in QUERIES]


def _describe(run_dir: Path) -> list[list[tuple]]:
    con = connect(run_dir)
    return [con.execute(f"DESCRIBE {t}").fetchall() for t in ("proposals", "tasks", "rollouts", "iterations")]


@pytest.fixture()
def history(tmp_path: Path) -> tuple[Path, Path]:
    """The same 12 iterations in two run folders: one to compact, one left alone as the reference."""
    dirs = []
    for name in ("compacted", "reference"):
        with RunStore(tmp_path / name, _cfg()) as store:
            for it in range(12):
                _write(store, it)
        dirs.append(tmp_path / name)
    return dirs[0], dirs[1]


def test_compaction_changes_no_result_and_no_type(history):
    run, ref = history
    expected, types = _results(ref), _describe(ref)
    with RunStore(run, _cfg(retire_grace_s=0)) as store:
        state = store.compact(upto=7)
        assert state.upto == 7 and len(state.segments["rollouts"]) == 1
        assert _results(run) == expected  # segments for 0..7, live folders for 8..11
        assert _describe(run) == types
        for it in range(8):  # grace 0: the merged folders are gone
            assert not partition_dir(run, "proposals", it).exists()
        assert partition_dir(run, "proposals", 8).exists()
        store.compact()  # the rest: only segments remain
    assert read_compaction(run).upto == 11
    assert not list((run / "tables").glob("*/iteration=*/*.parquet"))
    assert _results(run) == expected
    assert len(list((run / SEGMENTS_DIR).glob("*/*.parquet"))) == 8  # two generations x four tables
    for seg in (run / SEGMENTS_DIR / "rollouts").glob("*.parquet"):  # sorted by task id: lookups skip row groups
        ids = pq.read_table(seg, columns=["task_id"]).column("task_id").to_pylist()
        assert ids == sorted(ids) and len(ids) > 1


def test_automatic_compaction_every_n_iterations(tmp_path: Path):
    with RunStore(tmp_path, StoreConfig(fsync=False, compact_every=5, retire_grace_s=0)) as store:
        for it in range(12):
            _write(store, it)
            store.maybe_compact()
            assert read_compaction(tmp_path).upto == {True: (it + 1) // 5 * 5 - 1}.get(it >= 4, -1)
    con = connect(tmp_path)
    assert con.execute("SELECT count(*) FROM proposals").fetchone()[0] == 36
    assert con.execute("SELECT count(DISTINCT iteration) FROM iterations").fetchone()[0] == 12


def test_reader_connected_before_compaction_keeps_its_files(history):
    run, ref = history
    expected = _results(ref)
    before = connect(run)  # its views list live folders only
    with RunStore(run, _cfg(retire_grace_s=3600)) as store:
        store.compact()
    assert [before.execute(q).fetchall() for q in QUERIES] == expected  # the retired folders are still there
    assert _results(run) == expected  # a new reader reads the segments and skips the retired folders
    with RunStore(run, _cfg(retire_grace_s=0)):  # past the grace period: the next open deletes them
        pass
    assert not list((run / "tables").glob("*/iteration=*"))
    assert read_compaction(run).retired == []
    assert _results(run) == expected


def test_crash_before_the_manifest_leaves_an_orphan_that_open_removes(history, monkeypatch):
    run, ref = history
    expected = _results(ref)
    import azr_core.store.compaction as compaction

    def crash(store, state):
        raise KeyboardInterrupt("killed before COMPACTED was written")

    monkeypatch.setattr(compaction, "_write_manifest", crash)
    with RunStore(run, _cfg()) as store, pytest.raises(KeyboardInterrupt):
        store.compact()
    monkeypatch.undo()
    orphans = list((run / SEGMENTS_DIR).glob("*/*.parquet"))
    spill = run / SEGMENTS_DIR / "rollouts" / ".duckdb-spill-dead"  # what a crash mid-sort leaves
    spill.mkdir()
    assert orphans and not (run / COMPACTED_NAME).exists()
    assert _results(run) == expected  # readers never look at unlisted segments
    with RunStore(run, _cfg()) as store:
        assert set(orphans) | {spill} <= set(store.removed_on_open)
    assert not list((run / SEGMENTS_DIR).glob("*/*"))
    assert _results(run) == expected


def test_crash_after_the_manifest_counts_nothing_twice(history, monkeypatch):
    run, ref = history
    expected = _results(ref)
    import azr_core.store.compaction as compaction

    monkeypatch.setattr(compaction, "delete_retired", lambda store, state=None, now=None: state)
    with RunStore(run, _cfg(retire_grace_s=0)) as store:
        store.compact(upto=9)
    monkeypatch.undo()
    assert partition_dir(run, "rollouts", 3).exists()  # merged but not deleted: both copies on disk
    assert _results(run) == expected
    with RunStore(run, _cfg(retire_grace_s=0)):
        pass
    assert not partition_dir(run, "rollouts", 3).exists()
    assert _results(run) == expected


def test_uncommitted_iteration_after_compaction_is_still_invisible_and_removed(history):
    run, ref = history
    expected = _results(ref)
    with RunStore(run, _cfg(retire_grace_s=0)) as store:
        store.compact()
        w = store.begin(12)
        w.write("proposals", [{"proposal_id": "late", "task_type": "deduction", "valid": False}])
        assert _results(run) == expected  # written, not committed
        w._closed = True  # simulate a crash: the writer never commits nor aborts
    with RunStore(run, _cfg()) as store:
        assert partition_dir(run, "proposals", 12) in store.removed_on_open
    assert _results(run) == expected


def test_compacting_beyond_the_commit_is_refused(history):
    run, _ = history
    with RunStore(run, _cfg()) as store, pytest.raises(Exception, match="last committed is 11"):
        store.compact(upto=12)


def test_segment_copy_is_exact(history):
    """Copy the run folder mid-way (as a backup tool would): the copy reads the same."""
    run, ref = history
    with RunStore(run, _cfg(retire_grace_s=0)) as store:
        store.compact(upto=5)
    copy = run.parent / "copy"
    shutil.copytree(run, copy)
    assert _results(copy) == _results(ref)


def test_damaged_manifest_is_a_clear_error(history):
    run, _ = history
    with RunStore(run, _cfg()) as store:
        store.compact(upto=3)
    (run / COMPACTED_NAME).write_text("{not json")
    with pytest.raises(StoreError, match="COMPACTED is unreadable.*restore it from a backup"):
        connect(run)


def test_version_1_folder_reads_and_becomes_current_when_a_writer_opens_it(history):
    import json

    from azr_core.store.schema import SCHEMA_VERSION

    run, ref = history
    (run / "SCHEMA").write_text(json.dumps({"schema_version": 1}))  # as the first release wrote it
    expected = _results(ref)
    assert _results(run) == expected
    with RunStore(run, _cfg()) as store:
        store.compact(upto=4)
    # the current version, and where it came from: its older files are read by column name
    assert json.loads((run / "SCHEMA").read_text()) == {"schema_version": SCHEMA_VERSION, "upgraded_from": 1}
    assert _results(run) == expected
    seg = next((run / SEGMENTS_DIR / "rollouts").glob("*.parquet"))
    meta = pq.read_schema(seg).metadata
    assert meta[b"azr.schema_version"] == str(SCHEMA_VERSION).encode() and meta[b"azr.table"] == b"rollouts"
