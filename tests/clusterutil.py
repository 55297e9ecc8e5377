"""A policy worker group's update on a fixed batch, as JSON: run on one host, or as the driver of a multi-host group
inside the simulated cluster (infra/cluster.sh). Used by tests/test_cluster_ranks.py.

    python tests/clusterutil.py --tiny DIR --out RESULT.json [--workers N] [--hostfile H --node-launch CMD
        --listen ADDR] [--resume-from CKPT] [--save CKPT] [--selfplay RUN_DIR [--kill-at STAGE]]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def batch() -> list:
    """A fixed batch: the same token ids and advantages wherever it runs (no sampling)."""
    from azr_core.policy.trainer.records import SequenceRecord

    rows = []
    for i in range(8):
        prompt = [(7 * i + j) % 50 + 3 for j in range(5 + i % 3)]
        completion = [(11 * i + j) % 50 + 3 for j in range(3 + i % 4)]
        rows.append(
            SequenceRecord(prompt, completion, [0.0] * len(completion), (-1) ** i * (0.3 + 0.1 * i), f"g{i % 2}")
        )
    return rows


def sandbox_items(path: str) -> tuple[list[tuple[str, str]], list]:
    """CRUXEval items as validation items, and grading requests: the gold output (right) and a wrong one, in turn."""
    from azr_core.executor.executor import GradeRequest

    rows = [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]
    items = [(r["code"], r["input"]) for r in rows]
    grades = [GradeRequest("deduction", r["output"] if k % 2 == 0 else "'surely not'", program=r["code"],
                           input=r["input"], output=r["output"]) for k, r in enumerate(rows)]  # fmt: skip
    return items, grades


def sandbox_check(group, path: str) -> dict:
    """Validation and grading of a CRUXEval file on the hosts' sandboxes (HostSandboxes, as a run uses them)."""
    from dataclasses import asdict

    from azr_core.policy.trainer.sandboxes import HostSandboxes

    sandboxes = HostSandboxes(group)
    items, grades = sandbox_items(path)
    valid = sandboxes.validate_many(items)
    graded = sandboxes.grade_many(grades)
    per_host = {rank: stats["executions"] for rank, (stats, _) in sandboxes.per_host.items()}
    return {"info": group.info, "hosts": sandboxes.sandbox_ranks(), "stats": sandboxes.stats, "per_host": per_host,
            "validated": [asdict(v) for v in valid], "graded": [asdict(g) for g in graded]}  # fmt: skip


def kill_check(group, rank: int) -> dict:
    """A rank killed outright (as a host's OOM killer or a lost host would) while the group is up: what the next
    command reports, how fast, and whether anything of the group is left running."""
    import os
    import signal
    import time

    from azr_core.policy.trainer.client import WorkerError

    group.start()
    info = group.ping()
    os.kill(info[rank]["pid"], signal.SIGKILL)
    start = time.monotonic()
    try:
        group.train_step(batch())
        error = None
    except WorkerError as exc:
        error = {"rank": exc.rank, "host": exc.host, "message": str(exc).splitlines()[0]}
    seconds = time.monotonic() - start
    time.sleep(1)
    alive = []
    for i in info:
        try:
            os.kill(i["pid"], 0)
            alive.append(i["pid"])
        except ProcessLookupError:
            pass
    return {"error": error, "seconds": seconds, "alive": alive, "stopped": group.proc is None}


def selfplay_check(args: argparse.Namespace) -> dict:
    """One self-play iteration of the tiny model on a run folder with the group over the hostfile's hosts; with
    `kill_at`, rank 1 is SIGKILLed as that stage begins. What was committed before and after, and the error."""
    import os
    import signal
    import time

    from azr_core.config import load_config
    from azr_core.policy.trainer.client import WorkerError
    from azr_core.selfplay.iteration import run_iteration
    from azr_core.selfplay.session import Session
    from azr_core.store import read_commit

    overrides = [f"model.name_or_path={args.tiny}", f"run.run_dir={args.selfplay}", "tracking.enabled=false",
                 "selfplay.prompt_template=raw", "selfplay.batch_per_group=1", "selfplay.references_k=1",
                 "selfplay.induction_inputs=2", "selfplay.learnability_rollouts=1", "rollout.max_new_tokens=8",
                 "buffers.seed_max_rounds=0", "store.fsync=false", f"trainer.hostfile={args.hostfile}",
                 f"trainer.node_launch={args.node_launch}", f"trainer.listen_host={args.listen}",
                 "trainer.worker_timeout_s=120"]  # fmt: skip
    cfg = load_config(None, overrides, profile="cpu-tiny")
    commit = read_commit(args.selfplay)
    result: dict = {"before": commit.iteration if commit else None, "error": None, "seconds": None}
    killed_at: list[float] = []

    def call(stage, session, previous):
        if stage.__name__ == args.kill_at and not killed_at:
            os.kill(session.policy.ping()[1]["pid"], signal.SIGKILL)
            killed_at.append(time.monotonic())
        return stage(session, previous)

    try:
        with Session(cfg) as s:
            result["ranks"] = [[i["rank"], i["node"]] for i in s.policy.info]
            run_iteration(s, call=call)
    except WorkerError as exc:
        result["error"] = {"rank": exc.rank, "host": exc.host, "message": str(exc).splitlines()[0]}
        result["seconds"] = time.monotonic() - killed_at[0]
    commit = read_commit(args.selfplay)
    result["after"] = commit.iteration if commit else None
    return result


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--tiny", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--hostfile", default=None)
    ap.add_argument("--node-launch", default=None)
    ap.add_argument("--listen", default="127.0.0.1")
    ap.add_argument("--master-port", type=int, default=None)
    ap.add_argument("--resume-from", default=None, help="load this checkpoint before the step")
    ap.add_argument("--save", default=None, help="save a checkpoint after the step")
    ap.add_argument("--log", default=None)
    ap.add_argument("--kill-rank", type=int, default=None, help="SIGKILL this rank, then ask for an update")
    ap.add_argument("--sandbox", default=None, help="a CRUXEval jsonl: validate and grade it on the hosts' sandboxes")
    ap.add_argument("--selfplay", default=None, help="a run folder: one self-play iteration on it (selfplay_check)")
    ap.add_argument("--kill-at", default=None, help="with --selfplay: SIGKILL rank 1 as this stage begins")
    args = ap.parse_args()
    if args.selfplay:
        Path(args.out).write_text(json.dumps(selfplay_check(args)))
        return

    from azr_core.executor.config import ExecutorConfig
    from azr_core.policy.config import ModelConfig, RolloutConfig, TrainerConfig
    from azr_core.policy.trainer.client import PolicyWorkers
    from azr_core.policy.trainer.records import SequenceRecord

    cfg = TrainerConfig(num_workers=args.workers, hostfile=args.hostfile, node_launch=args.node_launch,
                        listen_host=args.listen, master_port=args.master_port, zero_stage=2, lr=1e-3,
                        micro_batch_size=2, worker_timeout_s=300)  # fmt: skip
    executor = ExecutorConfig(placement="hosts", workers=4, timeout_s=5.0) if args.sandbox else None
    group = PolicyWorkers(ModelConfig(name_or_path=args.tiny), RolloutConfig(batch_size=4), cfg,
                          log_path=Path(args.log) if args.log else None, start_timeout_s=500,
                          executor=executor)  # fmt: skip
    if args.kill_rank is not None:
        Path(args.out).write_text(json.dumps(kill_check(group, args.kill_rank)))
        return
    if args.sandbox:
        with group:
            Path(args.out).write_text(json.dumps(sandbox_check(group, args.sandbox)))
        return
    with group:
        info = group.ping()
        if args.resume_from:
            group.load_checkpoint(args.resume_from)
        records = batch()
        old = group.compute_logprobs(records)  # the sampling weights' log-probs: a ratio of 1 on the first pass
        records = [SequenceRecord(r.prompt_token_ids, r.completion_token_ids, lp, r.advantage, r.group)
                   for r, lp in zip(records, old, strict=True)]  # fmt: skip
        metrics = group.train_step(records)
        after = group.compute_logprobs(records)
        if args.save:
            group.save_checkpoint(args.save)
    result = {"info": info, "metrics": metrics, "logprobs_before": old, "logprobs_after": after,
              "refused_peers": group.refused_peers}  # fmt: skip
    Path(args.out).write_text(json.dumps(result))


if __name__ == "__main__":
    main()
