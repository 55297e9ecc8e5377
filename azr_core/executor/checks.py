"""Static checks on a program before it runs: the one place that says what model-written code may not touch.

Two layers stand behind these checks (the firejail sandbox and the runner's guarded builtins), so the checks aim to
reject early and explain why, not to be the only wall. A program is refused when it

- does not parse, is too large, or defines no top-level function `f`;
- imports a banned module by any route: `import`/`from … import`, or a runtime route (`__import__`, `importlib`,
  `exec`/`eval`/`compile`, `getattr` and friends on builtins, `open`, …) named in BANNED_NAMES, where the name
  resolves to the builtin (scopes are resolved: a parameter named `input` or a local `id` is the program's own);
- reaches interpreter internals through dunder attributes (`().__class__.__base__.__subclasses__()`), frame and
  code attributes (`f_globals`, `gi_frame`, …), or strings that name them (`"{0.__class__}".format(x)`).

What honest code does is accepted: ordinary methods that share a builtin's name (`re.compile`, `str.format_map`),
parameters and locals with such names, strings such as `'__main__'`. bench/bench_cruxeval_agreement.py measures it
on human-written benchmark functions.
"""

from __future__ import annotations

import ast
import re
import symtable
from dataclasses import dataclass

BANNED_MODULE_GROUPS: dict[str, tuple[str, ...]] = {
    "nondeterminism": tuple("time datetime calendar zoneinfo random secrets uuid".split()),
    "operating system and files": tuple(
        """os posix nt posixpath ntpath sys subprocess signal io pathlib shutil tempfile glob fnmatch fileinput filecmp
        linecache tarfile zipfile zipimport gzip bz2 lzma zlib mmap fcntl termios tty pty resource pwd grp spwd crypt
        getpass platform sysconfig site shelve dbm sqlite3 logging warnings atexit""".split()
    ),
    "network": tuple(
        """socket socketserver ssl select selectors webbrowser urllib http ftplib smtplib poplib imaplib telnetlib
        xmlrpc email mailbox ipaddress wsgiref""".split()
    ),
    "concurrency": tuple("asyncio threading _thread multiprocessing concurrent sched queue".split()),
    "interpreter internals": tuple(
        """importlib pkgutil runpy builtins inspect gc types ctypes cffi _ctypes weakref copyreg pickle cPickle marshal
        code codeop dis traceback faulthandler tracemalloc trace pdb bdb cProfile profile pstats timeit doctest pydoc
        unittest""".split()
    ),
    "third-party libraries": ("numpy", "pandas", "torch"),
}
"""Modules a program may not import, by why (checked on the top-level package name: `os.path` is `os`).
Nondeterminism (random, time), the outside world (os, socket, subprocess, files), concurrency, and the interpreter's
own machinery (sys, importlib, ctypes, gc, inspect, types, pickle) are all out, and so are modules that run code from
text with the real builtins or import by name (doctest, pydoc.locate, unittest.mock.patch). Any module whose name
starts with `_` is refused too. The proposer's prompt shows exactly these groups (`banned_summary`)."""

BANNED_MODULES: frozenset[str] = frozenset(m for group in BANNED_MODULE_GROUPS.values() for m in group)

#: Builtins a program may not reach. A program may still bind these names itself (a parameter `input`, a local
#: `id`, `from re import compile`): only a use that resolves to the builtin is refused, and the sandbox's builtins
#: lack every one of them too. `id` is here because its values are memory addresses: static objects (small ints,
#: None) even have the same id in every process, so the determinism check alone cannot catch all of it.
BANNED_NAMES: frozenset[str] = frozenset(
    """
    __import__ __builtins__ __builtin__ __loader__ __spec__ importlib exec eval compile open input breakpoint help
    exit quit globals locals vars getattr setattr delattr memoryview id
    """.split()
)

#: Names refused wherever they appear (use, binding, parameter): honest code never touches the import machinery.
ALWAYS_BANNED_NAMES: frozenset[str] = frozenset(n for n in BANNED_NAMES if n.startswith("__"))

#: Dunder attributes that are harmless to use and common in ordinary code (`super().__init__()`, `x.__len__()`):
#: the operator and container protocols and names. Refused: the routes to the interpreter (`__class__`, `__dict__`,
#: `__globals__`, `__subclasses__`, `__code__`, `__getattribute__`, `__reduce__`, ...).
ALLOWED_DUNDER_ATTRS: frozenset[str] = frozenset(
    """
    __init__ __new__ __len__ __name__ __qualname__ __doc__ __module__ __iter__ __next__ __reversed__ __contains__
    __getitem__ __setitem__ __delitem__ __missing__ __eq__ __ne__ __lt__ __le__ __gt__ __ge__ __hash__ __str__
    __repr__ __format__ __bool__ __index__ __int__ __float__ __complex__ __round__ __abs__ __neg__ __pos__
    __invert__ __add__ __radd__ __iadd__ __sub__ __rsub__ __isub__ __mul__ __rmul__ __imul__ __truediv__
    __rtruediv__ __itruediv__ __floordiv__ __rfloordiv__ __ifloordiv__ __mod__ __rmod__ __imod__ __pow__ __rpow__
    __divmod__ __and__ __rand__ __or__ __ror__ __xor__ __rxor__ __lshift__ __rshift__ __call__ __enter__ __exit__
    """.split()
)


def banned_summary() -> list[tuple[str, list[str]]]:
    """What the checks refuse, as (category, names) in the order a prompt shows them: every banned module by group,
    the banned builtins, and the attribute rules. The one source of the proposer prompt's list, so that the list a
    model is shown is the list enforced (tests/test_prompts_fidelity.py checks both ways)."""
    rows = [(f"modules ({why})", sorted(group, key=str.lower)) for why, group in BANNED_MODULE_GROUPS.items()]
    rows.append(("modules", ["any module whose name starts with `_`"]))
    rows.append(("built-in functions and names", sorted(BANNED_NAMES, key=lambda n: (n.startswith("_"), n))))
    rows.append(("attributes", sorted(BANNED_ATTRS, key=str.lower)))
    rows.append(("dunder attributes", ["double-underscore attributes other than the operator and container methods "
                                "(`__init__`, `__len__`, `__eq__`, ...), also when named in a string"]))  # fmt: skip
    return rows


#: Texts that are not attributes but may appear in strings (`if __name__ == '__main__'`).
_ALLOWED_DUNDER_TEXT = ALLOWED_DUNDER_ATTRS | {"__main__"}

#: Non-dunder attributes that are real escape routes: frames, code objects and globals (`gi_frame.f_back`), the
#: class hierarchy (`mro`), files (`codecs.open`, `tokenize.open`) and the interpreter reached through a module an
#: allowed module imported (`enum.sys.modules['os']`, `collections._sys`, `shlex.os`), and the getattr of the
#: `operator` module (`attrgetter`, `methodcaller`: by-name access; its `itemgetter` is ordinary). Ordinary methods
#: that share a builtin's name (`re.compile`, `node.id`, `str.format_map`) are not routes and are not listed.
BANNED_ATTRS: frozenset[str] = frozenset(
    """
    f_globals f_locals f_builtins f_back f_code f_trace tb_frame tb_next gi_frame gi_code gi_yieldfrom cr_frame
    cr_code cr_await ag_frame ag_code co_code co_consts func_globals mro open os _os sys _sys builtins _builtins
    attrgetter methodcaller
    """.split()
)

_DUNDER = re.compile(r"^__\w+__$")
_DUNDER_IN_TEXT = re.compile(r"__[A-Za-z0-9]\w*?__")  # a name between the underscores: "_____" is none
# A replacement field of a format string: `{0.attr[key].attr}`, with its attribute names; nested fields in a format
# spec (`{0:{1.attr}}`) are matched on their own since the class excludes braces.
_FORMAT_FIELD = re.compile(r"\{([^{}]*)\}")
_FORMAT_ATTR = re.compile(r"\.\s*(\w+)")
# Frame and code attribute names written as text (for `string.Formatter().get_field('0.gi_frame', ...)`).
_FRAME_WORD = re.compile(r"\b(?:f|tb|gi|cr|ag|co|func)_\w+\b")


class CheckError(ValueError):
    """A program failed a static check; the message is the reason recorded with the task."""


@dataclass(frozen=True)
class CheckLimits:
    """Size limits the static checks enforce."""

    max_program_chars: int = 10_000
    max_ast_nodes: int = 5_000


def check_program(program: str, limits: CheckLimits = CheckLimits(), *, entry_point: str = "f") -> ast.Module:
    """Run every static check on `program`; return its AST, or raise CheckError naming the first problem.

    >>> _ = check_program("def f(x):\\n    return sorted(x)")
    >>> check_program("import os\\ndef f(x):\\n    return x")
    Traceback (most recent call last):
    ...
    azr_core.executor.checks.CheckError: banned module: os (line 1)
    """
    if not isinstance(program, str) or not program.strip():
        raise CheckError("empty program")
    if len(program) > limits.max_program_chars:
        raise CheckError(f"program too large: {len(program)} characters > limit {limits.max_program_chars}")
    if "\x00" in program:
        raise CheckError("program contains a NUL byte")
    try:
        tree = ast.parse(program, mode="exec")
    except SyntaxError as exc:
        raise CheckError(f"syntax error: {exc.msg} (line {exc.lineno})") from None
    except (ValueError, MemoryError, RecursionError) as exc:
        raise CheckError(f"program does not parse: {type(exc).__name__}") from None
    nodes = 0
    for node in ast.walk(tree):
        nodes += 1
        if nodes > limits.max_ast_nodes:
            raise CheckError(f"program too large: more than {limits.max_ast_nodes} AST nodes")
        _check_node(node)
    _check_builtin_uses(program, tree)
    if not _defines_entry_point(tree, entry_point):
        raise CheckError(f"no top-level function named {entry_point!r}")
    return tree


def check_call_expression(args_text: str, *, max_chars: int = 2_000, max_nodes: int = 5_000) -> ast.Call:
    """Check the text of a call's arguments, `f(<args_text>)`, as an expression the sandbox will evaluate: it must be
    the argument list of exactly one call on its own (an injection such as `[0]) or (1` is refused, so are comments
    that would swallow the closing parenthesis), and pass the checks a program passes (no banned name, module route,
    dunder or frame attribute). Returns the call's AST; raises CheckError naming the problem.

    >>> check_call_expression("range(3), 'a-b'.split('-')").func.id
    'f'
    >>> check_call_expression("().__class__")
    Traceback (most recent call last):
    ...
    azr_core.executor.checks.CheckError: banned attribute: .__class__ (line 1)
    """
    if not isinstance(args_text, str):
        raise CheckError(f"input must be text, got {type(args_text).__name__}")
    if len(args_text) > max_chars:
        raise CheckError(f"input too large: {len(args_text)} characters > limit {max_chars}")
    if "\x00" in args_text:
        raise CheckError("input contains a NUL byte")
    source = f"f({args_text.strip()})"
    try:
        tree = ast.parse(source, mode="eval")
    except SyntaxError as exc:
        raise CheckError(f"input is not an argument list: {exc.msg}") from None
    except (ValueError, MemoryError, RecursionError) as exc:
        raise CheckError(f"input is not an argument list: {type(exc).__name__}") from None
    call = tree.body
    if not (isinstance(call, ast.Call) and isinstance(call.func, ast.Name) and call.func.id == "f"):
        raise CheckError("input must be the arguments of one call f(...), nothing more")
    end = sum(len(line) for line in source.encode("utf-8").splitlines(keepends=True)[: call.end_lineno - 1])
    if end + call.end_col_offset != len(source.encode("utf-8")):
        raise CheckError("input must be the arguments of one call f(...), nothing more (no comments)")
    for nodes, node in enumerate(ast.walk(call), 1):
        if nodes > max_nodes:
            raise CheckError(f"input too large: more than {max_nodes} AST nodes")
        _check_node(node)
        if isinstance(node, ast.Name) and node.id in BANNED_NAMES:
            raise CheckError(f"banned name: {node.id} (line 1)")
        if isinstance(node, (ast.Yield, ast.YieldFrom, ast.NamedExpr)):
            raise CheckError("input may not yield or assign (:=)")
    return call


def _check_node(node: ast.AST) -> None:
    line = getattr(node, "lineno", "?")
    if isinstance(node, ast.Import):
        for alias in node.names:
            _check_module(alias.name, line)
    elif isinstance(node, ast.ImportFrom):
        if node.level:
            raise CheckError(f"relative import (line {line})")
        _check_module(node.module or "", line)
        for alias in node.names:  # `from codecs import open` reaches what `codecs.open` does
            _check_attr(alias.name, line)
            _check_name(alias.name, line)
    elif isinstance(node, ast.Name):
        _check_name(node.id, line)
    elif isinstance(node, ast.Attribute):
        _check_attr(node.attr, line)
    elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
        _check_name(node.name, line)
    elif isinstance(node, ast.arg):
        _check_name(node.arg, line)
    elif isinstance(node, (ast.Global, ast.Nonlocal)):
        for name in node.names:
            _check_name(name, line)
    elif isinstance(node, ast.Constant) and isinstance(node.value, (str, bytes)):
        _check_text(node.value if isinstance(node.value, str) else node.value.decode("latin-1"), line)
    elif isinstance(node, (ast.AsyncWith, ast.AsyncFor, ast.Await)):
        raise CheckError(f"async code is not allowed (line {line})")


def _check_module(name: str, line: object) -> None:
    top = name.split(".")[0]
    if top in BANNED_MODULES or top.startswith("_"):
        raise CheckError(f"banned module: {name} (line {line})")


def _check_name(name: str, line: object) -> None:
    if name in ALWAYS_BANNED_NAMES:
        raise CheckError(f"banned name: {name} (line {line})")


def _check_attr(attr: str, line: object) -> None:
    if attr in BANNED_ATTRS or (_DUNDER.match(attr) and attr not in ALLOWED_DUNDER_ATTRS):
        raise CheckError(f"banned attribute: .{attr} (line {line})")


def _check_text(text: str, line: object) -> None:
    # Strings reach attributes by name: format fields ("{0.__class__}") and string.Formatter().get_field("0.gi_frame").
    for dunder in _DUNDER_IN_TEXT.findall(text):
        if dunder not in _ALLOWED_DUNDER_TEXT:
            raise CheckError(f"string names a dunder attribute: {dunder} (line {line})")
    for word in _FRAME_WORD.findall(text):
        if word in BANNED_ATTRS:
            raise CheckError(f"string names a frame or code attribute: {word} (line {line})")
    for field in _FORMAT_FIELD.findall(text):
        for attr in _FORMAT_ATTR.findall(field.split(":", 1)[0].split("!", 1)[0]):
            if attr in BANNED_ATTRS:
                raise CheckError(f"format string reaches a banned attribute: .{attr} (line {line})")


def _check_builtin_uses(program: str, tree: ast.Module) -> None:
    """Refuse a use of a BANNED_NAMES name that can resolve to the builtin.

    Resolved with the compiler's own symbol tables: in a function, a parameter or local (or a closure variable of an
    enclosing function) is never looked up in the builtins. Anything else falls back to the builtins unless the
    module binds the name (`from re import compile`, `def input(): ...`); where such a binding has not run yet, the
    sandbox's builtins lack the name, so the lookup fails there instead of reaching it.
    """
    try:
        top = symtable.symtable(program, "<program>", "exec")
    except (SyntaxError, ValueError, MemoryError, RecursionError) as exc:
        raise CheckError(f"program does not parse: {type(exc).__name__}") from None
    module_bound = {s.get_name() for s in top.get_symbols() if s.is_assigned() or s.is_imported()}
    tables = [top]
    while tables:
        table = tables.pop()
        tables.extend(table.get_children())
        kind = table.get_type()
        for sym in table.get_symbols():
            name = sym.get_name()
            if name not in BANNED_NAMES or not sym.is_referenced() or name in module_bound:
                continue
            if kind == "function" and (sym.is_local() or sym.is_free()):
                continue
            if kind == "class" and sym.is_assigned():
                continue
            raise CheckError(f"banned name: {name} (line {_first_use(tree, name)})")


def _first_use(tree: ast.Module, name: str) -> object:
    lines = [n.lineno for n in ast.walk(tree) if isinstance(n, ast.Name) and n.id == name]
    return min(lines) if lines else "?"


def _defines_entry_point(tree: ast.Module, name: str) -> bool:
    found = False  # the last top-level binding of the name decides, as it does at run time
    for stmt in tree.body:
        if isinstance(stmt, ast.FunctionDef) and stmt.name == name:
            found = True
        elif isinstance(stmt, ast.Assign) and any(isinstance(t, ast.Name) and t.id == name for t in stmt.targets):
            found = isinstance(stmt.value, ast.Lambda)
    return found
