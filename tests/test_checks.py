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


# Honest code the checks used to refuse (each line: what it does that looked suspicious).
FORMERLY_REFUSED = [
    # an ordinary string method (CRUXEval sample_189)
    "import re\ndef f(out, mapping):\n    out.format_map(mapping)\n    return out",
    # a module function that shares a builtin's name
    "import re\ndef f(s):\n    return re.compile('a+').findall(s)",
    "from re import compile\ndef f(s):\n    return compile('a').sub('b', s)",
    # parameters, locals and keywords named like banned builtins are the program's own
    "def f(input):\n    return input[::-1]",
    "def f(text, id):\n    return text * id",
    "def f(x):\n    open = 1\n    return open + x",
    "def f(items):\n    return [id for id in items if id]",
    "def f(x):\n    vars = {'a': x}\n    def g():\n        return vars['a']\n    return g()",
    "def f(x):\n    return dict(id=x, input=x)",
    "class Node:\n    def __init__(self, id):\n        self.id = id\ndef f(x):\n    return Node(x).id",
    # the operator module's ordinary functions (MBPP Mbpp/94)
    "from operator import itemgetter\ndef f(xs):\n    return min(xs, key=itemgetter(1))[0]",
    "import operator\ndef f(a, b):\n    return operator.add(a, b)",
    # strings that name harmless dunders, and dunders of the ordinary protocols
    "def f(s):\n    if __name__ == '__main__':\n        return s\n    return s + '__init__'",
    "def f(x):\n    return (3).__add__(x), 'abc'.__len__()",
    # underscores alone name nothing (a CRUXEval program's replacement text)
    "def f(text):\n    return text.replace('\\n', '_____').replace(' ', '__')",
]


@pytest.mark.parametrize("program", OK_PROGRAMS + FORMERLY_REFUSED)
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
    "def f(x):\n    return '{0.___class___}'.format(x)": "dunder",
    "def f(x):\n    g = (i for i in [1])\n    return g.gi_frame.f_globals": "banned attribute",
    "def f(x):\n    return vars()": "banned name: vars",
    "def f(x):\n    return open": "banned name: open",
    "def f(x):\n    return importlib": "banned name: importlib",
    "def g(x):\n    return x": "no top-level function named 'f'",
    "def f(x):\n    return x\nf = 3": "no top-level function named 'f'",
    "def f(x) return x": "syntax error",
    "": "empty program",
    "async def f(x):\n    async for i in x:\n        pass": "async",
    # a name bound somewhere else is still the builtin here
    "def g(id):\n    return id\ndef f(x):\n    return id(x)": "banned name: id",
    "def f(x):\n    global compile\n    return compile('1', 's', 'eval')": "banned name: compile",
    "class A:\n    v = vars()\ndef f(x):\n    return x": "banned name: vars",
    "def f(__import__):\n    return __import__": "banned name: __import__",
    # attributes and imports that are real routes
    "from codecs import open\ndef f(x):\n    return open('/etc/passwd').read()": "banned attribute: .open",
    "import codecs\ndef f(x):\n    return codecs.open('/etc/passwd').read()": "banned attribute: .open",
    "import enum\ndef f(x):\n    return enum.sys.modules['os']": "banned attribute: .sys",
    "import collections\ndef f(x):\n    return collections._sys": "banned attribute: ._sys",
    "import doctest\ndef f(x):\n    return x": "banned module: doctest",
    "from pydoc import locate\ndef f(x):\n    return locate('os')": "banned module: pydoc",
    "import operator\ndef f(x):\n    return operator.attrgetter('real')(x)": "banned attribute: .attrgetter",
    "from operator import methodcaller\ndef f(x):\n    return x": "banned attribute: .methodcaller",
    # strings that name routes
    "import string\ndef f(x):\n    return string.Formatter().get_field('0.__class__', [x], {})": "dunder",
    "def f(x):\n    g = (i for i in [1])\n    return '{0.gi_frame}'.format(g)": "frame or code attribute",
    "def f(x):\n    return '{0.mro}'.format(int)": "format string reaches a banned attribute: .mro",
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
