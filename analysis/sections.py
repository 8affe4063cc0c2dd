"""The paper's tables as data: one ``Table`` per section (classification, OOD, transfer, imbalance,
segmentation, cost), built from ``RunSet.metrics``.

A cell is the ``Summary`` over the seeds of one row (experiment, data set, backbone, variant, method)
of one per-run value (e.g. "SR top-1 averaged over all corruptions of this run"). Differences from a
control are the verdict's (``analysis.verdict``, each experiment's declared or default control): no
table here pairs runs. Rendering (Markdown, LaTeX, CSV) lives in ``analysis.render``.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import pandas as pd

from grporm.analysis.records import RunSet, method_label, method_rank, variant
from grporm.analysis.tables import TABLE_METRICS
from grporm.records.schema import SEG_NAMES, RunRecord, Timing, top1_name
from grporm.stats import summarize

KEYS = ("experiment", "dataset", "backbone", "variant")
KEY_TITLES = {"experiment": "Experiment", "dataset": "Dataset", "backbone": "Backbone", "variant": "Variant",
              "imbalance_factor": "IF"}
PROTOCOLS = tuple((prefix, title) for prefix, _, title in TABLE_METRICS)  # head, sr, knn20
SHOT_GROUPS = ("overall", "many", "medium", "few")


@dataclass(frozen=True)
class Column:
    """One table column: the per-run value is the mean of the run's tidy rows matching
    (family, metric, condition, severity); None matches any (so: averaged over them)."""

    group: str
    label: str
    family: str
    metric: str
    condition: str | None = None
    severity: int | None = None
    higher_is_better: bool = True
    scale: float = 100.0  # fractions shown in %
    decimals: int = 1

    @property
    def title(self) -> str:
        return f"{self.group} {self.label}".strip()


@dataclass(frozen=True)
class Row:
    key: tuple[str, ...]   # display values of Table.keys
    method: str            # a method name
    cells: tuple           # Summary, one per column
    n_runs: int            # runs in the row
    runs: tuple[tuple[str, str], ...]  # (run_id, config_hash) of every run behind the row

    @property
    def label(self) -> str:
        return method_label(self.method)


@dataclass
class Table:
    name: str
    title: str
    legend: str
    keys: tuple[str, ...]
    columns: tuple[Column, ...]
    rows: list[Row]
    best: frozenset[tuple[int, int]] = frozenset()  # (row index, column index) of the best means

    @property
    def shown_keys(self) -> list[int]:
        """Indices of key columns with any non-empty value (e.g. Variant only when runs vary)."""
        return [i for i in range(len(self.keys)) if any(row.key[i] for row in self.rows)]


@dataclass(frozen=True)
class Section:
    name: str
    title: str
    legend: str
    family: str                                           # needed in the selected runs' metrics
    columns: Callable[[pd.DataFrame], list[Column]]       # from the selected tidy rows
    keys: tuple[str, ...] = KEYS
    block: tuple[str, ...] = KEYS                          # rows that compete for bold
    shown_axes: tuple[str, ...] = ()  # matrix axes shown as their own key column, so left out of Variant
    note: Callable[[list[dict]], str] | None = None  # more legend, from the records of the table's runs
    # (run set, selected runs) -> (the runs the table averages, more legend): e.g. the cost table's warm-up rule
    select: Callable[[RunSet, pd.DataFrame], tuple[pd.DataFrame, str]] | None = None


# -- values ----------------------------------------------------------------------------------------
def run_values(metrics: pd.DataFrame, column: Column) -> pd.Series:
    """Per-run value of ``column`` (index: the run's ``path``), averaged over the matching tidy rows."""
    mask = (metrics["family"] == column.family) & (metrics["metric"] == column.metric)
    if column.condition is not None:
        mask &= metrics["condition"] == column.condition
    if column.severity is not None:
        mask &= metrics["severity"] == column.severity
    return metrics.loc[mask].groupby("path", sort=True)["value"].mean()


def _key_text(name: str, value) -> str:
    if name == "imbalance_factor":
        return "" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{float(value):g}"
    return str(value)


def _key_sort(name: str, value):
    if name == "imbalance_factor":
        return -1.0 if value is None or (isinstance(value, float) and math.isnan(value)) else float(value)
    return str(value)


def best_cells(rows: list[Row], columns: tuple[Column, ...], block: list[int]) -> frozenset[tuple[int, int]]:
    """Per column and per block of rows (same values at key positions ``block``): the method rows
    whose displayed mean is the best; nothing where fewer than two rows compete or all tie. Comparing displayed
    (rounded) values keeps two rows that print the same either both bold or both plain."""
    best = set()
    blocks: dict[tuple, list[int]] = {}
    for i, row in enumerate(rows):
        blocks.setdefault(tuple(row.key[j] for j in block), []).append(i)
    for members in blocks.values():
        for c, column in enumerate(columns):
            shown = {i: round(column.scale * rows[i].cells[c].mean, column.decimals)
                     for i in members if rows[i].cells[c].n > 0}
            if len(shown) < 2 or len(set(shown.values())) == 1:
                continue  # nothing to compare, or all tied: bold would say nothing
            target = max(shown.values()) if column.higher_is_better else min(shown.values())
            best.update((i, c) for i, value in shown.items() if value == target)
    return frozenset(best)


def build_table(section: Section, run_set: RunSet) -> Table | None:
    """The section's table, or None when no selected run has its metrics."""
    runs = run_set.runs
    selected_note = ""
    if section.select is not None and not runs.empty:
        runs, selected_note = section.select(run_set, runs)
    metrics = run_set.metrics[run_set.metrics["path"].isin(set(runs["path"]))]
    metrics = metrics[metrics["family"].isin({section.family, "clean"})]
    if runs.empty or not (metrics["family"] == section.family).any():
        return None
    if section.shown_axes:
        runs = runs.assign(variant=[variant(run_set.records[path].axes, skip=section.shown_axes)
                                    for path in runs["path"]])
    columns = tuple(section.columns(metrics))
    values = [run_values(metrics, column) for column in columns]

    keys = list(section.keys)
    groups = sorted(runs.groupby(keys + ["method"], sort=False, dropna=False),
                    key=lambda item: (tuple(_key_sort(k, v) for k, v in zip(keys, item[0][:-1])),
                                      method_rank(item[0][-1])))
    rows: list[Row] = []
    for (*key_values, method), group in groups:
        key = tuple(_key_text(k, v) for k, v in zip(keys, key_values))
        cells = tuple(summarize(v[v.index.isin(set(group["path"]))]) for v in values)
        if not any(cell.n for cell, column in zip(cells, columns) if column.family == section.family):
            continue  # e.g. a segmentation run in the classification table, a clean-only run in OOD
        rows.append(Row(key, method, cells, len(group), _provenance(group)))
    block = [keys.index(k) for k in section.block]
    legend = section.legend
    if section.note is not None:
        legend += " " + section.note([run_set.records[path] for path in runs["path"]])
    legend += f" {selected_note}" if selected_note else ""
    return Table(section.name, section.title, legend, tuple(section.keys), columns, rows,
                 best_cells(rows, columns, block))


def _provenance(group: pd.DataFrame) -> tuple[tuple[str, str], ...]:
    return tuple(sorted(zip(group["run_id"], group["config_hash"])))


# -- which columns each section has --------------------------------------------------------------
def _present(metrics: pd.DataFrame, family: str) -> pd.DataFrame:
    return metrics[metrics["family"] == family]


def _protocols(metrics: pd.DataFrame, family: str) -> list[tuple[str, str]]:
    """(prefix, title) of head/SR/kNN@20 with a value in ``family``, SR first (the headline protocol)."""
    have = set(_present(metrics, family)["metric"])
    ordered = sorted(PROTOCOLS, key=lambda p: ("sr", "knn20", "head").index(p[0]))
    return [(prefix, title) for prefix, title in ordered if top1_name(prefix) in have]


def classification_columns(metrics: pd.DataFrame) -> list[Column]:
    have = set(_present(metrics, "clean")["metric"])
    return [Column(title, "", "clean", top1_name(prefix)) for prefix, title in PROTOCOLS if top1_name(prefix) in have]


def ood_columns(metrics: pd.DataFrame) -> list[Column]:
    severities = sorted(set(_present(metrics, "ood")["severity"]))
    columns = []
    for prefix, title in _protocols(metrics, "ood"):
        metric = top1_name(prefix)
        columns.append(Column(title, "clean", "clean", metric))
        columns.append(Column(title, "mean", "ood", metric))
        columns += [Column(title, f"s{int(s)}", "ood", metric, severity=int(s)) for s in severities]
    return columns


def corruption_columns(metrics: pd.DataFrame) -> list[Column]:
    corruptions = sorted(set(_present(metrics, "ood")["condition"]))
    return [Column(title, corruption, "ood", top1_name(prefix), condition=corruption)
            for prefix, title in _protocols(metrics, "ood") for corruption in corruptions]


def transfer_columns(metrics: pd.DataFrame) -> list[Column]:
    targets = sorted(set(_present(metrics, "transfer")["condition"]))
    return [Column(title, target, "transfer", top1_name(prefix), condition=target)
            for prefix, title in _protocols(metrics, "transfer") for target in targets]


def imbalance_columns(metrics: pd.DataFrame) -> list[Column]:
    present = set(_present(metrics, "imbalance")["condition"])
    groups = [g for g in SHOT_GROUPS if g in present] + sorted(present - set(SHOT_GROUPS))
    return [Column(title, group, "imbalance", top1_name(prefix), condition=group)
            for prefix, title in _protocols(metrics, "imbalance") for group in groups]


def seg_columns(metrics: pd.DataFrame) -> list[Column]:
    names = SEG_NAMES
    present = set(_present(metrics, "seg")["metric"])
    ordered = [m for m in names if m in present] + sorted(present - set(names))
    return [Column(names.get(m, m), "", "seg", m) for m in ordered]


COST = (("Train time (s)", "train_seconds", False), ("Wall time (s)", "total_seconds", False),
        ("Train images/s", "train_images_per_second", True), ("Peak memory (MB)", "peak_memory_mb", False))


def cost_columns(metrics: pd.DataFrame) -> list[Column]:
    present = set(_present(metrics, "cost")["metric"])
    return [Column(title, "", "cost", metric, higher_is_better=higher, scale=1.0, decimals=0)
            for title, metric, higher in COST if metric in present]


def first_in_process(run_set: RunSet) -> set[str]:
    """Paths of the runs that carry their process's warm-up: ``timing.first_in_process`` when the record has
    it; for older records, inferred: the runs of one process (host, pid, experiment) in start order, up to and
    including the first that trained (a pretrained row trains nothing, so the next run is still cold)."""
    first: set[str] = set()
    processes: dict[tuple, list[tuple[str, str, float]]] = {}
    for path, record in run_set.records.items():
        timing = record.timing or Timing()
        flag = timing.first_in_process
        if isinstance(flag, bool):
            first.update([path] if flag else [])
        elif record.pid is not None and record.started_at:
            trained = isinstance(timing.train_seconds, (int, float)) and timing.train_seconds > 0
            key = (str(record.host), str(record.pid), str(record.experiment))
            processes.setdefault(key, []).append((str(record.started_at), path, trained))
    for runs in processes.values():
        for _, path, trained in sorted(runs):
            first.add(path)
            if trained:
                break
    return first


def warm_runs(run_set: RunSet, runs: pd.DataFrame) -> tuple[pd.DataFrame, str]:
    """The cost table's runs: a row's first-in-process runs (their times include the warm-up) are left out
    when the row has other runs; a row of first runs only keeps them and is named in the legend."""
    first = first_in_process(run_set)
    cold = runs["path"].isin(first)
    keys = list(KEYS) + ["method"]
    warm_in_row = runs.assign(_warm=~cold).groupby(keys, sort=False, dropna=False)["_warm"].transform("any")
    drop = cold & warm_in_row
    only_cold = runs[cold & ~warm_in_row]
    rows = sorted({" / ".join([*(str(v) for v in key[:-1] if v), method_label(key[-1])]) for key in
                   only_cold[keys].astype(str).replace("nan", "").itertuples(index=False, name=None)})
    note = (f"Warm-up: a process's first run that trained (and any run before it) pays the process's warm-up "
            f"(imports, data loading, first kernels; `timing.first_in_process`, inferred from host, pid and start "
            f"time for older records); such runs are left out of a row that has other runs "
            f"({int(drop.sum())} left out here).")
    if rows:
        note += f" Rows of first runs only, warm-up included: {'; '.join(rows)}."
    return runs[~drop], note


def shot_thresholds_note(records: list[RunRecord]) -> str:
    """The many/medium/few-shot boundaries the runs used (their config's eval.shot_thresholds)."""
    used = sorted({tuple((r.config.get("eval") or {}).get("shot_thresholds") or ())
                   for r in records} - {()})
    if not used:
        return ""
    text = "; ".join(f"many-shot = more than {high} training images, medium-shot = {low} to {high}, "
                     f"few-shot = fewer than {low}" for low, high in used)
    return f"Classes by training images: {text} (`eval.shot_thresholds`); — = no class in that group."


ACC = "test top-1 in %, mean ± std over seeds"
SECTIONS: tuple[Section, ...] = (
    Section("classification", "Classification",
            f"Clean {ACC}. Head = the fine-tuned classifier, SR = softmax regression on frozen features, "
            "kNN@20 = DINO kNN (k = 20) on frozen features.", "clean", classification_columns),
    Section("ood", "Out-of-distribution: corruptions",
            f"{ACC.capitalize()} on corrupted test sets: clean, mean over every corruption and severity, and "
            "per severity s1..s5 (mean over corruptions).", "ood", ood_columns),
    Section("ood_corruptions", "Out-of-distribution: per corruption",
            f"{ACC.capitalize()} per corruption, mean over its severities.", "ood", corruption_columns),
    Section("transfer", "Out-of-distribution: cross-data-set transfer",
            f"{ACC.capitalize()} on another data set with the same classes (column = target).",
            "transfer", transfer_columns),
    Section("imbalance", "Imbalanced (long-tailed) training",
            f"{ACC.capitalize()}: overall and on many/medium/few-shot classes; IF = imbalance factor "
            "(`config.data.imbalance_factor`).", "imbalance", imbalance_columns,
            keys=("experiment", "dataset", "backbone", "imbalance_factor", "variant"),
            block=("experiment", "dataset", "backbone", "imbalance_factor", "variant"),
            shown_axes=("data.imbalance_factor",), note=shot_thresholds_note),
    Section("segmentation", "Semantic segmentation",
            "Test mIoU and pixel accuracy in %, mean ± std over seeds.", "seg", seg_columns),
    Section("cost", "Cost",
            "Per run, mean ± std over seeds: training time (excluding the learning-rate search and "
            "evaluation), whole-run wall time, training throughput and peak memory (CPU: max RSS of the "
            "process). Bold = cheapest (fastest for images/s).",
            "cost", cost_columns, select=warm_runs),
)


def build_tables(run_set: RunSet) -> list[tuple[Section, Table | None]]:
    return [(section, build_table(section, run_set)) for section in SECTIONS]
