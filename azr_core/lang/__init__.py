"""The language layer: Python values as text. Literal values (parse, compare, build from a restricted expression
syntax) and call arguments read from fenced blocks of a completion. Imports nothing of the project above the ground
floor (azr_core.common)."""
