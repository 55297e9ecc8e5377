"""`azr eval run` and `azr eval score`: the benchmark suite, with a model or on completions you already have.

    azr eval run --model models:/azr-policy@champion --suite cruxeval-o,math500 --limit 50 --run runs/azr
    azr eval score cruxeval-o completions.jsonl > graded.jsonl

`score` reads lines `{"id", "completion"}` and writes one line `{"id", "correct", "answer", "reason"}` per input line
to stdout, in input order, then a summary `{"bench", "n", "correct", "score"}` on stderr; a malformed line or an
unknown id exits with status 2 and names the line. These formats are public: keep them stable.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer

from azr_core.eval.config import eval_default as ev

eval_app = typer.Typer(help="Evaluate models on the paper's benchmarks.", no_args_is_help=True)

BENCH_HELP = "cruxeval-o, cruxeval-i, humaneval+, mbpp+, aime24, aime25, amc23, math500, minerva, olympiadbench, gsm8k"
MODEL_HELP = "A model folder, an HF id, models:/azr-policy/N or models:/azr-policy@alias."
SUITE_HELP = f"A suite (paper, code, math, all) or a comma list of: {BENCH_HELP}."
RUN_HELP = "Write every answer and grade to this run folder's evals table."
DATA_HELP = "Folder with your own copy of the benchmark files (same names and formats)."
TEMPLATE_HELP = "raw (the paper's User/Assistant <think> template) or chat."
SAMPLES_HELP = "Completions per item (with --temperature > 0 for pass@k)."
NO_MLFLOW_HELP = "Do not log the scores of a registered version to MLflow."


@eval_app.command("run")
def run(
    model: Annotated[str, typer.Option(help=MODEL_HELP)],
    suite: Annotated[str, typer.Option(help=SUITE_HELP)] = ev("suite"),
    limit: Annotated[int | None, typer.Option(help="Only the first N items of each benchmark.")] = None,
    run_dir: Annotated[Path | None, typer.Option("--run", help=RUN_HELP)] = None,
    data: Annotated[Path | None, typer.Option(help=DATA_HELP)] = None,
    template: Annotated[str, typer.Option(help=TEMPLATE_HELP)] = ev("template"),
    max_new_tokens: Annotated[int, typer.Option(help="Most tokens generated per answer.")] = ev("max_new_tokens"),
    batch_size: Annotated[int, typer.Option(help="Sequences generated together (hf backend).")] = ev("batch_size"),
    backend: Annotated[str, typer.Option(help="auto, hf, hf-batching or vllm.")] = ev("backend"),
    samples: Annotated[int, typer.Option(help=SAMPLES_HELP)] = ev("samples"),
    temperature: Annotated[float, typer.Option(help="0 = greedy.")] = ev("temperature"),
    pass_k: Annotated[list[int] | None, typer.Option("--pass-k", help="Report pass@k (repeatable).")] = None,
    no_mlflow: Annotated[bool, typer.Option("--no-mlflow", help=NO_MLFLOW_HELP)] = False,
) -> None:  # fmt: skip
    """Generate answers with MODEL and grade them; print a JSON summary of the scores."""
    from mlflow.exceptions import MlflowException

    from azr_core.eval.benchmarks import BenchmarkError
    from azr_core.eval.config import EvalConfig
    from azr_core.eval.run import evaluate

    try:
        cfg = EvalConfig(suite=suite, limit=limit, data_dir=data, template=template, max_new_tokens=max_new_tokens,
                         batch_size=batch_size, backend=backend, samples=samples, temperature=temperature,
                         pass_k=pass_k or [1])  # fmt: skip
        result = evaluate(model, cfg, run_dir=run_dir, log_mlflow=not no_mlflow,
                          progress=lambda m: print(m, file=sys.stderr))  # fmt: skip
    except (BenchmarkError, ValueError, OSError, MlflowException) as exc:
        # A bad suite or option, a model folder or HF id that does not load, an unknown registered version.
        print(f"azr eval run: {exc}", file=sys.stderr)
        raise typer.Exit(2) from None
    print(json.dumps(result.summary()))


@eval_app.command("score")
def score_cmd(
    bench: Annotated[str, typer.Argument(help=BENCH_HELP)],
    completions: Annotated[Path, typer.Argument(help='JSON lines {"id", "completion"}; "-" reads stdin.')],
    data: Annotated[Path | None, typer.Option(help=DATA_HELP)] = None,
) -> None:
    """Grade completions without a model: one verdict line per input line on stdout, a summary on stderr."""
    from azr_core.eval import benchmarks
    from azr_core.eval.scoring import Graders, score

    try:
        items = {it.id: it for it in benchmarks.load(bench, data)}
    except benchmarks.BenchmarkError as exc:
        print(f"azr eval score: {exc}", file=sys.stderr)
        raise typer.Exit(2) from None
    text = sys.stdin.read() if str(completions) == "-" else _read(completions)
    ids, texts = [], []
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            if not isinstance(row, dict) or not isinstance(row.get("completion"), str) or "id" not in row:
                raise ValueError('expected an object with "id" and a string "completion"')
        except ValueError as exc:
            print(f"azr eval score: {completions}:{n}: malformed line: {exc}", file=sys.stderr)
            raise typer.Exit(2) from None
        item_id = str(row["id"])
        if item_id not in items:
            print(f"azr eval score: {completions}:{n}: unknown id {item_id!r} for {bench}", file=sys.stderr)
            raise typer.Exit(2)
        ids.append(item_id)
        texts.append(row["completion"])
    with Graders() as graders:
        grades = score(bench, [items[i] for i in ids], texts, graders)
    for g in grades:
        sys.stdout.write(json.dumps({"id": g.id, "correct": g.correct, "answer": g.answer, "reason": g.reason}) + "\n")
    sys.stdout.flush()
    correct = sum(g.correct for g in grades)
    summary = {"bench": bench, "n": len(grades), "correct": correct, "score": correct / len(grades) if grades else 0.0}
    print(json.dumps(summary), file=sys.stderr)


def _read(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except OSError as exc:
        print(f"azr eval score: cannot read {path}: {exc.strerror}", file=sys.stderr)
        raise typer.Exit(2) from None


def register(app: typer.Typer) -> None:
    """Add `azr eval run|score` to the CLI."""
    app.add_typer(eval_app, name="eval")
