"""Math answers graded with `math-verify` (the checker the reference evaluation uses), in a child process.

math-verify bounds its own parsing and comparison with `signal.alarm`, which works only in a process's main thread:
a Prefect task or a server thread is not one. So grading always runs in a child `python -m azr_core.eval.mathgrade`
(whose main thread it is), fed JSON lines, with math-verify's per-item timeouts inside and an overall timeout of
ours around the child; a child that hangs or dies fails the remaining items with that reason, never the caller.
"""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import dataclass

ITEM_TIMEOUT_S = 5  # math-verify's parsing and verify timeouts, each


@dataclass(frozen=True)
class MathVerdict:
    correct: bool
    reason: str | None


def grade_math(pairs: list[tuple[str, str | None]], *, item_timeout_s: int = ITEM_TIMEOUT_S) -> list[MathVerdict]:
    """Grade (gold, predicted answer) pairs; a None answer is wrong ("no answer")."""
    todo = [i for i, (_, ans) in enumerate(pairs) if ans is not None and ans.strip()]
    verdicts = [MathVerdict(False, "no answer") for _ in pairs]
    if not todo:
        return verdicts
    payload = "".join(json.dumps({"gold": pairs[i][0], "answer": pairs[i][1]}) + "\n" for i in todo)
    budget = 30 + len(todo) * 3 * item_timeout_s
    try:
        proc = subprocess.run([sys.executable, "-m", "azr_core.eval.mathgrade", str(item_timeout_s)], input=payload,
                              capture_output=True, text=True, timeout=budget)  # fmt: skip
        lines = proc.stdout.splitlines()
        failure = None if proc.returncode == 0 else f"grader exited {proc.returncode}: {proc.stderr.strip()[-200:]}"
    except subprocess.TimeoutExpired as exc:
        lines = (exc.stdout or b"").decode(errors="replace").splitlines() if isinstance(exc.stdout, bytes) else []
        failure = f"grader timed out after {budget}s"
    for k, i in enumerate(todo):
        if k < len(lines):
            d = json.loads(lines[k])
            verdicts[i] = MathVerdict(bool(d["correct"]), d.get("reason"))
        else:
            verdicts[i] = MathVerdict(False, failure or "grader gave no verdict")
    return verdicts


def _verify_one(gold: str, answer: str, timeout: int) -> tuple[bool, str | None]:
    from math_verify import ExprExtractionConfig, LatexExtractionConfig, parse, verify

    configs = [LatexExtractionConfig(), ExprExtractionConfig()]
    gold_p = parse(f"${gold}$", extraction_config=configs, parsing_timeout=timeout)
    if not gold_p:
        gold_p = parse(gold, extraction_config=configs, parsing_timeout=timeout)
    if not gold_p:
        return False, "gold answer did not parse"
    pred_p = parse(f"${answer}$", extraction_config=configs, parsing_timeout=timeout)
    if not pred_p:
        pred_p = parse(answer, extraction_config=configs, parsing_timeout=timeout)
    if not pred_p:
        return False, "answer did not parse"
    if verify(gold_p, pred_p, timeout_seconds=timeout):
        return True, None
    return False, "not equivalent"


def main() -> None:
    """Child: read {"gold", "answer"} lines, write {"correct", "reason"} lines, flushing each."""
    import logging

    logging.disable(logging.WARNING)  # math-verify logs every timeout; the verdict says it
    timeout = int(sys.argv[1]) if len(sys.argv) > 1 else ITEM_TIMEOUT_S
    for line in sys.stdin:
        d = json.loads(line)
        try:
            ok, reason = _verify_one(d["gold"], d["answer"], timeout)
        except Exception as exc:  # noqa: BLE001 - one bad item must not stop the batch
            ok, reason = False, f"grader error: {type(exc).__name__}: {str(exc)[:120]}"
        sys.stdout.write(json.dumps({"correct": ok, "reason": reason}) + "\n")
        sys.stdout.flush()


if __name__ == "__main__":
    main()
