"""Deterministic generator of varied small programs (with inputs) for executor benchmarks."""

from __future__ import annotations

import random

TEMPLATES = [
    ("def f(xs):\n    return [x * {a} + {b} for x in xs if x % {c} != 0]", "[{l}]"),
    ("def f(s):\n    return ''.join(sorted(set(s)))[::{d}]", "'{w}'"),
    (
        "def f(xs):\n    acc = {{}}\n    for x in xs:\n        acc[x % {c}] = acc.get(x % {c}, 0) + x\n    return acc",
        "[{l}]",
    ),
    ("def f(n):\n    a, b = 0, 1\n    for _ in range(n % 30 + {c}):\n        a, b = b, a + b\n    return a", "{b}"),
    ("def f(s, k):\n    return [s[i:i + k] for i in range(0, len(s), k)]", "'{w}', {c}"),
    (
        "def f(xs):\n    out = []\n    for i, x in enumerate(xs):\n        if i % 2:\n            out.append(x)\n"
        "        else:\n            out.insert(0, -x)\n    return tuple(out)",
        "[{l}]",
    ),
    ("import math\ndef f(n):\n    return [math.gcd(n, k) for k in range(1, {c} + 3)]", "{a}"),
    ("def g(n):\n    return n if n < 2 else g(n - 1) + g(n - 2)\ndef f(n):\n    return g(n % 12 + {c})", "{b}"),
    ("from collections import Counter\ndef f(s):\n    return sorted(Counter(s).items())[:{c}]", "'{w}'"),
    ("def f(m):\n    return {{k: v * {a} for k, v in m.items() if v > {b}}}", "{{'x': {a}, 'y': {b}, 'z': {c}}}"),
    ("def f(s):\n    words = s.split('{ch}')\n    return {{w: len(w) for w in words}}", "'{w}'"),
    (
        "def f(xs, t):\n    lo, hi = 0, len(xs)\n    while lo < hi:\n        mid = (lo + hi) // 2\n"
        "        if xs[mid] < t:\n            lo = mid + 1\n        else:\n            hi = mid\n    return lo",
        "[{s}], {b}",
    ),
]
LOOP = ("def f(x):\n    while True:\n        x += 1", "0")


def make_programs(n: int, loop_fraction: float = 0.0, seed: int = 0) -> list[tuple[str, str]]:
    """n (program, input) pairs; round(n * loop_fraction) of them loop forever, spread evenly."""
    rng = random.Random(seed)
    loops = round(n * loop_fraction)
    loop_at = {round(i * n / loops) for i in range(loops)} if loops else set()
    out = []
    for i in range(n):
        if i in loop_at:
            out.append(LOOP)
            continue
        program, inp = rng.choice(TEMPLATES)
        fill = {
            "a": rng.randint(1, 9),
            "b": rng.randint(0, 50),
            "c": rng.randint(2, 7),
            "d": rng.choice([1, -1, 2]),
            "l": ", ".join(str(rng.randint(-20, 99)) for _ in range(rng.randint(1, 12))),
            "s": ", ".join(str(v) for v in sorted(rng.randint(-20, 99) for _ in range(rng.randint(1, 12)))),
            "w": "".join(rng.choice("abcde fgh") for _ in range(rng.randint(3, 30))),
            "ch": rng.choice("abc "),
        }
        out.append((program.format(**fill), inp.format(**fill)))
    return out
