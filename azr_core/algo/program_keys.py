"""What makes two proposals the same: canonical programs, program keys and task keys (pure functions).

"The same task" means the same canonical program (`program_key`: comments, docstrings, layout, annotations and local
names do not count; function names and globals do) with the same input value(s) (`input_value`: `'a'` and `"a"` are
one value). The novelty measures (`azr_core.algo.proposer_measures`), the buffers' novelty index and the copy rewards
all compare through these keys.
"""

from __future__ import annotations

import ast
import hashlib
from collections.abc import Iterable

from azr_core.algo.tasks import Task, TaskType, type_name

_PARSE_ERRORS = (SyntaxError, ValueError, RecursionError, MemoryError)


def drop_docstrings(tree: ast.AST) -> ast.AST:
    """Remove the docstring (a first statement that is a string constant) of the module, every function and class."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Module | ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
                if isinstance(body[0].value.value, str):
                    node.body = body[1:] or [ast.Pass()]
    return tree


_ENDS_BLOCK = (ast.Return, ast.Raise, ast.Continue, ast.Break)


def _drop_unreachable(tree: ast.AST) -> ast.AST:
    """Remove the statements after a `return`, `raise`, `continue` or `break` in the same block: they never run, so
    `return x` followed by more code is still `return x` (a small model pads its programs so)."""
    for node in ast.walk(tree):
        for name in ("body", "orelse", "finalbody"):
            block = getattr(node, name, None)
            if isinstance(block, list) and block and isinstance(block[0], ast.stmt):
                end = next((k for k, stmt in enumerate(block) if isinstance(stmt, _ENDS_BLOCK)), None)
                if end is not None:
                    setattr(node, name, block[: end + 1])
    return tree


class _Normalise(ast.NodeTransformer):
    """What does not change what a program computes: type annotations are dropped, and the names a function binds
    (its parameters and local variables) become `v0, v1, ...` in order of first appearance, per function, so
    `def f(x: int) -> int: return x` and `def f(y): return y` are one program. Attribute names, globals, builtins,
    module-level names and the function names themselves are kept."""

    def _function(self, node: ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda) -> ast.AST:
        args = node.args
        params = [*args.posonlyargs, *args.args, *args.kwonlyargs, *filter(None, [args.vararg, args.kwarg])]
        local = [a.arg for a in params]
        body = node.body if isinstance(node.body, list) else [node.body]
        for stmt in body:
            for n in ast.walk(stmt):
                if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Store) and n.id not in local:
                    local.append(n.id)
        names = {name: f"v{i}" for i, name in enumerate(local)}
        for a in params:
            a.arg, a.annotation = names[a.arg], None
        if not isinstance(node, ast.Lambda):
            node.returns = None
        self.generic_visit(node)
        for stmt in body:  # inner functions renamed their own names already; these are this function's
            for n in ast.walk(stmt):
                if isinstance(n, ast.Name) and n.id in names:
                    n.id = names[n.id]
        return node

    visit_FunctionDef = visit_AsyncFunctionDef = visit_Lambda = _function

    def visit_AnnAssign(self, node: ast.AnnAssign) -> ast.AST:
        self.generic_visit(node)
        if node.value is None:
            return ast.Pass()
        return ast.Assign(targets=[node.target], value=node.value, lineno=node.lineno)


def parse_program(program: str) -> ast.Module | None:
    """The parse tree, or None for a text that does not parse."""
    try:
        return ast.parse(program)
    except _PARSE_ERRORS:
        return None


def canonical_program(program: str) -> str:
    """The program as a comparison sees it: `ast.dump` of its parse tree without docstrings.

    Comments, blank lines, indentation width, quote style, docstrings, type annotations and code after a block's
    `return` (or `raise`, `continue`, `break`) vanish, and each
    function's parameters and local variables are renamed in order of appearance (`_Normalise`), so a renamed
    variable is the same program; function names, attributes and globals are kept. A text that does not parse
    falls back to itself, stripped. The dump follows the running Python's `ast`, so it is compared within one
    process and never stored.

    >>> canonical_program("def f(x):\\n    '''doc'''\\n    return x  # same") == canonical_program("def f(x): return x")
    True
    >>> canonical_program("def f(x):\\n    return x\\n    return 1") == canonical_program("def f(x): return x")
    True
    """
    tree = parse_program(program)
    if tree is None:
        return "text:" + program.strip()
    try:
        return ast.dump(_Normalise().visit(_drop_unreachable(drop_docstrings(tree))))
    except RecursionError:  # a pathologically deep tree
        return "text:" + program.strip()


def _digest(text: str) -> str:
    return hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=16).hexdigest()


def program_key(program: str) -> str:
    """A short digest of `canonical_program`: equal for programs that differ only in comments, docstrings, layout."""
    return _digest(canonical_program(program))


def input_value(text: str) -> str:
    """The value of a call's argument text (`[1, 2], 'a'`) as a comparison sees it: `ast.dump` of the arguments of
    `f(<text>)`, so `'a'` and `"a"`, `[1,2]` and `[1, 2]` are one value; the stripped text when it does not parse."""
    try:
        call = ast.parse(f"f({text})", mode="eval").body
    except _PARSE_ERRORS:
        return "text:" + text.strip()
    if not isinstance(call, ast.Call):  # `text` closed the call early: not plain arguments
        return "text:" + text.strip()
    return ast.dump(call)


def task_key(task_type: TaskType | str, prog_key: str, inputs: Iterable[str]) -> str:
    """The key of a task: its type, its canonical program and its input value(s) (induction: their set)."""
    values = sorted({input_value(x) for x in inputs})
    return _digest("\x00".join([str(type_name(task_type)), prog_key, *values]))


def task_keys(task: Task) -> tuple[str, str]:
    """(program key, task key) of a task."""
    pk = program_key(task.program)
    return pk, task_key(task.task_type, pk, task.all_inputs)
