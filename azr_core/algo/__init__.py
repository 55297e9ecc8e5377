"""The algorithm of Absolute Zero, free of storage, orchestration and engines. `azr_core.algo.types` holds the task
types, one module each (see docs/architecture.md)."""
