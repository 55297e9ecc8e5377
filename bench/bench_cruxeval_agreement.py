"""Precision of the executor on real code: CRUXEval functions validated, their outputs compared with the gold ones.

CRUXEval (Gu et al., 2024) holds ordinary deterministic functions written by people, each with an input and its
known output. Every one of them is an honest program, so each refusal is either a fault of the executor (too strict)
or a property of the sample worth naming. This runs each (code, input) through the same Executor path that
`azr validate` uses (default config: firejail, determinism on) and compares the executor's output with the gold
output AS VALUES.

    .venv/bin/python bench/bench_cruxeval_agreement.py PATH/TO/cruxeval.jsonl   # {"id", "code", "input", "output"}
    .venv/bin/python bench/bench_cruxeval_agreement.py                          # DEFAULT_PATH, when present
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from azr_core.executor import Executor, ExecutorConfig  # noqa: E402
from azr_core.lang.values import LiteralError, parse_literal, values_equal  # noqa: E402

# Where the project's shared benchmark files live on the development machines; any copy works via the argument.
DEFAULT_PATH = Path(__file__).resolve().parents[2] / "shared" / "benchmarks" / "cruxeval_dev.jsonl"


def load(path: Path) -> list[dict]:
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    for n, row in enumerate(rows, 1):
        missing = {"id", "code", "input", "output"} - row.keys()
        if missing:
            raise SystemExit(f"{path}: line {n} lacks {sorted(missing)}")
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("path", nargs="?", type=Path, default=DEFAULT_PATH, help="CRUXEval-style JSON lines")
    ap.add_argument("--timeout", type=float, default=5.0, help="time limit per execution (azr validate's default)")
    ap.add_argument("--workers", type=int, default=0, help="sandbox workers (0 = auto)")
    args = ap.parse_args()
    if not args.path.exists():
        raise SystemExit(f"{args.path} does not exist: pass the path of a CRUXEval JSON-lines file")
    rows = load(args.path)
    cfg = ExecutorConfig(timeout_s=args.timeout, workers=args.workers)
    t0 = time.perf_counter()
    with Executor(cfg) as ex:
        results = ex.validate_many((r["code"], r["input"]) for r in rows)
    elapsed = time.perf_counter() - t0

    agree, wrong, refused = 0, [], []
    for row, res in zip(rows, results, strict=True):
        if not res.valid:
            refused.append((row, res.reason))
            continue
        try:
            same = values_equal(parse_literal(res.output or ""), parse_literal(row["output"]))
        except LiteralError as exc:
            same = False
            res = type(res)(res.valid, f"{res.output} (gold does not parse: {exc})", None)
        if same:
            agree += 1
        else:
            wrong.append((row, res.output))
    print(f"{args.path.name}: {len(rows)} programs, {elapsed:.1f}s, load {open('/proc/loadavg').read().split()[:3]}")
    print(f"AGREE {agree}/{len(rows)} | refused {len(refused)} | valid but different output {len(wrong)}")
    by_category = collections.Counter((reason or "").split(":")[0] for _, reason in refused)
    for category, count in by_category.most_common():
        print(f"  refused, {category}: {count}")
    for row, reason in refused:
        print(f"  REFUSED {row['id']}: {reason}")
    for row, output in wrong:
        print(f"  DIFFERENT {row['id']}: got {output[:100]!s} gold {row['output'][:100]}")


if __name__ == "__main__":
    main()
