"""The ground floor every layer may import: the strict config base (`config_base`) and crash-safe file writes
(`atomic`). It imports nothing else of the project."""
