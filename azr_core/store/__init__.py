"""The task store: Parquet tables under a run folder, committed per iteration, read through DuckDB views.

Names are imported on first use, so a reader (`azr sql`) does not pay for pyarrow, which only writers need.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "IterationWriter": "run",
    "RunStore": "run",
    "open_run": "run",
    "CommitState": "layout",
    "StoreError": "layout",
    "check_schema": "layout",
    "read_commit": "layout",
    "partition_dir": "layout",
    "SCHEMA_VERSION": "schema",
    "TABLES": "schema",
    "SchemaError": "schema",
    "SchemaVersionError": "schema",
    "connect": "views",
    "describe": "views",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'azr_core.store' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"azr_core.store.{_EXPORTS[name]}"), name)
    globals()[name] = value
    return value
