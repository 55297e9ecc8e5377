"""Screen proposer levers before paying for a learning run: what the untrained model proposes under each setting.

    .venv/bin/python bench/bench_proposer_screen.py --samples 24 \\
        profile= k0=selfplay.references_k=0 worked=selfplay.worked_example=true

Each variant is `NAME=override[,override...]` over `cpu-tiny` (an empty list: the profile as it is). For each, the
embedded model (in this process, the hf backend, no training) writes `--samples` deduction, abduction and induction
proposals on the zero triplet's buffers, through the stages' own prompt builder, sampler, parser and sandbox. Per
variant and type it prints: valid proposals, valid ones whose program copies a reference's (canonical program,
azr_core/algo/proposer_measures.py), valid deduction/abduction programs new to the buffers, and the distinct ones
among them, with the seconds it took. A lever that does not make the first iteration's proposer write new valid
programs is unlikely to make a run's proposer do it: this is the cheap first filter, not the verdict (that is
bench/bench_learning.py's, through bench/bench_levers.py).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

TYPES = ("deduction", "abduction", "induction")


def screen(overrides: list[str], samples: int, seed: int) -> dict[str, dict[str, int]]:
    from azr_core.algo.program_keys import program_key
    from azr_core.config import load_config
    from azr_core.policy.rollout import make_backend
    from azr_core.selfplay import stages
    from azr_core.selfplay.session import Session

    with tempfile.TemporaryDirectory() as tmp:
        base = [f"run.run_dir={tmp}/run", f"tracking.tracking_uri=sqlite:///{tmp}/mlflow.db", "store.fsync=false",
                f"rollout.seed={seed}"]  # fmt: skip
        cfg = load_config(None, base + overrides, profile="cpu-tiny")
        backend = make_backend(cfg.model, cfg.rollout, progress=lambda *_: None)
        try:
            with Session(cfg, policy=backend, tokenizer=backend.tokenizer) as s:
                known = set(s.buffers.novelty_index()[0])  # programs already buffered: the zero triplet's
                proposals, _ = stages._propose_round(s, [t for t in TYPES for _ in range(samples)], "propose")
                stages._validate(s, proposals, 1)
        finally:
            backend.close()
    out: dict[str, dict[str, int]] = {}
    for t in TYPES:
        mine = [p for p in proposals if p.task_type == t and p.valid and p.outcome and p.outcome.task]
        keys = [program_key(p.outcome.task.program) for p in mine]
        copies = sum(k in {program_key(r.program) for r in p.references} for p, k in zip(mine, keys, strict=True))
        new = [k for k in keys if k not in known] if t != "induction" else []
        out[t] = {"valid": len(mine), "copies": copies, "new_programs": len(new), "distinct_new": len(set(new))}
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("variants", nargs="+", help="NAME=override[,override...] (NAME= alone: the profile)")
    ap.add_argument("--samples", type=int, default=24, help="proposals per task type and variant")
    ap.add_argument("--seed", type=int, default=0, help="rollout seed (the same for every variant)")
    args = ap.parse_args()
    print(f"{args.samples} proposals per type on the zero triplet, cpu-tiny, untrained model")
    print("variant\t" + "\t".join(f"{t[:3]}:valid\t{t[:3]}:copies\t{t[:3]}:new\t{t[:3]}:distinct" for t in TYPES[:2])
          + "\tind:valid\tseconds")  # fmt: skip
    for spec in args.variants:
        name, _, over = spec.partition("=")
        start = time.perf_counter()
        r = screen([o for o in over.split(",") if o], args.samples, args.seed)
        cells = [name]
        for t in TYPES[:2]:
            cells += [str(r[t][k]) for k in ("valid", "copies", "new_programs", "distinct_new")]
        cells += [str(r["induction"]["valid"]), f"{time.perf_counter() - start:.0f}"]
        print("\t".join(cells), flush=True)


if __name__ == "__main__":
    main()
