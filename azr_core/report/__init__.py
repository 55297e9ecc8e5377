"""`azr report`: one self-contained HTML page of a run (plots embedded) plus the PNGs, also logged to MLflow."""

from azr_core.report.build import build_report

__all__ = ["build_report"]
