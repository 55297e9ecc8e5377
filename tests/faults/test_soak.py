"""Soak (marker `soak`, skipped by default: `pytest -m soak`): the executor over AZR_SOAK_PROGRAMS programs (default
100,000) with 2% hostile ones. No hostile program judged valid, no hang (every chunk returns), no process or file
descriptor left behind, memory and throughput steady from the first quarter of the run to the last."""

from __future__ import annotations

import os

import pytest

from bench.soak_executor import parser, soak

pytestmark = [pytest.mark.soak, pytest.mark.sandbox]


def test_executor_soak():
    n = int(os.environ.get("AZR_SOAK_PROGRAMS", "100000"))
    r = soak(parser().parse_args(["--n", str(n), "--chunk", str(max(500, n // 20))]))
    assert r["hostile_valid"] == 0
    assert r["leftover_processes"] == 0 and r["fds_after"] <= r["fds_before"]
    assert r["sandbox_after"] <= r["sandbox_before"]  # nothing of the sandbox user outlives the executor
    assert r["procs_last"] == r["procs_first"]  # workers replaced, never accumulated
    assert r["rss_last"] <= 1.25 * r["rss_first"] + 50  # MiB: flat, not growing with the programs run
    assert r["rate_last"] >= 0.5 * r["rate_first"]  # no slow-down over the run (a shared machine is noisy)


def test_selfplay_soak():
    """AZR_SOAK_ITERATIONS (default 50) cpu-tiny iterations with a small budget: worker memory and iteration time
    flat (the last ten against the first ten, seeding left out)."""
    import statistics

    from bench.soak_selfplay import soak as selfplay_soak

    n = int(os.environ.get("AZR_SOAK_ITERATIONS", "50"))
    r = selfplay_soak(n, [])
    k = min(10, max(1, n // 3))
    walls, rss = r["wall_s"][1:], r["worker_rss_mb"]
    assert len(r["wall_s"]) == n
    assert statistics.median(rss[-k:]) <= 1.15 * statistics.median(rss[:k])
    assert statistics.median(walls[-k:]) <= 1.5 * statistics.median(walls[:k])
