"""Static checks: every banned route is refused with a reason, ordinary programs pass."""

import pytest

from azr_core.executor.checks import CheckError, CheckLimits, check_program

OK_PROGRAMS = [
    "def f(x):\n    return x",
    "import math\nfrom collections import Counter\ndef f(s):\n    return Counter(s).most_common(1), math.sqrt(4)",
    "class P:\n    def __init__(self, v):\n        self.v = v\n    def __eq__(self, o):\n        return True\n"
    "def f(x):\n    return P(x).v",
    "f = lambda x: x + 1",
    "def g(x):\n    return x\ndef f(x):\n    return [g(i) for i in range(x)]",
    "import itertools, functools, re, heapq, string\ndef f(x):\n    return sorted(x)",
]


@pytest.mark.parametrize("program", OK_PROGRAMS)
def test_ordinary_programs_pass(program):
    check_program(program)


BANNED = {
    "import os\ndef f(x):\n    return x": "banned module: os",
    "import os.path\ndef f(x):\n    return x": "banned module: os.path",
    "from subprocess import run\ndef f(x):\n    return x": "banned module: subprocess",
    "def f(x):\n    import random\n    return random.random()": "banned module: random",
    "import time\ndef f(x):\n    return x": "banned module: time",
    "from . import x\ndef f(x):\n    return x": "relative import",
    "import _posixsubprocess\ndef f(x):\n    return x": "banned module",
    "def f(x):\n    return __import__('os').getcwd()": "banned name: __import__",
    "def f(x):\n    return eval('1+1')": "banned name: eval",
    "def f(x):\n    exec('y=1')\n    return x": "banned name: exec",
    "def f(x):\n    return compile('1', 's', 'eval')": "banned name: compile",
    "def f(x):\n    return open('/etc/passwd').read()": "banned name: open",
    "def f(x):\n    return getattr(x, 'real')": "banned name: getattr",
    "def f(x):\n    return id(x)": "banned name: id",
    "def f(x):\n    return ().__class__.__base__.__subclasses__()": "banned attribute",
    "def f(x):\n    return f.__globals__": "banned attribute",
    "def f(x):\n    return __builtins__": "banned name: __builtins__",
    "def f(x):\n    return '{0.__class__}'.format(x)": "dunder",
    "def f(x):\n    g = (i for i in [1])\n    return g.gi_frame.f_globals": "banned attribute",
    "def f(x):\n    return vars()": "banned name: vars",
    "def f(x):\n    open = 1\n    return open": "banned name: open",
    "def f(x):\n    return importlib": "banned name: importlib",
    "def g(x):\n    return x": "no top-level function named 'f'",
    "def f(x):\n    return x\nf = 3": "no top-level function named 'f'",
    "def f(x) return x": "syntax error",
    "": "empty program",
    "async def f(x):\n    async for i in x:\n        pass": "async",
}


@pytest.mark.parametrize("program,reason", list(BANNED.items()))
def test_banned_routes_are_refused(program, reason):
    with pytest.raises(CheckError, match=reason.replace("(", r"\(").replace(".", r"\.")):
        check_program(program)


def test_size_limits():
    with pytest.raises(CheckError, match="too large"):
        check_program("def f(x):\n    return x\n" + "#" * 20_000)
    with pytest.raises(CheckError, match="AST nodes"):
        check_program("def f(x):\n    return [" + "1," * 3000 + "]", CheckLimits(max_ast_nodes=1000))
    with pytest.raises(CheckError):
        check_program("def f(x):\n    return " + "(" * 5000 + "1" + ")" * 5000)
