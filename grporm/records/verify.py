"""`grporm verify`: does a rerun reproduce the committed records, exactly or within a stated tolerance?

Runs are paired by experiment + run id; a pair whose config hashes differ computed something else
and is reported as not comparable. Records are read through the run record schema
(`grporm.records.schema`), and every value of `Metrics.values()` is compared under its flat name
(e.g. `sr_top1`, `ood/contrast/3/sr_top1`), in points (x100), except NOT_COMPARED (named in the
output). Each value gets a verdict:

* exact   -- the same float: expected on the same machine with the same thread count and builds;
* within  -- |Δ| <= tolerance;
* OUTSIDE -- |Δ| > tolerance;
* BROKEN  -- missing, NaN or not a number on either side (a broken rerun must not 'reproduce').
  A value absent on both sides (e.g. the head of a method without one) is named, not compared.

The tolerance, in points (first that applies):

* the training-noise floor (`noise_floor`): the committed records of experiments/noise.yaml, runs that
  share one data draw and differ only in training randomness, give each metric's training-noise SD
  (pooled over their arms, with its degrees of freedom). Another CPU model or thread count changes
  float rounding, and training amplifies that like a change of training seed would: a rerun value minus
  the committed one is then the difference of two runs, SD sqrt(2)·sd. The tolerance is its two-sided
  t bound at a family-wise 5% over every value compared (Bonferroni: alpha / (2 K) per side for K
  values), so a faithful rerun fails on noise alone at most 1 time in 20, however many values it has;
* (a metric the noise records lack, or no noise records: the output says so) the committed setting has >= 2 seeds: SEED_MULTIPLE x the seeds' sample std. Another CPU model or
  thread count changes float rounding, and training amplifies that like a change of seed would; the
  difference of two independent draws has std sqrt(2)·s, and 3 of those (3·sqrt(2) ≈ 4.24) leaves a
  false alarm about 1 time in 400 per value;
* else (one seed, or a spread of zero: the seed changes nothing, e.g. a pretrained backbone) the same
  multiple of the median seed std of that metric over the committed settings of the run's data set;
* else, for the data set it was measured on only: the largest |Δ| between two machines in
  `CROSS_MACHINE` (data with its provenance, never a constant typed here);
* else none was measured: only an exact value passes, and the output says so.

Values are half of it: the verdict is computed from the committed records and from the rerun's
(`grporm.analysis.verdict.verdict_frame`), and the output says separately how many cell words agree
(listing the changed ones) and whether every decided claim (reproduced or contradicted on either side)
reads the same, with both sides' CPUs named (`env.cpu` of the records). A decided claim that differs
fails the verification, like a value out of tolerance; a changed cell word alone is reported.
"""
from __future__ import annotations

import csv
import io
import math
import re
import statistics
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from grporm.errors import ConfigError, GrpormError
from grporm.records.inputs import input_folder, read_text
from grporm.records.schema import SR_L2, RunRecord, SchemaError
from grporm.records.storage import read_record

CROSS_MACHINE = Path(__file__).resolve().parents[2] / "results" / "quick" / "cross_machine.csv"
SEED_MULTIPLE = 3 * math.sqrt(2)
NOISE_EXPERIMENT = "noise"  # experiments/noise.yaml: its records under the committed folder give the noise floor
FAMILY_ALPHA = 0.05  # family-wise false-alarm rate of the noise tolerance over all compared values
# What the environment must share for a rerun to be expected bit-exact (see README, "Reproducing
# the committed numbers").
EXACT_ENV = ("cpu", "torch", "timm", "python", "torch_threads", "cuda")
VERDICTS = ("exact", "within", "OUTSIDE", "BROKEN")
# Recorded but not compared, with why; per_class is not in Metrics.values() at all.
NOT_COMPARED = {SR_L2: "the probe's L2 strength picked on validation, a setting rather than a result",
                "per_class": "per-class accuracies; their mean is the compared top-1"}


# -- reading -------------------------------------------------------------------------------------
@dataclass
class Finished:
    """A finished run: its record as written (for config hash, env, seed) and its values by flat name."""

    record: dict
    dataset: str
    values: dict[str, Any]

    @classmethod
    def of(cls, record: dict) -> Finished:
        """Read through the schema; SchemaError when the record's shape does not fit it."""
        typed = RunRecord.from_json(record)
        return cls(record, str(typed.dataset), typed.metrics.values() if typed.metrics is not None else {})


def load_finished(root: Path, experiment: str | None = None) -> tuple[dict[tuple[str, str], Finished], list[str]]:
    """{(experiment, run id): Finished} of the finished runs under `root`, and why others were skipped."""
    input_folder(root, "results folder", "give the folder a run wrote its records into (--results)")
    found: dict[tuple[str, str], Finished] = {}
    problems: list[str] = []
    for path in sorted(root.glob("*/runs/*/record.json")):
        if experiment is not None and path.parent.parent.parent.name != experiment:
            continue
        try:
            record = read_record(path)
            if record is None or record["status"] != "finished":
                continue
            found[(record["experiment"], record["run_id"])] = Finished.of(record)
        except GrpormError as err:
            problems.append(str(err))
        except SchemaError as err:
            problems.append(f"run record {path}: {err}")
    return found, problems


def number(value: Any) -> float | None:
    """The value in points (x100) when it is a finite number, else None."""
    if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
        return 100.0 * value
    return None


def problem(value: Any, present: bool) -> str:
    """Why a value cannot be compared ('' when it can)."""
    if not present:
        return "missing"
    if value is None:
        return "no value (null)"
    if number(value) is None:
        return f"{value!r} is not a finite number"
    return ""


@dataclass(frozen=True)
class CrossMachine:
    """The largest |rerun - committed| measured across two machines, in points; it stands for runs of
    `dataset` only (another data set spreads differently)."""

    points: float
    where: str
    dataset: str | None


def cross_machine_tolerance(path: Path = CROSS_MACHINE) -> CrossMachine:
    """The cross-machine table: '#' comment lines (provenance), then CSV with columns run_id, metric,
    committed, rerun. Its data set is named by a '# data set: NAME' line (the records it was measured on
    are replaced by reruns), else that of the committed records of those run ids, next to it."""
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
    named = [ln.split(":", 1)[1].strip() for ln in text.splitlines() if ln.lower().startswith("# data set:")]
    datasets = set(named[:1])
    for run_id in sorted({r["run_id"] for _, r in deltas}) if not named else ():
        try:
            record = read_record(path.parent / "runs" / str(run_id) / "record.json")
        except GrpormError:
            record = None
        datasets.add(record.get("dataset") if record else None)
    dataset = datasets.pop() if len(datasets) == 1 else None  # unknown or mixed: it stands for no data set
    return CrossMachine(round(worst, 6), f"the largest |Δ| of {len(deltas)} values measured across two machines "
                                         f"in {path.name} ({row['run_id']} {row['metric']})", dataset)


def setting_of(run_id: str) -> str:
    """The run id without its seed: runs that differ only by seed share a setting."""
    return re.sub(r"-s\d+$", "", run_id)


def seed_spreads(records: dict[tuple[str, str], Finished]) -> dict[tuple[str, str, str], tuple[float, int]]:
    """{(experiment, setting, metric): (sample std, seeds)} over the settings with >= 2 seeds, for the
    metrics every seed has a number for."""
    groups: dict[tuple[str, str], list[Finished]] = {}
    for (experiment, run_id), run in records.items():
        groups.setdefault((experiment, setting_of(run_id)), []).append(run)
    out = {}
    for (experiment, setting), members in groups.items():
        if len({m.record.get("seed") for m in members}) < 2:
            continue
        values = [{k: p for k, v in m.values.items() if (p := number(v)) is not None} for m in members]
        for metric in set.intersection(*(set(v) for v in values)):
            out[(experiment, setting, metric)] = (statistics.stdev(v[metric] for v in values), len(values))
    return out


def dataset_spreads(records: dict[tuple[str, str], Finished]) -> dict[tuple[str, str], tuple[float, int]]:
    """{(data set, metric): (median seed std, settings)} over the committed settings of each data set with
    >= 2 seeds and a spread (the median: one unstable setting must not set everyone's tolerance)."""
    stds: dict[tuple[str, str], list[float]] = {}
    dataset_of = {(exp, setting_of(run_id)): run.dataset for (exp, run_id), run in records.items()}
    for (experiment, setting, metric), (std, _) in seed_spreads(records).items():
        if std > 0:
            stds.setdefault((dataset_of[(experiment, setting)], metric), []).append(std)
    return {key: (statistics.median(values), len(values)) for key, values in sorted(stds.items())}


# -- the training-noise floor -----------------------------------------------------------------------
@dataclass(frozen=True)
class NoiseFloor:
    """Each metric's training-noise SD in points with its degrees of freedom, pooled over the arms of runs
    that share one data draw (`noise_floor`); `where` says what it rests on."""

    sd: dict[str, tuple[float, int]]
    where: str

    def tolerance(self, metric: str, family: int, alpha: float = FAMILY_ALPHA) -> float | None:
        """The tolerance of one of `family` compared values of `metric`; None when not measured."""
        if metric not in self.sd:
            return None
        sd, df = self.sd[metric]
        return noise_tolerance(sd, df, family, alpha)


def noise_tolerance(sd: float, df: int, family: int, alpha: float = FAMILY_ALPHA) -> float:
    """The two-sided t bound on |rerun - committed| of one value among `family`, family-wise `alpha`
    (Bonferroni: alpha / (2 family) in each tail), when each of the two runs carries training noise of
    SD `sd` estimated on `df` degrees of freedom: the difference has SD sqrt(2) sd."""
    from scipy import stats

    return float(stats.t.ppf(1 - alpha / (2 * max(1, family)), df)) * math.sqrt(2) * sd


def _pinned_draw(run: Finished) -> bool:
    """Did the run draw its data with a pinned split seed (so its arm's seeds share one draw)?"""
    config = run.record.get("config")
    data = config.get("data") if isinstance(config, dict) else None
    return isinstance(data, dict) and data.get("split_seed") is not None


def noise_floor(records: dict[tuple[str, str], Finished], experiment: str = NOISE_EXPERIMENT,
                where: str = "") -> tuple[NoiseFloor | None, str]:
    """(the noise floor from the finished runs of `experiment` among `records`, or None; why not, or '').
    An arm is a setting (run id without its seed); each arm's sample variance over its seeds enters the
    pooled variance with its n - 1 degrees of freedom, metric by metric. Only runs with a pinned data draw
    (`split_seed` under `data`, as the record stored it) count: with a draw per seed the spread would hold
    data noise too."""
    groups: dict[str, list[Finished]] = {}
    loose = 0
    for (exp, run_id), run in records.items():
        if exp != experiment:
            continue
        if not _pinned_draw(run):
            loose += 1
            continue
        groups.setdefault(setting_of(run_id), []).append(run)
    fix = "run `make noise` (experiments/noise.yaml) and commit results/noise"
    if not groups:
        folder = where or "the committed folder"
        why = (f"the {loose} run(s) of experiment {experiment} in {folder} do not pin one data draw (data: split_seed), so their spread "
               "is not training noise alone" if loose else f"no finished run of experiment {experiment} in {folder}")
        return None, f"no training-noise records ({why}); {fix}"
    sums: dict[str, list] = {}
    for members in groups.values():
        values = [{k: p for k, v in m.values.items() if k not in NOT_COMPARED and (p := number(v)) is not None}
                  for m in members]
        for metric in sorted(set().union(*values)):
            xs = [v[metric] for v in values if metric in v]
            if len(xs) >= 2:
                acc = sums.setdefault(metric, [0.0, 0])
                acc[0] += statistics.variance(xs) * (len(xs) - 1)
                acc[1] += len(xs) - 1
    sd = {metric: (math.sqrt(ss / df), df) for metric, (ss, df) in sums.items()}
    if not sd:
        return None, f"the training-noise records ({experiment}) have no arm with 2 seeds of a metric; {fix}"
    runs = sum(len(m) for m in groups.values())
    return NoiseFloor(sd, f"{experiment}: {runs} runs in {len(groups)} arms sharing one data draw"), ""


# -- comparing -----------------------------------------------------------------------------------
@dataclass
class Line:
    experiment: str
    run_id: str
    metric: str
    committed: float | None  # points; None when it cannot be compared (see `broken`)
    rerun: float | None
    tolerance: float
    basis: str  # "seeds (n)", "data set (k)", "cross-machine" or "none" (see format_report's header)
    broken: str = ""  # why a side cannot be compared, e.g. "rerun: missing"

    @property
    def delta(self) -> float:
        return math.nan if self.broken else self.rerun - self.committed

    @property
    def verdict(self) -> str:
        if self.broken:
            return "BROKEN"
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
    cross: CrossMachine = CrossMachine(math.nan, "", None)
    absent: dict[tuple[str, str], list[str]] = field(default_factory=dict)  # no value on either side
    noise: NoiseFloor | None = None
    noise_note: str = ""  # why there is no noise floor ('' when there is one)
    words: Words | None = None  # the verdicts of both sides (set by `verify`, which reads the folders)
    cpus: tuple[list[str], list[str]] = ([], [])  # (committed, rerun): the CPU models the compared runs ran on

    @property
    def values_ok(self) -> bool:
        return not self.missing and not self.not_comparable and all(ln.verdict in ("exact", "within")
                                                                    for ln in self.lines)

    @property
    def ok(self) -> bool:
        return self.values_ok and not (self.words is not None and self.words.decided_differ)


def env_difference(a: dict, b: dict) -> str:
    """'' when the two environments should give bit-identical numbers, else what differs."""
    diffs = [f"{key} {a.get(key)!r} vs {b.get(key)!r}" for key in EXACT_ENV if a.get(key) != b.get(key)]
    return ", ".join(diffs)


def tolerance(key: tuple[str, str], dataset: str, metric: str, spreads: dict, by_dataset: dict,
              cross: CrossMachine) -> tuple[float, str]:
    """(points, basis) of one value: the module docstring's order."""
    spread = spreads.get((key[0], setting_of(key[1]), metric))
    if spread is not None and spread[0] > 0:
        return SEED_MULTIPLE * spread[0], f"seeds ({spread[1]})"
    if (dataset, metric) in by_dataset:
        return SEED_MULTIPLE * by_dataset[(dataset, metric)][0], f"data set ({by_dataset[(dataset, metric)][1]})"
    if dataset == cross.dataset and not math.isnan(cross.points):
        return cross.points, "cross-machine"
    return 0.0, "none"


def compare_values(key: tuple[str, str], old: Finished, new: Finished, spreads: dict, by_dataset: dict,
                   cross: CrossMachine) -> tuple[list[Line], list[str]]:
    """One Line per value recorded on either side; the names with no value on both sides."""
    lines, absent = [], []
    for metric in list(old.values) + [m for m in new.values if m not in old.values]:
        if metric in NOT_COMPARED:
            continue
        a, b = old.values.get(metric), new.values.get(metric)
        if a is None and b is None:
            absent.append(metric)
            continue
        why = [f"{side}: {p}" for side, value, present in (("committed", a, metric in old.values),
                                                           ("rerun", b, metric in new.values))
               if (p := problem(value, present))]
        tol, basis = tolerance(key, old.dataset, metric, spreads, by_dataset, cross)
        lines.append(Line(*key, metric, number(a), number(b), tol, basis, "; ".join(why)))
    return lines, absent


def compare(committed: dict[tuple[str, str], Finished], rerun: dict[tuple[str, str], Finished],
            cross: CrossMachine, problems: list[str] = (), noise: NoiseFloor | None = None, noise_note: str = "") -> Report:
    """Pair the runs of the experiments the rerun holds; the noise floor gives the tolerance of the
    metrics it measured, every committed run (all experiments) the seed spreads of the others."""
    experiments = {exp for exp, _ in rerun}
    spreads, by_dataset = seed_spreads(committed), dataset_spreads(committed)
    lines, missing, not_comparable, notes, absent = [], [], [], {}, {}
    for key in sorted(k for k in committed if k[0] in experiments):
        if key not in rerun:
            missing.append(key)
            continue
        old, new = committed[key], rerun[key]
        if old.record["config_hash"] != new.record["config_hash"]:
            not_comparable.append((*key, old.record["config_hash"], new.record["config_hash"]))
            continue
        diff = env_difference(old.record.get("env") or {}, new.record.get("env") or {})
        notes[key] = f"environment differs: {diff}" if diff else "same CPU, builds and threads: expected exact"
        run_lines, absent[key] = compare_values(key, old, new, spreads, by_dataset, cross)
        lines += run_lines
    extra = sorted(k for k in rerun if k not in committed)
    if noise is not None:
        family = sum(not ln.broken for ln in lines)  # Bonferroni over every value compared
        for line in lines:
            tol = noise.tolerance(line.metric, family)
            if tol is not None:
                line.tolerance, line.basis = tol, f"noise ({noise.sd[line.metric][1]} df)"
    paired = [k for k in notes]
    cpus = (_cpus(committed[k] for k in paired), _cpus(rerun[k] for k in paired))
    return Report(lines, missing, not_comparable, extra, notes, list(problems), cross, absent, noise, noise_note,
                  cpus=cpus)


def _cpus(runs) -> list[str]:
    """The CPU models (env.cpu, with the core count) the runs ran on, most runs first."""
    counts: dict[str, int] = {}
    for run in runs:
        env = run.record.get("env") if isinstance(run.record.get("env"), dict) else {}
        name = str(env.get("cpu") or "unknown CPU") + (f" ({env['cpu_count']} cores)" if env.get("cpu_count") else "")
        counts[name] = counts.get(name, 0) + 1
    return sorted(counts, key=lambda name: -counts[name])


# -- the verdict on both sides ---------------------------------------------------------------------
@dataclass
class Words:
    """The verdicts of the committed records and of the rerun, cell by cell and claim by claim."""

    cells: list[tuple[str, str, str]]  # (cell, committed word, rerun word) of every cell both sides have
    claims: list[tuple[str, str, str]]  # (experiment / claim, committed word, rerun word)
    one_side: list[str] = field(default_factory=list)  # cells only one side has
    problem: str = ""  # why the verdicts could not be compared ('' when they were)

    @property
    def changed(self) -> list[tuple[str, str, str]]:
        return [c for c in self.cells if c[1] != c[2]]

    @property
    def decided(self) -> list[tuple[str, str, str]]:
        """The claims decided (not inconclusive) on either side."""
        return [c for c in self.claims if _decided(c[1]) or _decided(c[2])]

    @property
    def decided_differ(self) -> list[tuple[str, str, str]]:
        return [c for c in self.decided if c[1] != c[2]]


def _decided(word: str) -> bool:
    from grporm.stats import INCONCLUSIVE

    return bool(word) and word != INCONCLUSIVE


def _cell_name(line) -> str:
    where = "/".join(str(x) for x in (line["dataset"], line["backbone"], line["axes"]) if str(x))
    return f"{line['experiment']} / {line['claim']} / {where} / {line['treatment']}"


def compare_words(committed, rerun) -> Words:
    """`Words` of two verdict frames (analysis.verdict.verdict_frame: one row per cell, its `word`, its
    claim's `claim_word`)."""
    def cells(frame) -> dict[str, str]:
        return {_cell_name(line): str(line["word"]) for _, line in frame.iterrows()}

    def claims(frame) -> dict[str, str]:
        return {f"{line['experiment']} / {line['claim']}": str(line["claim_word"]) for _, line in frame.iterrows()}

    a, b = cells(committed), cells(rerun)
    ca, cb = claims(committed), claims(rerun)
    return Words([(k, a[k], b[k]) for k in a if k in b], [(k, ca.get(k, ""), cb.get(k, "")) for k in dict.fromkeys([*ca, *cb])],
                 sorted(set(a) ^ set(b)))


def verdict_words(committed_dir: Path, rerun_dir: Path, experiments: set[str]) -> Words:
    """The verdicts of `experiments` from the records of each folder, compared (analysis/verdict.py)."""
    from grporm.analysis.records import RunSet, load_runs
    from grporm.analysis.verdict import verdict_frame

    def frame(folder: Path):
        found = load_runs(folder)
        if found.runs.empty:
            return verdict_frame(found)
        keep = found.runs["experiment"].isin(experiments)
        runs = found.runs[keep].reset_index(drop=True)
        metrics = found.metrics[found.metrics["experiment"].isin(experiments)].reset_index(drop=True)
        records = {p: r for p, r in found.records.items() if p in set(runs["path"])}
        return verdict_frame(RunSet(runs=runs, excluded=found.excluded, metrics=metrics, records=records,
                                    roots=found.roots, knn_ks=found.knn_ks))

    try:
        return compare_words(frame(committed_dir), frame(rerun_dir))
    except (GrpormError, ValueError) as err:  # records the verdict cannot read: said, the values still compared
        return Words([], [], problem=str(err).splitlines()[0] if str(err) else type(err).__name__)


def _points(value: float | None, width: int) -> str:
    return f"{'—' if value is None else format(value, '.2f'):>{width}s}"


def _tolerance_header(report: Report) -> list[str]:
    cross, noise = report.cross, report.noise
    family = sum(not ln.broken for ln in report.lines)
    fallback = (f"seeds (n) = {SEED_MULTIPLE:.2f} x the sample std of the committed n seeds of that setting; data set (k) = "
                f"{SEED_MULTIPLE:.2f} x the median seed std of that metric over the k committed settings of the run's "
                f"data set with a spread; cross-machine = ±{cross.points:.2f} for {cross.dataset or 'no'} data set only, "
                f"{cross.where}; none = nothing measured, only an exact value passes")
    if noise is None:
        return [f"tolerance: {report.noise_note}; meanwhile (points: accuracies and ECE x100), first that applies: {fallback}"]
    measured = ", ".join(f"{metric} {sd:.2f}" for metric, (sd, _) in sorted(noise.sd.items()))
    dfs = sorted({df for _, df in noise.sd.values()})
    return [f"tolerance (points: accuracies and ECE x100): noise (df) = t quantile 1 - {FAMILY_ALPHA:g}/(2 x {family}) "
            f"on df x sqrt(2) x the metric's training-noise SD ({noise.where}): a rerun that differs from the committed "
            f"runs by training noise alone keeps all {family} values within at {1 - FAMILY_ALPHA:.0%} (Bonferroni); "
            f"a metric the noise records lack, first that applies: {fallback}",
            f"training-noise SD (points; {'/'.join(map(str, dfs))} df): {measured}"]


def format_report(report: Report, against: Path, rerun_dir: Path) -> str:
    out = [*_tolerance_header(report),
           "not compared: " + "; ".join(f"{name} ({why})" for name, why in NOT_COMPARED.items())]
    width = max([len(ln.metric) for ln in report.lines] + [6])
    current = None
    for line in report.lines:
        key = (line.experiment, line.run_id)
        if key != current:
            current = key
            out.append(f"{line.experiment}/{line.run_id}  ({report.env_notes.get(key, '')})")
            if report.absent.get(key):
                out.append(f"  no value on either side, not compared: {', '.join(report.absent[key])}")
            out.append(f"  {'metric':{width}s}  committed   rerun       Δ  tolerance  verdict")
        delta = "" if line.broken else f"{line.delta:+6.2f}"
        out.append(f"  {line.metric:{width}s}  {_points(line.committed, 9)}  {_points(line.rerun, 6)}  {delta:>6s}  "
                   f"{'±' + format(line.tolerance, '.2f'):>6s} {line.basis:14s}  {line.verdict}"
                   + (f" ({line.broken})" if line.broken else ""))
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
    out.append(f"values: {runs} run(s), {len(report.lines)} value(s): {counts['exact']} exact, {counts['within']} within, "
               f"{counts['OUTSIDE']} OUTSIDE, {counts['BROKEN']} BROKEN; {len(report.missing)} missing, "
               f"{len(report.not_comparable)} not comparable: {counts['exact'] + counts['within']} of {len(report.lines)} "
               "within tolerance")
    out += _words_lines(report.words)
    committed_cpus, rerun_cpus = report.cpus
    out.append(f"CPUs: committed on {', '.join(committed_cpus) or 'no compared run'}; "
               f"rerun on {', '.join(rerun_cpus) or 'no compared run'}")
    why = [reason for reason, bad in (
        ("a value out of tolerance or broken, or a run missing or not comparable", not report.values_ok),
        ("a decided claim reads differently", report.words is not None and bool(report.words.decided_differ))) if bad]
    out.append("-> reproduced" if report.ok else f"-> NOT reproduced: {'; '.join(why)}")
    return "\n".join(out)


def _words_lines(words: Words | None) -> list[str]:
    if words is None:
        return []
    if words.problem:
        return [f"cell words: not compared ({words.problem})", "decided claims: not compared"]
    changed = words.changed
    out = [f"cell words: {len(words.cells) - len(changed)} of {len(words.cells)} equal"
           + (f"; changed: {'; '.join(f'{cell}: {a or chr(8212)} -> {b or chr(8212)}' for cell, a, b in changed)}" if changed else "")]
    if words.one_side:
        out.append(f"  cells on one side only (not compared): {'; '.join(words.one_side)}")
    decided, differ = words.decided, words.decided_differ
    listed = "; ".join(f"{claim}: {a or chr(8212)} -> {b or chr(8212)}" for claim, a, b in decided)
    out.append(f"decided claims: {len(decided) - len(differ)} of {len(decided)} equal" + (f" ({listed})" if listed else
               " (no claim is decided on either side)")
               + f"; {len(words.claims) - len(decided)} claim(s) inconclusive on both sides")
    return out


def verify(rerun_dir: Path, against: Path, experiment: str | None = None,
           cross_machine: Path = CROSS_MACHINE) -> tuple[Report, str]:
    rerun, problems = load_finished(rerun_dir, experiment)
    if not rerun:
        which = f" of experiment {experiment}" if experiment else ""
        raise ConfigError(f"rerun folder {rerun_dir}: no finished run{which} (no */runs/*/record.json with status "
                          f"finished); give the --results folder of the rerun")
    committed, more = load_finished(against)  # every experiment: the data set's seed spread may come from another
    if not any(key[0] in {e for e, _ in rerun} for key in committed):
        raise ConfigError(f"--against {against}: no committed run of experiment(s) {', '.join(sorted({e for e, _ in rerun}))}; "
                          "give the folder holding the committed records (results)")
    noise, note = noise_floor(committed, where=str(against))
    report = compare(committed, rerun, cross_machine_tolerance(cross_machine), problems + more, noise, note)
    report.words = verdict_words(against, rerun_dir, {e for e, _ in rerun})
    return report, format_report(report, against, rerun_dir)
