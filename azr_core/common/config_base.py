"""The one rule every config section follows: strict types, no unknown keys, no inf/NaN, errors that name the fix.

Every section of the run config (azr_core.config, the executor's, the policy's, tracking's) derives from `Section`, so
`executor.workers: true` is refused exactly like `selfplay.references_k: true` (YAML `true` is not an integer, "6" is
not a number; an integer is still a valid float). Two kinds of field are read leniently on purpose, because their
values arrive as JSON or YAML text: paths (`Path` from a string) and fixed-length tuples (from a list); use
`lenient_field` for them, and the items inside stay strict.

A section validated on its own with `model_validate` (the workers' `TrainerConfig.model_validate(...)`) raises
`ConfigError` with the same explained message as a whole config does. (Keyword construction, `ExecutorConfig(...)`,
raises pydantic's ValidationError: overriding `__init__` would make pydantic call it for nested sections too.)
"""

from __future__ import annotations

import difflib
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError


class ConfigError(ValueError):
    """A config file or override is invalid; the message names the offending key and how to fix it."""


# What to write instead, per pydantic error type: the fix half of "problem and fix".
_FIXES = {
    "int_type": "write a whole number without quotes, e.g. 4",
    "int_from_float": "write a whole number, e.g. 4",
    "int_parsing": "write a whole number without quotes, e.g. 4",
    "float_type": "write a number without quotes, e.g. 0.5 or 1e-6",
    "float_parsing": "write a number without quotes, e.g. 0.5 or 1e-6",
    "finite_number": "write a finite number (not .inf or .nan)",
    "bool_type": "write true or false",
    "string_type": "write text (quote it if YAML reads it as something else, e.g. '123')",
    "path_type": "write a path as text",
    "list_type": "write a list, e.g. [a, b]",
    "tuple_type": "write a list of the right length, e.g. [0.9, 0.999]",
    "model_type": "write a section (key: value lines under it)",
    "model_attributes_type": "write a section (key: value lines under it)",
    "dict_type": "write a section (key: value lines under it)",
}


def known_keys(model: type[BaseModel], prefix: str = "") -> list[str]:
    """Every dotted key of `model` (sections and their fields), for 'did you mean' hints."""
    keys = []
    for name, info in model.model_fields.items():
        keys.append(prefix + name)
        ann = info.annotation
        if isinstance(ann, type) and issubclass(ann, BaseModel):
            keys.extend(known_keys(ann, prefix + name + "."))
    return keys


def explain(exc: ValidationError, model: type[BaseModel], *, prefix: str = "") -> str:
    """A validation error as one line per problem: the dotted key, what is wrong, the value given, the fix."""
    known = known_keys(model, prefix)
    lines = []
    for err in exc.errors():
        key = prefix + ".".join(str(p) for p in err["loc"]) if err["loc"] else prefix.rstrip(".") or "<root>"
        if err["type"] == "extra_forbidden":
            close = difflib.get_close_matches(key, known, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ": remove it, or check its spelling and section"
            lines.append(f"unknown key {key!r}{hint}")
            continue
        line = f"{key}: {err['msg']} (got {err.get('input')!r})"
        fix = _FIXES.get(err["type"])
        if fix is None and err["type"].startswith(("greater_than", "less_than")):
            fix = "pick a value in the allowed range"
        lines.append(f"{line}: {fix}" if fix else line)
    return "invalid config:\n  " + "\n  ".join(lines)


class Section(BaseModel):
    """Base of every config section: strict types, unknown keys refused, inf/NaN refused, defaults validated."""

    # strict: YAML `true` is not an int and "6" is not a number; floats still accept ints.
    model_config = ConfigDict(extra="forbid", strict=True, validate_default=True, allow_inf_nan=False)

    @classmethod
    def model_validate(cls, obj: Any, **kwargs: Any) -> Any:
        """pydantic's model_validate, raising ConfigError with the explained message."""
        try:
            return super().model_validate(obj, **kwargs)
        except ValidationError as exc:
            raise ConfigError(explain(exc, cls)) from None


def lenient_field(default: Any = ..., **kwargs: Any) -> Any:
    """A Field read in lax mode at its top level: a path from a string, a tuple from a list. Its items stay strict
    when annotated so (`tuple[Annotated[float, Strict()], ...]`)."""
    return Field(default, strict=False, **kwargs)
