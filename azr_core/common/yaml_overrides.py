"""YAML as the run config reads it, and `key.sub=value` overrides merged into nested sections (no AZR types).

`1e-6` is a float here (YAML 1.1, which PyYAML follows, would read a string); an override's value is read as YAML, so
`trainer.lr=1e-5` is a float and `a.b=[1, 2]` a list.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Mapping
from typing import Any

import yaml

from azr_core.common.config_base import ConfigError


class _Loader(yaml.SafeLoader):
    """SafeLoader that reads `1e-6` as a float (YAML 1.1 wants `1.0e-6`, so PyYAML would read a string)."""


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(
        r"""^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+]?[0-9]+)?
        |[-+]?(?:[0-9][0-9_]*)(?:[eE][-+]?[0-9]+)
        |\.[0-9_]+(?:[eE][-+][0-9]+)?
        |[-+]?\.(?:inf|Inf|INF)
        |\.(?:nan|NaN|NAN))$""",
        re.X,
    ),
    list("-+0123456789."),
)


def parse_yaml(text: str) -> Any:
    """Parse YAML with the float fix above."""
    return yaml.load(text, Loader=_Loader)  # noqa: S506 - _Loader is a SafeLoader


def parse_override(item: str) -> tuple[list[str], Any]:
    """`"selfplay.references_k=4"` -> (["selfplay", "references_k"], 4); the value is read as YAML.

    >>> parse_override("trainer.lr=1e-5")
    (['trainer', 'lr'], 1e-05)
    """
    key, sep, raw = item.partition("=")
    key = key.strip()
    if not sep or not key or any(not part for part in key.split(".")):
        raise ConfigError(f"override {item!r} must look like key.sub=value")
    try:
        value = parse_yaml(raw) if raw.strip() else None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{key}: value {raw!r} is not valid YAML: {exc}") from None
    return key.split("."), value


def set_path(tree: dict[str, Any], path: list[str], value: Any) -> None:
    """Set `value` at the dotted `path` of a nested dict, making sections on the way."""
    node = tree
    for i, part in enumerate(path[:-1]):
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise ConfigError(f"{'.'.join(path[: i + 1])} is a value, not a section: cannot set {'.'.join(path)}")
        node = child
    node[path[-1]] = value


def deep_merge(base: Mapping[str, Any], update: Mapping[str, Any]) -> dict[str, Any]:
    """Recursive dict merge: sections merge, values replace."""
    out = copy.deepcopy(dict(base))
    for key, value in update.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out
