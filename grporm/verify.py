"""`grporm verify`: does a rerun reproduce the committed records, exactly or within a stated tolerance?

Runs are paired by experiment + run id; a pair whose config hashes differ computed something else
and is reported as not comparable. Each metric gets a verdict:

* exact   -- the same float: expected on the same machine with the same thread count and builds;
* within  -- |Δ| <= tolerance;
* OUTSIDE -- |Δ| > tolerance.

The tolerance, in accuracy points:

* the committed experiment has >= 2 seeds of the run's setting: SEED_MULTIPLE x the seeds' sample
  std. Another CPU model or thread count changes float rounding, and training amplifies that like
  a change of seed would; the difference of two independent draws has std sqrt(2)·s, and 3 of
  those (3·sqrt(2) ≈ 4.24) leaves a false alarm about 1 time in 400 per value. Where the seeds'
  spread is zero (the seed changes nothing, e.g. a pretrained backbone), the cross-machine figure;
* one seed only: the largest |Δ| measured between two machines on the committed quick table,
  read from `CROSS_MACHINE` (data with its provenance, never a constant typed here).
"""
from __future__ import annotations

import csv
import io
import math
import re
import statistics
from dataclasses import dataclass
from pathlib import Path

from grporm.errors import ConfigError, GrpormError
from grporm.inputs import input_folder, read_text
from grporm.storage import read_record

CROSS_MACHINE = Path(__file__).resolve().parent.parent / "results" / "quick" / "cross_machine.csv"
SEED_MULTIPLE = 3 * math.sqrt(2)
# What the environment must share for a rerun to be expected bit-exact (see README, "Reproducing
# the committed numbers").
EXACT_ENV = ("cpu", "torch", "timm", "python", "torch_threads", "cuda")
VERDICTS = ("exact", "within", "OUTSIDE")


# -- reading -------------------------------------------------------------------------------------
def load_finished(root: Path, experiment: str | None = None) -> tuple[dict[tuple[str, str], dict], list[str]]:
    """{(experiment, run id): record} of the finished runs under `root`, and why others were skipped."""
    input_folder(root, "results folder", "give the folder a run wrote its records into (--results)")
    found: dict[tuple[str, str], dict] = {}
    problems: list[str] = []
    for path in sorted(root.glob("*/runs/*/record.json")):
        if experiment is not None and path.parent.parent.parent.name != experiment:
            continue
        try:
            record = read_record(path)
        except GrpormError as err:
            problems.append(str(err))
            continue
        if record is not None and record["status"] == "finished":
            found[(record["experiment"], record["run_id"])] = record
    return found, problems


def metric_values(metrics: dict) -> dict[str, float]:
    """The compared metrics of a record, in accuracy points (x100): head, SR, kNN@20, and what the
    record has of segmentation, corruption means, transfer and imbalance."""
    out: dict[str, float] = {}

    def put(name: str, value) -> None:
        if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
            out[name] = 100.0 * value

    put("head", metrics.get("head_top1"))
    put("SR", metrics.get("sr_top1"))
    put("kNN@20", (metrics.get("knn_top1") or {}).get("20"))
    seg = metrics.get("seg") or {}
    put("mIoU", seg.get("miou"))
    put("pixel acc", seg.get("pixel_acc"))
    ood = metrics.get("ood") or {}
    for key, label in (("head_top1", "head"), ("sr_top1", "SR"), ("knn20_top1", "kNN@20")):
        values = [cell[key] for levels in ood.values() if isinstance(levels, dict)
                  for cell in levels.values() if isinstance(cell, dict) and isinstance(cell.get(key), (int, float))]
        if values:
            put(f"OOD mean {label}", sum(values) / len(values))
    for dataset, cell in (metrics.get("transfer") or {}).items():
        for key, label in (("head_top1", "head"), ("sr_top1", "SR"), ("knn20_top1", "kNN@20")):
            put(f"transfer {dataset} {label}", (cell or {}).get(key))
    for probe, shots in (metrics.get("imbalance") or {}).items():
        for shot in ("many", "medium", "few"):
            put(f"{probe} {shot}-shot", (shots or {}).get(shot))
    return out


def cross_machine_tolerance(path: Path = CROSS_MACHINE) -> tuple[float, str]:
    """(largest |rerun - committed| in points, where it was measured) from the cross-machine table.

    The file: '#' comment lines (provenance), then CSV with columns run_id, metric, committed, rerun."""
    text = read_text(path, "cross-machine table", "restore it from git (results/quick/cross_machine.csv)")
    rows = list(csv.DictReader(io.StringIO("\n".join(ln for ln in text.splitlines() if not ln.startswith("#")))))
    deltas = []
    for row in rows:
        try:
            if row["committed"] not in ("", "—") and row["rerun"] not in ("", "—"):
                deltas.append((abs(float(row["rerun"]) - float(row["committed"])), row))
        except (KeyError, TypeError, ValueError):
            raise ConfigError(f"cross-machine table {path}: row {row} needs numeric committed and rerun columns; "
                              "restore it from git") from None
    if not deltas:
        raise ConfigError(f"cross-machine table {path}: no measured pair; restore it from git")
    worst, row = max(deltas, key=lambda d: d[0])
    return round(worst, 6), (f"the largest |Δ| of {len(deltas)} values measured across two machines in {path.name} "
                             f"({row['run_id']} {row['metric']})")


def setting_of(run_id: str) -> str:
    """The run id without its seed: runs that differ only by seed share a setting."""
    return re.sub(r"-s\d+$", "", run_id)


def seed_spreads(records: dict[tuple[str, str], dict]) -> dict[tuple[str, str, str], tuple[float, int]]:
    """{(experiment, setting, metric): (sample std, seeds)} over the settings with >= 2 seeds."""
    groups: dict[tuple[str, str], list[dict]] = {}
    for (experiment, run_id), record in records.items():
        groups.setdefault((experiment, setting_of(run_id)), []).append(record)
    out = {}
    for (experiment, setting), members in groups.items():
        if len({m.get("seed") for m in members}) < 2:
            continue
        values = [metric_values(m["metrics"]) for m in members]
        for metric in set.intersection(*(set(v) for v in values)):
            out[(experiment, setting, metric)] = (statistics.stdev(v[metric] for v in values), len(values))
    return out


# -- comparing -----------------------------------------------------------------------------------
@dataclass
class Line:
    experiment: str
    run_id: str
    metric: str
    committed: float
    rerun: float
    tolerance: float
    basis: str

    @property
    def delta(self) -> float:
        return self.rerun - self.committed

    @property
    def verdict(self) -> str:
        if self.rerun == self.committed:
            return "exact"
        # the table's rounding to 1e-9 points: a tolerance read from a rounded CSV must not flip a verdict
        return "within" if abs(self.delta) <= self.tolerance + 1e-9 else "OUTSIDE"


@dataclass
class Report:
    lines: list[Line]
    missing: list[tuple[str, str]]  # committed runs absent from the rerun
    not_comparable: list[tuple[str, str, str, str]]  # (experiment, run id, committed hash, rerun hash)
    extra: list[tuple[str, str]]  # rerun runs with no committed record
    env_notes: dict[tuple[str, str], str]
    problems: list[str]
    cross: tuple[float, str] = (math.nan, "")

    @property
    def ok(self) -> bool:
        return not self.missing and not self.not_comparable and all(ln.verdict != "OUTSIDE" for ln in self.lines)


def env_difference(a: dict, b: dict) -> str:
    """'' when the two environments should give bit-identical numbers, else what differs."""
    diffs = [f"{key} {a.get(key)!r} vs {b.get(key)!r}" for key in EXACT_ENV if a.get(key) != b.get(key)]
    return ", ".join(diffs)


def compare(committed: dict, rerun: dict, cross: tuple[float, str], problems: list[str] = ()) -> Report:
    """Pair the runs of the experiments the rerun holds; `cross` = (points, where measured)."""
    experiments = {exp for exp, _ in rerun}
    spreads = seed_spreads(committed)
    lines, missing, not_comparable, notes = [], [], [], {}
    for key in sorted(k for k in committed if k[0] in experiments):
        if key not in rerun:
            missing.append(key)
            continue
        old, new = committed[key], rerun[key]
        if old["config_hash"] != new["config_hash"]:
            not_comparable.append((*key, old["config_hash"], new["config_hash"]))
            continue
        diff = env_difference(old.get("env") or {}, new.get("env") or {})
        notes[key] = f"environment differs: {diff}" if diff else "same CPU, builds and threads: expected exact"
        old_m, new_m = metric_values(old["metrics"]), metric_values(new["metrics"])
        for metric in [m for m in old_m if m in new_m]:
            spread = spreads.get((key[0], setting_of(key[1]), metric))
            if spread is not None and spread[0] > 0:
                tol, basis = SEED_MULTIPLE * spread[0], f"seeds ({spread[1]})"
            else:
                tol, basis = cross[0], "cross-machine"
            lines.append(Line(*key, metric, old_m[metric], new_m[metric], tol, basis))
    extra = sorted(k for k in rerun if k not in committed)
    return Report(lines, missing, not_comparable, extra, notes, list(problems), cross)


def format_report(report: Report, against: Path, rerun_dir: Path) -> str:
    out = [f"tolerance (accuracy points): seeds (n) = {SEED_MULTIPLE:.2f} x the sample std of the committed n seeds "
           f"of that setting; cross-machine = ±{report.cross[0]:.2f}, {report.cross[1]}"]
    width = max([len(ln.metric) for ln in report.lines] + [6])
    current = None
    for line in report.lines:
        key = (line.experiment, line.run_id)
        if key != current:
            current = key
            out.append(f"{line.experiment}/{line.run_id}  ({report.env_notes.get(key, '')})")
            out.append(f"  {'metric':{width}s}  committed   rerun       Δ  tolerance  verdict")
        out.append(f"  {line.metric:{width}s}  {line.committed:9.2f}  {line.rerun:6.2f}  {line.delta:+6.2f}  "
                   f"{'±' + format(line.tolerance, '.2f'):>6s} {line.basis:14s}  {line.verdict}")
    for experiment, run_id in report.missing:
        out.append(f"MISSING  {experiment}/{run_id}: committed in {against}, not finished in {rerun_dir}")
    for experiment, run_id, old, new in report.not_comparable:
        out.append(f"NOT COMPARABLE  {experiment}/{run_id}: config {new} in the rerun, {old} committed "
                   "(another config computes other numbers)")
    for experiment, run_id in report.extra:
        out.append(f"not committed (ignored)  {experiment}/{run_id}")
    for problem in report.problems:
        out.append(f"skipped: {problem}")
    counts = {v: sum(ln.verdict == v for ln in report.lines) for v in VERDICTS}
    runs = len({(ln.experiment, ln.run_id) for ln in report.lines})
    out.append(f"{runs} run(s), {len(report.lines)} value(s): {counts['exact']} exact, {counts['within']} within, "
               f"{counts['OUTSIDE']} OUTSIDE; {len(report.missing)} missing, {len(report.not_comparable)} not comparable"
               f" -> {'reproduced' if report.ok else 'NOT reproduced'}")
    return "\n".join(out)


def verify(rerun_dir: Path, against: Path, experiment: str | None = None,
           cross_machine: Path = CROSS_MACHINE) -> tuple[Report, str]:
    rerun, problems = load_finished(rerun_dir, experiment)
    if not rerun:
        which = f" of experiment {experiment}" if experiment else ""
        raise ConfigError(f"rerun folder {rerun_dir}: no finished run{which} (no */runs/*/record.json with status "
                          f"finished); give the --results folder of the rerun")
    committed, more = load_finished(against, experiment)
    if not any(key[0] in {e for e, _ in rerun} for key in committed):
        raise ConfigError(f"--against {against}: no committed run of experiment(s) {', '.join(sorted({e for e, _ in rerun}))}; "
                          "give the folder holding the committed records (results)")
    report = compare(committed, rerun, cross_machine_tolerance(cross_machine), problems + more)
    return report, format_report(report, against, rerun_dir)
