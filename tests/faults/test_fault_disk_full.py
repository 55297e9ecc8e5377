"""Disk full while writing a checkpoint or the Parquet rows of an iteration (a size-limited tmpfs holds the run
folder): one clear error, the previous iteration intact, and once space is freed the run resumes and commits every
row exactly once. The scripted policy, the real executor and store."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from stackutil import assert_each_row_once

from azr_core.selfplay import stages
from azr_core.selfplay.iteration import DiskFullError, run_iteration
from azr_core.store import connect, read_commit

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from scripted import make_session  # noqa: E402

pytestmark = [pytest.mark.sandbox]


@pytest.fixture
def small_disk(tmp_path: Path):
    mnt = tmp_path / "disk"
    mnt.mkdir()
    res = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16m", "tmpfs", str(mnt)], capture_output=True, text=True)
    if res.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here (needs root): {res.stderr.strip()}")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


def _fill(disk: Path) -> Path:
    """Take every free byte of the disk; returns the filler to delete."""
    filler = disk / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        for size in (1 << 20, 4096, 1):  # unbuffered: what was written is on the disk
            try:
                while True:
                    os.write(fd, b"\0" * size)
            except OSError:
                pass
    finally:
        os.close(fd)
    return filler


@pytest.mark.parametrize("before", ["update", "commit"])  # the checkpoint write fails / the Parquet writes fail
def test_a_full_disk_fails_the_iteration_clearly_and_loses_nothing(small_disk: Path, tmp_path: Path, before: str):
    run_dir = small_disk / "run"
    over = {"run.run_dir": run_dir, "buffers.seed_max_rounds": 0, "tracking.register_every": 0}
    with make_session(tmp_path, **over) as s:
        run_iteration(s)
    con = connect(run_dir)
    rows_before = {t: con.execute(f"SELECT count(*) FROM {t}").fetchone()[0] for t in ("proposals", "rollouts")}
    con.close()

    filler: list[Path] = []

    def call(stage, session, previous):
        name = "update" if stage is stages.update else getattr(stage, "__name__", "")
        if name == before and not filler:
            filler.append(_fill(small_disk))
        return stage(session, previous)

    with pytest.raises(DiskFullError) as err:
        with make_session(tmp_path, **over) as s:
            run_iteration(s, call=call)
    msg = str(err.value)
    assert "no space left on the disk of" in msg and "iteration 2 was not committed" not in msg
    assert "during iteration 2" in msg and "still holds iteration 1, intact" in msg and "Free space" in msg
    assert read_commit(run_dir).iteration == 1
    con = connect(run_dir)  # a reader sees exactly the committed rows
    assert {t: con.execute(f"SELECT count(*) FROM {t}").fetchone()[0] for t in rows_before} == rows_before
    con.close()

    os.remove(filler[0])
    with make_session(tmp_path, **over) as s:
        out = run_iteration(s)
    assert out["committed"] == 2
    con = connect(run_dir)
    assert_each_row_once(con)
    assert sorted(p.name for p in (run_dir / "checkpoints").iterdir()) == ["000001", "000002"]
