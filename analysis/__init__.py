"""Tables and figures from the run records under a results folder (no torch needed).

- records: load_runs -> RunSet (wide ``runs``, tidy ``metrics``, ``excluded`` with reasons)
- stats: summarize (mean ± std over seeds), paired_difference (GRPO-RM − CE by seed, t interval)
- sections / render: the paper's tables as data, then Markdown / LaTeX / CSV
- figures: convergence, severity, shot-group and ablation bars, training statistics
- report: per-experiment table.md + convergence.png; paper: REPORT.md with everything
"""
from analysis.figures import convergence_figure
from analysis.paper import report_all, write_paper_report
from analysis.records import RunSet, load_history, load_runs, load_steps, tidy
from analysis.render import table_csv, table_latex, table_markdown
from analysis.report import write_report
from analysis.sections import SECTIONS, build_table, build_tables
from analysis.stats import paired_difference, summarize
from analysis.tables import classification_table, to_markdown

__all__ = ["RunSet", "SECTIONS", "build_table", "build_tables", "classification_table", "convergence_figure",
           "load_history", "load_runs", "load_steps", "paired_difference", "report_all", "summarize",
           "table_csv", "table_latex", "table_markdown", "tidy", "to_markdown", "write_paper_report",
           "write_report"]
