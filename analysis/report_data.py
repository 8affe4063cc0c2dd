"""What a report is made from, computed once: the run set, each section's table, every experiment's
verdict (the comparisons and their one frame, the curves along a numeric axis) and the learning-rate decisions the runs trained at.
`grporm report` builds one `ReportData` and hands it to every renderer and figure (analysis/report.py);
nothing downstream loads, pairs or tests anything again."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from grporm.analysis.curves import Curves, curves
from grporm.analysis.records import RunSet
from grporm.analysis.sections import Section, Table, build_tables
from grporm.analysis.tuning import decisions_of
from grporm.analysis.verdict import Comparison, comparisons, frame_of


@dataclass
class ReportData:
    run_set: RunSet
    found: list[Comparison]                                   # every experiment's verdict
    built: list[tuple[Section, Table | None]] = field(default_factory=list)  # every section, None: no data
    decisions: list[dict] = field(default_factory=list)       # the tuning decisions the runs trained at
    frame: pd.DataFrame = field(init=False)                   # the verdict frame of `found`
    curves: Curves = field(init=False)                        # the comparisons along a numeric axis

    def __post_init__(self):
        self.frame = frame_of(self.found)
        self.curves = curves(self.run_set, self.found)

    @classmethod
    def of(cls, run_set: RunSet, root: Path | None = None) -> ReportData:
        """Everything computed from `run_set` (and the decisions under `root/tuning` when given)."""
        return cls(run_set, comparisons(run_set), build_tables(run_set),
                   decisions_of(root, decision_keys(run_set)) if root is not None else [])

    @property
    def tables(self) -> dict[str, Table]:
        """{section name: its table} of the sections with data."""
        return {section.name: table for section, table in self.built if table is not None}

    def primary(self) -> pd.DataFrame:
        """The verdict lines of the primary claims (each experiment's declaration; without claims, all)."""
        return self.frame[self.frame["primary"].astype(bool)]

    def lines_of(self, experiment: str) -> pd.DataFrame:
        return self.frame[self.frame["experiment"] == experiment]


def decision_keys(run_set: RunSet) -> set[str]:
    """The tuning keys the runs trained at (their records' `tuning.key`): the decisions this folder's runs use."""
    return {record.tuning.key for record in run_set.records.values() if record.tuning is not None and record.tuning.key}
