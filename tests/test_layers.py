"""The layers of azr_core import only downwards (docs/architecture.md): a static read of every module's imports,
including those inside functions. Imports under `if TYPE_CHECKING:` are for annotations only and are not counted."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1] / "azr_core"

#: Each lower layer and the packages of azr_core it may import at run time (itself always).
ALLOWED = {
    "common": set(),
    "lang": {"common"},
    "executor": {"common", "lang"},
    "store": {"common"},
    "algo": {"common", "lang", "executor"},
}


def _typing_only(tree: ast.Module) -> set[int]:
    """Line numbers of the statements inside `if TYPE_CHECKING:` blocks."""
    lines: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING":
            for stmt in node.body:
                lines.update(range(stmt.lineno, (stmt.end_lineno or stmt.lineno) + 1))
    return lines


def imported_packages(path: Path, *, typing: bool = False) -> dict[str, int]:
    """The azr_core packages (or top-level modules, as 'top:NAME') a module imports at run time (`typing`: for
    annotations too), with a line each."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    typing_only = set() if typing else _typing_only(tree)
    found: dict[str, int] = {}
    for node in ast.walk(tree):
        if getattr(node, "lineno", None) in typing_only:
            continue
        names: list[str] = []
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module == "azr_core":
                names = [f"azr_core.{a.name}" for a in node.names]
            elif node.module.startswith("azr_core."):
                names = [node.module]
        elif isinstance(node, ast.Import):
            names = [a.name for a in node.names if a.name.startswith("azr_core.")]
        for name in names:
            part = name.split(".")[1]
            found.setdefault(part if (ROOT / part).is_dir() else f"top:{part}", node.lineno)
    return found


@pytest.mark.parametrize("layer", sorted(ALLOWED))
def test_a_lower_layer_imports_only_the_layers_below_it(layer):
    problems = []
    for path in sorted((ROOT / layer).rglob("*.py")):
        for package, line in imported_packages(path).items():
            if package != layer and package not in ALLOWED[layer]:
                problems.append(f"{path.relative_to(ROOT.parent)}:{line} imports azr_core.{package}")
    assert not problems, "\n".join(problems)


def test_the_store_knows_neither_the_run_config_nor_the_task_types():
    # not even for annotations: it stores rows (the run config reaches it as a protocol of its own, store.run.RunConfig)
    for path in (ROOT / "store").rglob("*.py"):
        found = imported_packages(path, typing=True)
        assert "top:config" not in found and "algo" not in found, (path, found)


def test_the_check_sees_an_upward_import(tmp_path):
    bad = tmp_path / "m.py"
    bad.write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from azr_core.config import X\n"
                   "def f():\n    from azr_core.selfplay import stages\n")  # fmt: skip
    assert imported_packages(bad) == {"selfplay": 5}  # the function's import counts; the annotation's does not
