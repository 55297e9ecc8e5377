"""Does adding a host add speed? `cpu-tiny` with the real default model on 1 host and on 2 of the simulated cluster
(infra/cluster.sh: network namespaces, one CPU set per host), the driver in azr-h1, one policy rank per host
(`trainer.hostfile` + `trainer.node_launch`, gloo over the hosts' bridge), the sandbox on every host
(`executor.placement=hosts`).

Per host count it measures, in one session:
  rollout   generated tokens/s of `generate` on a fixed set of prompts (split over the ranks), after a warm-up call;
  update    seconds of one optimiser step on a fixed batch (data-parallel over the ranks), the second of two;
  executor  validations/s of CRUXEval programs through the hosts' sandbox pools, after a warm-up batch;
  iteration seconds of a whole self-play iteration (the last of --iterations; the first one seeds);
and the bytes each phase moves between hosts (the hosts' eth0 counters: prompts and completions on the command
channel, gradients between ranks, programs and verdicts to the sandboxes; weights never move: every rank loads the
model from shared storage and data-parallel steps keep the replicas equal). Then a projection to 8 and 64 hosts.

    .venv/bin/python bench/bench_scaleout.py --hosts 1,2 --cores-per-host 1

Its last line is one JSON object: {"hosts": [1, 2], "rollout_ratio": R, "update_ratio": U, "executor_ratio": E,
"iteration_ratio": I, ...}, each ratio = speed on the largest host count / speed on the smallest. Needs root and
iproute2; the cluster is torn down at the end, also on failure. A busy machine makes every figure meaningless: the
hosts' cores must be otherwise idle.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
CLUSTER = ROOT / "infra" / "cluster.sh"
DATA = ROOT / "azr_core" / "eval" / "data" / "cruxeval_dev.jsonl"
NODE_LAUNCH = f"{CLUSTER} exec azr-h{{node}} -- env GLOO_SOCKET_IFNAME=eth0"
PARTS = ("rollout", "update", "executor", "iteration")


# ---- inside the driver's host ----------------------------------------------------------------------------------


def host_bytes(hosts: int) -> int:
    """Bytes sent on the hosts' eth0 (to other hosts; a host's traffic to itself goes over its loopback)."""
    total = 0
    for k in range(1, hosts + 1):
        out = subprocess.run(["ip", "netns", "exec", f"azr-h{k}", "cat", "/sys/class/net/eth0/statistics/tx_bytes"],
                             capture_output=True, text=True, check=True)  # fmt: skip
        total += int(out.stdout)
    return total


def timed(hosts: int, fn):
    """(result, seconds, bytes between hosts) of fn()."""
    b0, t0 = host_bytes(hosts), time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t0, host_bytes(hosts) - b0


def child(args: argparse.Namespace) -> None:
    from azr_core.config import load_config
    from azr_core.policy.rollout.base import SamplingParams
    from azr_core.policy.trainer.records import SequenceRecord
    from azr_core.selfplay.iteration import run_iteration
    from azr_core.selfplay.session import Session
    from azr_core.store import connect

    hosts, work = args.child, Path(args.work)
    hostfile = work / f"hosts-{hosts}"
    hostfile.write_text("".join(f"10.77.0.{k} slots=1\n" for k in range(1, hosts + 1)))
    overrides = [f"run.run_dir={work / f'run-{hosts}'}", "tracking.enabled=false", f"trainer.hostfile={hostfile}",
                 f"trainer.node_launch={NODE_LAUNCH}", "trainer.listen_host=10.77.0.1", "executor.placement=hosts",
                 f"run.seed={args.seed}", f"rollout.seed={args.seed}"]  # fmt: skip
    cfg = load_config(None, overrides, profile="cpu-tiny")
    items = [json.loads(line) for line in DATA.read_text().splitlines() if line.strip()]
    prompts = [f"{it['code']}\n# f({it['input']}) returns" for it in items[: args.prompts]]
    params = SamplingParams(temperature=1.0, max_new_tokens=args.max_new_tokens, seed=args.seed)
    out: dict = {"hosts": hosts}
    with Session(cfg) as s:
        s.policy.generate(prompts[:2], params)  # warm-up: first-call allocations on every rank
        gen, secs, nbytes = timed(hosts, lambda: s.policy.generate(prompts, params))
        tokens = sum(len(c.token_ids) for p in gen for c in p.completions)
        out["rollout"] = {"tokens": tokens, "seconds": secs, "tokens_per_s": tokens / secs, "bytes": nbytes}
        print(f"[{hosts} host(s)] rollout: {tokens} tokens in {secs:.1f} s", flush=True)
        if args.rollout_only:
            Path(args.out).write_text(json.dumps(out))
            return

        records = [SequenceRecord(p.prompt_token_ids, c.token_ids, c.logprobs, 1.0 if i % 2 else -1.0, f"g{i % 4}")
                   for i, p in enumerate(gen) for c in p.completions][: args.train_seqs]  # fmt: skip
        steps = [timed(hosts, lambda: s.policy.train_step(records)) for _ in range(2)]
        out["update"] = {"sequences": len(records), "seconds": steps[-1][1], "first_seconds": steps[0][1],
                         "bytes": steps[-1][2]}  # fmt: skip
        print(f"[{hosts} host(s)] update: {steps[-1][1]:.1f} s ({len(records)} sequences)", flush=True)

        # CRUXEval's programs in turn (each run again: the sandbox caches no execution, only its static checks).
        programs = [(items[k % len(items)]["code"], items[k % len(items)]["input"]) for k in range(args.validations)]
        s.executor.validate_many(programs[:8])  # warm-up: the pools start on first use
        done, secs, nbytes = timed(hosts, lambda: s.executor.validate_many(programs))
        valid = sum(v.valid for v in done)
        out["executor"] = {"validations": len(programs), "valid": valid, "seconds": secs,
                           "per_s": len(programs) / secs, "bytes": nbytes}  # fmt: skip
        print(f"[{hosts} host(s)] executor: {len(programs)} validations ({valid} valid) in {secs:.2f} s", flush=True)

        its = []
        for _ in range(args.iterations):
            _, secs, nbytes = timed(hosts, lambda: run_iteration(s))
            its.append((secs, nbytes))
            print(f"[{hosts} host(s)] iteration {s.last_iteration}: {secs:.1f} s", flush=True)
        with connect(s.run_dir) as con:
            metrics = dict(con.execute("SELECT metrics FROM iterations ORDER BY iteration DESC LIMIT 1").fetchone()[0])
        out["iteration"] = {"seconds": its[-1][0], "bytes": its[-1][1], "all_seconds": [t for t, _ in its],
                            "stages": {k: v for k, v in metrics.items() if k.startswith("seconds/")},
                            "generated_tokens": metrics.get("tokens/generated")}  # fmt: skip
    Path(args.out).write_text(json.dumps(out))


# ---- the parent: cluster, runs, ratios, projection ------------------------------------------------------------


def speed(result: dict, part: str) -> float:
    """Higher is faster, for every part."""
    r = result[part]
    return {"rollout": r.get("tokens_per_s"), "executor": r.get("per_s")}.get(part) or 1.0 / r["seconds"]


def projection(small: dict, large: dict, n_small: int, n_large: int, link_gbps: float) -> dict:
    """Amdahl's law fitted to the two measured host counts per part (a serial share f: t(H)/t(1) = f + (1 - f)/H),
    plus, for the update, the ring all-reduce traffic over a real link: 2 (H - 1)/H times the bytes of one replica's
    gradients per host, at `link_gbps`."""
    out = {}
    for part in PARTS:
        ratio = speed(large, part) / speed(small, part)  # measured speed-up from n_small to n_large hosts
        # Solve f from ratio = (f + (1 - f)/n_small) / (f + (1 - f)/n_large).
        a, b = 1 / n_small, 1 / n_large
        f = (a - ratio * b) / (ratio * (1 - b) - (1 - a)) if ratio * (1 - b) != (1 - a) else 0.0
        f = min(max(f, 0.0), 1.0)
        base = (f + (1 - f) / n_small) / speed(small, part)  # time per unit of work on one host
        proj = {}
        for hosts in (8, 64):
            t = base * (f + (1 - f) / hosts)
            if part in ("update", "iteration") and n_large > 1:
                per_host = large["update"]["bytes"] / n_large / (2 * (n_large - 1) / n_large)
                t += 2 * (hosts - 1) / hosts * per_host * 8 / (link_gbps * 1e9)
            proj[str(hosts)] = round(base / t, 2)  # speed-up over one host
        out[part] = {"serial_share": round(f, 3), "speedup": proj}
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--hosts", default="1,2", help="host counts to measure, comma-separated")
    ap.add_argument("--cores-per-host", type=int, default=1)
    ap.add_argument("--prompts", type=int, default=24, help="prompts of the rollout measurement")
    ap.add_argument("--max-new-tokens", type=int, default=64)
    ap.add_argument("--train-seqs", type=int, default=16, help="sequences in the update's batch")
    ap.add_argument("--validations", type=int, default=2000, help="CRUXEval programs validated (in turn)")
    ap.add_argument("--iterations", type=int, default=2, help="self-play iterations; the last one is timed")
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--rollout-only", action="store_true", help="measure the rollout alone (e.g. with more --prompts)")
    ap.add_argument("--link-gbps", type=float, default=10.0, help="the projection's link between real hosts")
    ap.add_argument("--child", type=int, default=None, help=argparse.SUPPRESS)
    ap.add_argument("--work", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--out", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        child(args)
        return
    counts = sorted({int(h) for h in args.hosts.split(",")})
    if os.geteuid() != 0:
        sys.exit("bench_scaleout needs root (network namespaces): run it as root")
    env = {**os.environ, "AZR_CLUSTER_STATE": tempfile.mkdtemp(prefix="azr-scaleout-cluster-")}
    work = Path(tempfile.mkdtemp(prefix="azr-scaleout-"))
    print(f"load average before: {os.getloadavg()}; work folder {work}", flush=True)
    results = {}
    subprocess.run(["bash", str(CLUSTER), "up", str(max(counts)), "--cores-per-host", str(args.cores_per_host)],
                   env=env, check=True)  # fmt: skip
    try:
        for hosts in counts:
            out = work / f"result-{hosts}.json"
            cmd = ["bash", str(CLUSTER), "exec", "azr-h1", "--", sys.executable, __file__, "--child", str(hosts),
                   "--work", str(work), "--out", str(out), "--prompts", str(args.prompts), "--max-new-tokens",
                   str(args.max_new_tokens), "--train-seqs", str(args.train_seqs), "--validations",
                   str(args.validations), "--iterations", str(args.iterations), "--seed", str(args.seed),
                   *(["--rollout-only"] if args.rollout_only else [])]  # fmt: skip
            subprocess.run(cmd, env=env, cwd=ROOT, check=True)
            results[hosts] = json.loads(out.read_text())
    finally:
        subprocess.run(["bash", str(CLUSTER), "down"], env=env)
        subprocess.run(f"rm -rf {work}/run-*/checkpoints /dev/shm/deepspeed_allreduce_buffer_*", shell=True)
    lo, hi = results[counts[0]], results[counts[-1]]
    if args.rollout_only:
        ratio = speed(hi, "rollout") / speed(lo, "rollout")
        for h in counts:
            print(f"rollout {h} host(s): {results[h]['rollout']['tokens_per_s']:.2f} tok/s")
        print(json.dumps({"hosts": counts, "prompts": args.prompts, "rollout_ratio": round(ratio, 3)}))
        return
    print(f"\n{'part':<10}" + "".join(f"{f'{h} host(s)':>16}" for h in counts) + f"{'ratio':>8}{'bytes/host':>14}")
    units = {"rollout": "tok/s", "update": "s", "executor": "val/s", "iteration": "s"}
    ratios = {}
    for part in PARTS:
        vals = [results[h][part].get("tokens_per_s") or results[h][part].get("per_s") or results[h][part]["seconds"]
                for h in counts]  # fmt: skip
        ratios[part] = speed(hi, part) / speed(lo, part)
        moved = hi[part]["bytes"] / counts[-1]
        print(f"{part:<10}" + "".join(f"{v:>10.2f} {units[part]:<5}" for v in vals)
              + f"{ratios[part]:>8.2f}{moved:>14,.0f}")  # fmt: skip
    stages = {h: results[h]["iteration"]["stages"] for h in counts}
    print("iteration stages (s): " + "; ".join(f"{h} host(s) " + ", ".join(f"{k.split('/')[1]} {v:.1f}"
          for k, v in sorted(stages[h].items())) for h in counts))  # fmt: skip
    proj = projection(lo, hi, counts[0], counts[-1], args.link_gbps) if len(counts) > 1 else {}
    for part, p in proj.items():
        print(f"projection {part}: serial share {p['serial_share']}, speed-up over 1 host: 8 hosts "
              f"{p['speedup']['8']}x, 64 hosts {p['speedup']['64']}x")  # fmt: skip
    print("projection assumptions: Amdahl's law with the serial share fitted to the two measured host counts; "
          f"the update adds a ring all-reduce of the measured gradient bytes over {args.link_gbps:g} Gb/s links; "
          "batches large enough for every rank (cpu-tiny's are not: 18 proposer prompts cap the rollout's "
          "speed-up at 18 ranks); the driver, store and checkpoint stay on one host.")  # fmt: skip
    summary = {"hosts": counts, **{f"{p}_ratio": round(ratios[p], 3) for p in PARTS},
               "bytes_per_iteration": hi["iteration"]["bytes"], "update_bytes": hi["update"]["bytes"],
               "rollout_bytes": hi["rollout"]["bytes"], "executor_bytes": hi["executor"]["bytes"],
               "projection": {p: v["speedup"] for p, v in proj.items()}}  # fmt: skip
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
