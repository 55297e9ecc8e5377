"""How a run's Parquet tables are written and compacted (the `store` section of the run config)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from azr_core.common.config_base import Section


class StoreConfig(Section):
    """How the Parquet tables are written."""

    compression: Literal["zstd", "snappy", "gzip", "lz4", "none"] = Field("zstd", description="Parquet codec.")
    compression_level: int | None = Field(3, description="Codec level (zstd 1-22); None is the codec's default.")
    row_group_size: int = Field(128 * 1024, ge=1024, description="Most rows per Parquet row group.")
    fsync: bool = Field(True, description="fsync files and folders on write (crash safety; off only for tests).")
    bloom: bool = Field(True, description="Parquet Bloom filters on id columns (fast lookups of one task's rows).")
    sort_by_task: bool = Field(
        False, description="Sort each rollouts file by task_id (with small row groups: lookups read less)."
    )
    compact_every: int = Field(
        50,
        ge=0,
        description="Merge the per-iteration files of every this many committed iterations into one segment file "
        "per table (history queries then open a few files instead of one per iteration). 0 = never.",
    )
    segment_row_group_size: int = Field(
        32 * 1024,
        ge=1024,
        description="Rows per row group in segment files. Sorted by task id, a one-task lookup reads one row group per "
        "segment: 32k rows cut the lineage lookup on 10 M rollouts from ~410 to ~130 ms against 128k, for ~20 ms more "
        "on a scan grouped by task.",
    )
    compact_memory_mb: int = Field(
        1024, ge=64, description="Memory a compaction's sort may use before it spills to disk (DuckDB), MiB."
    )
    retire_grace_s: float = Field(
        3600.0,
        ge=0,
        description="How long merged iteration folders stay on disk after a compaction, so that readers connected "
        "before it still find their files. A reader connected longer than this should reconnect.",
    )
