"""Tables and figures from the run records under a results folder (no torch needed).

- records: load_runs -> RunSet (wide ``runs``, tidy ``metrics``, typed ``records``, ``excluded`` with reasons)
- (the statistics: grporm/stats.py, torch-free, shared with the tuning rules)
- tables, sections, verdict, tuning: the report's tables as data (verdict_frame: the verdict, one row per cell)
- report_data: the report's data (run set, tables, verdict, tuning decisions), computed once
- render, verdict_render: the writers of Markdown / LaTeX / CSV tables (verdict_render: the verdict's)
- figures: convergence, severity, shot-group bars, training statistics, the verdict's forest figures
- close_calls: the words and command next to a verdict resting on an unchecked close call
- report: records loaded once -> REPORT.md with everything, and each experiment's table.md
"""
from grporm.analysis.figures import convergence_figure
from grporm.analysis.records import RunSet, load_history, load_runs, load_steps, tidy
from grporm.analysis.render import classification_markdown, table_csv, table_latex, table_markdown
from grporm.analysis.report import report_all, write_experiment_tables, write_report
from grporm.analysis.sections import SECTIONS, build_table, build_tables
from grporm.analysis.tables import classification_table
from grporm.analysis.verdict import verdict_frame
from grporm.stats import paired_difference, summarize

__all__ = ["RunSet", "SECTIONS", "build_table", "build_tables", "classification_markdown", "classification_table",
           "convergence_figure", "load_history", "load_runs", "load_steps", "paired_difference", "report_all",
           "summarize", "table_csv", "table_latex", "table_markdown", "tidy", "write_experiment_tables",
           "verdict_frame", "write_report"]
