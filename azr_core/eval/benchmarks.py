"""The evaluation sets: one loader per benchmark, each turning its data file into plain `Item`s.

The files ship in `azr_core/eval/data/` (sources and licences in its README); `data_dir` points at a user's own copy
with the same file names and formats (the whole of CRUXEval, say). Item ids are stable: `azr eval score` reads them.
"""

from __future__ import annotations

import gzip
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

DATA_DIR = Path(__file__).resolve().parent / "data"
Kind = Literal["crux-o", "crux-i", "code", "math"]


@dataclass(frozen=True)
class Item:
    """One benchmark question. `gold` is what grading compares against; `extra` holds what code grading needs."""

    id: str
    question: str
    gold: str
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Benchmark:
    name: str
    kind: Kind
    file: str
    description: str


BENCHMARKS: dict[str, Benchmark] = {
    b.name: b
    for b in (
        Benchmark("cruxeval-o", "crux-o", "cruxeval_dev.jsonl", "CRUXEval-O: predict f(input)"),
        Benchmark("cruxeval-i", "crux-i", "cruxeval_dev.jsonl", "CRUXEval-I: find an input giving the output"),
        Benchmark("humaneval+", "code", "HumanEvalPlus.jsonl.gz", "HumanEval+: base and plus tests"),
        Benchmark("mbpp+", "code", "MbppPlus.jsonl.gz", "MBPP+: base and plus tests"),
        Benchmark("aime24", "math", "aime24.jsonl", "AIME 2024"),
        Benchmark("aime25", "math", "aime25.jsonl", "AIME 2025"),
        Benchmark("amc23", "math", "amc23.jsonl", "AMC 2023"),
        Benchmark("math500", "math", "math500.jsonl", "MATH-500"),
        Benchmark("minerva", "math", "minerva_math.jsonl", "Minerva math"),
        Benchmark("olympiadbench", "math", "olympiadbench.jsonl", "OlympiadBench"),
        Benchmark("gsm8k", "math", "gsm8k.jsonl", "GSM8K test (an extra: not in the paper's table)"),
    )
}

#: Named suites for `--suite`, besides single names and comma lists.
SUITES: dict[str, tuple[str, ...]] = {
    "code": ("cruxeval-o", "cruxeval-i", "humaneval+", "mbpp+"),
    "math": ("aime24", "aime25", "amc23", "math500", "minerva", "olympiadbench"),
    "paper": (
        "cruxeval-o",
        "cruxeval-i",
        "humaneval+",
        "mbpp+",
        "aime24",
        "aime25",
        "amc23",
        "math500",
        "minerva",
        "olympiadbench",
    ),  # fmt: skip
    "all": tuple(BENCHMARKS),
}


class BenchmarkError(ValueError):
    """An unknown benchmark name, or a data file that is missing or malformed."""


def resolve_suite(names: str | list[str] | tuple[str, ...]) -> list[str]:
    """Benchmark names from a suite spec: `paper`, `cruxeval-o,math500`, or a list of either."""
    parts = names.split(",") if isinstance(names, str) else list(names)
    out: list[str] = []
    for part in (p.strip() for p in parts):
        if not part:
            continue
        found = SUITES.get(part) or ((part,) if part in BENCHMARKS else None)
        if found is None:
            raise BenchmarkError(
                f"unknown benchmark or suite {part!r}; benchmarks: {', '.join(BENCHMARKS)}; suites: {', '.join(SUITES)}"
            )
        out += [n for n in found if n not in out]
    if not out:
        raise BenchmarkError("empty suite: name at least one benchmark")
    return out


def load(name: str, data_dir: str | Path | None = None, *, limit: int | None = None) -> list[Item]:
    """The items of benchmark `name` in file order (the first `limit` of them when given)."""
    if name not in BENCHMARKS:
        raise BenchmarkError(f"unknown benchmark {name!r}; known: {', '.join(BENCHMARKS)}")
    bench = BENCHMARKS[name]
    path = Path(data_dir or DATA_DIR) / bench.file
    if not path.is_file():
        raise BenchmarkError(f"{name}: data file {path} is missing; point --data at a folder holding {bench.file}")
    rows = _read_rows(path)
    items = [_LOADERS[bench.kind](name, i, row) for i, row in enumerate(rows)]
    return items[:limit] if limit else items


def _read_rows(path: Path) -> list[dict[str, Any]]:
    opener = gzip.open if path.suffix == ".gz" else open
    rows = []
    with opener(path, "rt", encoding="utf-8") as fh:
        for n, line in enumerate(fh, 1):
            if line.strip():
                try:
                    rows.append(json.loads(line))
                except json.JSONDecodeError as exc:
                    raise BenchmarkError(f"{path}:{n}: not JSON ({exc})") from None
    return rows


def _crux(name: str, _i: int, row: dict[str, Any]) -> Item:
    output_side = name == "cruxeval-o"
    return Item(
        id=str(row["id"]),
        question=row["code"],
        gold=row["output"] if output_side else row["input"],
        extra={"code": row["code"], "input": row["input"], "output": row["output"]},
    )


def _code(name: str, _i: int, row: dict[str, Any]) -> Item:
    base, plus = row["base_input"], row["plus_input"]
    # Some copies store the input lists as JSON text.
    base = json.loads(base) if isinstance(base, str) else base
    plus = json.loads(plus) if isinstance(plus, str) else plus
    return Item(
        id=row["task_id"],
        question=row["prompt"],
        gold=row["canonical_solution"],
        extra={
            "entry_point": row["entry_point"],
            "prompt": row["prompt"],
            "canonical": (row["prompt"] + row["canonical_solution"])
            if name == "humaneval+"
            else row["canonical_solution"],
            "base_input": base,
            "plus_input": plus,
            "atol": float(row.get("atol") or 0),
        },
    )


def _math(name: str, i: int, row: dict[str, Any]) -> Item:
    if name == "gsm8k":
        return Item(str(row.get("idx", i)), row["question"], row["answer"].split("####")[-1].strip().replace(",", ""))
    if name == "minerva":
        return Item(str(row.get("idx", i)), row["problem"], last_boxed(row["solution"]) or "")
    if name == "olympiadbench":
        final = row["final_answer"]
        gold = final[0] if isinstance(final, list) else str(final)
        return Item(str(row.get("id", i)), row["question"], gold.strip().strip("$"))
    if name == "math500":
        return Item(str(row.get("unique_id", i)), row["problem"], str(row["answer"]))
    gold = row["answer"]
    if isinstance(gold, float) and gold.is_integer():
        gold = int(gold)  # AMC's 27.0 is 27
    return Item(str(row.get("id", i)), row.get("problem") or row["question"], str(gold))


_LOADERS = {"crux-o": _crux, "crux-i": _crux, "code": _code, "math": _math}


def last_boxed(text: str) -> str | None:
    """The content of the last `\\boxed{...}` (or `\\fbox{...}`) in `text`, braces balanced; None when absent.

    >>> last_boxed(r"so $x=\\boxed{\\frac{1}{2}}$ and")
    '\\\\frac{1}{2}'
    """
    start = max(text.rfind("\\boxed"), text.rfind("\\fbox"))
    if start < 0:
        return None
    i = text.find("{", start)
    if i < 0:
        rest = text[start:].split("$")[0]  # `\boxed 5`
        return rest.removeprefix("\\boxed").strip() or None
    depth = 0
    for j in range(i, len(text)):
        if text[j] == "{":
            depth += 1
        elif text[j] == "}":
            depth -= 1
            if depth == 0:
                return text[i + 1 : j].strip()
    return None
