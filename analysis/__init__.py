"""Tables and figures from the run records under a results folder (no torch needed)."""
from analysis.figures import convergence_figure
from analysis.records import RunSet, load_history, load_runs, tidy
from analysis.report import write_report
from analysis.tables import classification_table, to_markdown

__all__ = ["RunSet", "classification_table", "convergence_figure", "load_history", "load_runs", "tidy",
           "to_markdown", "write_report"]
