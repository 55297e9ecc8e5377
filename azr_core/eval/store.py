"""The `evals` table of a run folder: every answer and its grade, one Parquet file per (evaluation, benchmark).

Files are `run_dir/evals/part-<eval_id>-<bench>.parquet`, written atomically; `azr sql` reads them all as the view
`evals`. A folder that is not yet a run folder gets its SCHEMA file, so `azr eval run --run DIR` works on a fresh one.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from azr_core.common.atomic import atomic_write, atomic_write_text
from azr_core.store.layout import SCHEMA_NAME, check_schema
from azr_core.store.schema import SCHEMA_VERSION, to_arrow

TABLE = "evals"


def write_evals(run_dir: str | Path, eval_id: str, bench: str, rows: Iterable[Mapping[str, Any]]) -> Path:
    """Write one benchmark's rows of one evaluation; returns the file."""
    import pyarrow.parquet as pq

    run_dir = Path(run_dir)
    if (run_dir / SCHEMA_NAME).exists():
        check_schema(run_dir)
    else:
        run_dir.mkdir(parents=True, exist_ok=True)
        atomic_write_text(run_dir / SCHEMA_NAME, json.dumps({"schema_version": SCHEMA_VERSION}))
    table = to_arrow(TABLE, rows)
    safe = re.sub(r"[^A-Za-z0-9_.-]", "_", bench)
    path = run_dir / TABLE / f"part-{eval_id}-{safe}.parquet"
    path.parent.mkdir(parents=True, exist_ok=True)
    return atomic_write(path, lambda tmp: pq.write_table(table, tmp, compression="zstd"))
