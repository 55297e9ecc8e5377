"""Static checks on a program before it runs: the one place that says what model-written code may not touch.

Two layers stand behind these checks (the firejail sandbox and the runner's guarded builtins), so the checks aim to
reject early and explain why, not to be the only wall. A program is refused when it

- does not parse, is too large, or defines no top-level function `f`;
- imports a banned module by any route: `import`/`from … import`, or a runtime route (`__import__`, `importlib`,
  `exec`/`eval`/`compile`, `getattr` and friends on builtins, `open`, …) named in BANNED_NAMES;
- reaches interpreter internals through dunder attributes (`().__class__.__base__.__subclasses__()`), frame and
  code attributes (`f_globals`, `gi_frame`, …), or format strings that name them (`"{0.__class__}".format(x)`).
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass

#: Modules a program may not import (checked on the top-level package name: `os.path` is `os`).
#: Nondeterminism (random, time), the outside world (os, socket, subprocess, files), concurrency, and the
#: interpreter's own machinery (sys, importlib, ctypes, gc, inspect, types, pickle) are all out.
BANNED_MODULES: frozenset[str] = frozenset(
    """
    os posix nt posixpath ntpath sys subprocess socket socketserver ssl select selectors asyncio signal
    threading _thread multiprocessing concurrent sched queue
    time datetime calendar zoneinfo random secrets uuid
    io pathlib shutil tempfile glob fnmatch fileinput filecmp linecache tarfile zipfile zipimport gzip bz2 lzma
    zlib mmap fcntl termios tty pty resource pwd grp spwd crypt getpass platform sysconfig site
    importlib pkgutil runpy builtins inspect gc types ctypes cffi _ctypes weakref copyreg pickle cPickle marshal
    shelve dbm sqlite3 code codeop dis traceback faulthandler tracemalloc trace pdb bdb cProfile profile pstats
    timeit logging warnings atexit operator webbrowser urllib http ftplib smtplib poplib imaplib telnetlib
    xmlrpc email mailbox ipaddress wsgiref numpy pandas torch
    """.split()
)

#: Names a program may not use at all (as a variable, call or attribute), whatever they are bound to.
#: `id` is here because its values are memory addresses: static objects (small ints, None) even have the same id in
#: every process, so the determinism check alone cannot catch all of it.
BANNED_NAMES: frozenset[str] = frozenset(
    """
    __import__ __builtins__ __builtin__ __loader__ __spec__ importlib exec eval compile open input breakpoint help
    exit quit globals locals vars getattr setattr delattr memoryview id
    """.split()
)

#: Dunder attributes that are harmless to use and common in ordinary code (`super().__init__()`, `x.__len__()`).
ALLOWED_DUNDER_ATTRS: frozenset[str] = frozenset(
    """
    __init__ __len__ __name__ __doc__ __iter__ __next__ __contains__ __getitem__ __setitem__ __delitem__
    __eq__ __ne__ __lt__ __le__ __gt__ __ge__ __hash__ __str__ __repr__ __add__ __sub__ __mul__ __bool__
    """.split()
)

#: Non-dunder attributes that lead to frames, code objects or globals.
BANNED_ATTRS: frozenset[str] = frozenset(
    """
    f_globals f_locals f_builtins f_back f_code f_trace tb_frame tb_next gi_frame gi_code gi_yieldfrom cr_frame
    cr_code cr_await ag_frame ag_code co_code co_consts func_globals mro format_map
    """.split()
)

_DUNDER = re.compile(r"^__\w+__$")
_DUNDER_IN_TEXT = re.compile(r"__\w+__")


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
    if not _defines_entry_point(tree, entry_point):
        raise CheckError(f"no top-level function named {entry_point!r}")
    return tree


def _check_node(node: ast.AST) -> None:
    line = getattr(node, "lineno", "?")
    if isinstance(node, ast.Import):
        for alias in node.names:
            _check_module(alias.name, line)
    elif isinstance(node, ast.ImportFrom):
        if node.level:
            raise CheckError(f"relative import (line {line})")
        _check_module(node.module or "", line)
        for alias in node.names:
            _check_name(alias.name, line)
    elif isinstance(node, ast.Name):
        _check_name(node.id, line)
    elif isinstance(node, ast.Attribute):
        attr = node.attr
        if attr in BANNED_ATTRS or attr in BANNED_NAMES or (_DUNDER.match(attr) and attr not in ALLOWED_DUNDER_ATTRS):
            raise CheckError(f"banned attribute: .{attr} (line {line})")
    elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
        _check_name(node.name, line)
    elif isinstance(node, ast.arg):
        _check_name(node.arg, line)
    elif isinstance(node, ast.keyword) and node.arg is not None:
        _check_name(node.arg, line)
    elif isinstance(node, (ast.Global, ast.Nonlocal)):
        for name in node.names:
            _check_name(name, line)
    elif isinstance(node, ast.Constant) and isinstance(node.value, (str, bytes)):
        text = node.value if isinstance(node.value, str) else node.value.decode("latin-1")
        # Format strings reach attributes by name ("{0.__class__}"), and getattr-style tricks need the name as text.
        if _DUNDER_IN_TEXT.search(text):
            raise CheckError(f"string names a dunder attribute (line {line})")
    elif isinstance(node, (ast.AsyncWith, ast.AsyncFor, ast.Await)):
        raise CheckError(f"async code is not allowed (line {line})")


def _check_module(name: str, line: object) -> None:
    top = name.split(".")[0]
    if top in BANNED_MODULES or top.startswith("_"):
        raise CheckError(f"banned module: {name} (line {line})")


def _check_name(name: str, line: object) -> None:
    if name in BANNED_NAMES:
        raise CheckError(f"banned name: {name} (line {line})")


def _defines_entry_point(tree: ast.Module, name: str) -> bool:
    found = False  # the last top-level binding of the name decides, as it does at run time
    for stmt in tree.body:
        if isinstance(stmt, ast.FunctionDef) and stmt.name == name:
            found = True
        elif isinstance(stmt, ast.Assign) and any(isinstance(t, ast.Name) and t.id == name for t in stmt.targets):
            found = isinstance(stmt.value, ast.Lambda)
    return found
