"""The Prefect automation `azr up` creates: a flow run whose heartbeats stop is marked Crashed, which frees its
deployment's concurrency slot at once. Written as the REST body: azr_core never imports prefect."""

from __future__ import annotations

HEARTBEAT_S = 30  # flow-run heartbeat period (Prefect's minimum); the default, 180 s, is too slow to notice a crash
CRASH_AFTER_S = 90  # a run with no heartbeat for this long is marked Crashed: 3 missed beats, never one late beat
CRASH_AUTOMATION = "azr: crash silent flow runs"


def crash_automation() -> dict[str, object]:
    """The Prefect automation that marks a flow run Crashed when its heartbeats stop (a proactive trigger).

    Prefect's documented recipe ("detect zombie flows"): after a heartbeat, expect another heartbeat or a terminal
    state within CRASH_AFTER_S, per flow run; else set the run CRASHED, which releases its deployment concurrency slot
    at once, so the next scheduled run goes ahead. Written as the REST body: this module never imports prefect.
    """
    return {
        "name": CRASH_AUTOMATION,
        "description": f"Flow runs that send no heartbeat for {CRASH_AFTER_S} s (heartbeat every {HEARTBEAT_S} s) "
        "were killed with their process: mark them Crashed. Created by `azr up`.",
        "enabled": True,
        "trigger": {
            "type": "event",
            "posture": "Proactive",
            "after": ["prefect.flow-run.heartbeat"],
            "expect": [
                "prefect.flow-run.heartbeat",
                "prefect.flow-run.Completed",
                "prefect.flow-run.Failed",
                "prefect.flow-run.Cancelled",
                "prefect.flow-run.Crashed",
            ],  # fmt: skip
            "match": {"prefect.resource.id": ["prefect.flow-run.*"]},
            "for_each": ["prefect.resource.id"],
            "threshold": 1,
            "within": CRASH_AFTER_S,
        },
        "actions": [
            {
                "type": "change-flow-run-state",
                "state": "CRASHED",
                "message": f"No heartbeat for {CRASH_AFTER_S} s: the flow run's process is gone.",
            }
        ],  # fmt: skip
    }
