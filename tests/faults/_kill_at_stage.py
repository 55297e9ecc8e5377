"""Run one self-play iteration on a run folder and SIGKILL this process at a chosen point (a test helper, run as a
script by test_fault_kill_stages.py).

    python _kill_at_stage.py TMP_PATH POINT      POINT: a stage name, checkpoint, after-commit, or none
"""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/: the scripted policy and its session

from scripted import make_session  # noqa: E402

from azr_core.selfplay.iteration import run_iteration  # noqa: E402


def die() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def main() -> None:
    tmp, point = Path(sys.argv[1]), sys.argv[2]
    s = make_session(tmp, **{"tracking.register_every": 1})
    if point == "checkpoint":
        real = s.policy.save_checkpoint

        def half_written(path):  # part of the checkpoint on disk, then the kill
            real(Path(path).parent / f".{Path(path).name}.partial")
            die()

        s.policy.save_checkpoint = half_written
    if point == "after-commit":  # COMMITTED written; MLflow logging never happened
        s.tracker.log_metrics = lambda *a, **k: die()

    def call(stage, session, previous):
        if stage.__name__.replace("execute_validate", "execute-validate") == point:
            die()
        return stage(session, previous)

    with s:
        print(run_iteration(s, call=call)["committed"], flush=True)


if __name__ == "__main__":
    main()
