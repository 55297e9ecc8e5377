"""One self-play iteration, top to bottom.

    seed -> propose -> execute-validate -> solve -> reward -> update -> commit
               ^---------------------------------------'
               again while no group is live (selfplay.degenerate_retries; the batches join)

Each stage reads the result of the one before and returns its own (azr_core.selfplay.records). The Prefect flow runs
this same function with each stage as a task (`call`), so the UI shows the iteration as this chain.
"""

from __future__ import annotations

import errno
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from azr_core.selfplay import stages
from azr_core.selfplay.commit import commit
from azr_core.selfplay.session import Session


def _direct(stage: Callable[..., Any], *args: Any) -> Any:
    return stage(*args)


def run_iteration(s: Session, *, call: Callable[..., Any] = _direct) -> Any:
    """Run the iteration after the last committed one and commit it; returns the commit's summary (as `call` gives it).

    `call(stage, *args)` runs one stage (the default calls it; the flow wraps it in the stage's Prefect task) and
    also asks `stages.resample` whether to sample the batch again, so that whatever `call` hands between stages stays
    the caller's business.
    """
    iteration = s.last_iteration + 1
    with _disk_full_explained(s, iteration):
        seeded = call(stages.seed, s, iteration)  # once, before the first training iteration
        rewarded = None
        # One batch; sampled again (and joined) while no group is live, up to selfplay.degenerate_retries times
        while rewarded is None or call(stages.resample, s, rewarded):
            proposed = call(stages.propose, s, rewarded or seeded)  # proposer prompts with K references per type
            validated = call(stages.execute_validate, s, proposed)  # every proposal checked and run in the sandbox
            solved = call(stages.solve, s, validated)  # solver batches + learnability probes
            rewarded = call(stages.reward, s, solved)  # graded in the sandbox; rewards; TRR++ advantages
        updated = call(stages.update, s, rewarded)  # old log-probs recomputed; one step per mini-batch; checkpoint
        return call(commit, s, updated)  # Parquet rows, COMMITTED, buffers, MLflow


class DiskFullError(OSError):
    """The run folder's (or checkpoint folder's) disk filled up during an iteration, which was therefore not
    committed; everything committed before it is intact."""


@contextmanager
def _disk_full_explained(s: Session, iteration: int) -> Iterator[None]:
    """A full disk (while writing Parquet or a checkpoint, here or in a policy worker) becomes one error that says
    what happened, that nothing committed is lost, and what to do."""
    try:
        yield
    except DiskFullError:
        raise
    except Exception as exc:
        if getattr(exc, "errno", None) != errno.ENOSPC and "No space left on device" not in str(exc):
            raise
        raise DiskFullError(
            errno.ENOSPC,
            f"no space left on the disk of {s.run_dir} (or of the checkpoints) during iteration {iteration}: the "
            f"iteration was not committed, and the run still holds iteration {s.last_iteration}, intact. Free space "
            "there (old runs, `run.keep_checkpoints`) and run again: it resumes from that iteration. "
            f"[{type(exc).__name__}: {str(exc)[:300]}]",
        ) from exc
