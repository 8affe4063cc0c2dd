"""Read the run records under a results folder into pandas tables.

Layout written by the runner: ``RESULTS/<experiment>/runs/<run_id>/record.json`` (+ ``history.csv``,
``steps.csv``). Only *finished* runs become rows; failed, still-running (or interrupted), unreadable
and duplicated records are listed in ``RunSet.excluded`` with a reason, never averaged in.

Two views of the same runs: ``RunSet.runs`` (wide, one row per run) and ``RunSet.metrics`` (tidy, one
row per run and metric value, every metric family of the record: clean accuracies, cost, and the
optional ``ood``, ``transfer``, ``imbalance`` and ``seg`` sections).
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import pandas as pd

from grporm.errors import GrpormError
from grporm.records.inputs import InputError, read_json
from grporm.records.schema import ECE, HEAD, HEADLINE_K, SR, Metrics, RunRecord, SchemaError, Timing, knn_k, knn_name, top1_name
from grporm.training.methods import method_label, method_rank

__all__ = ["RunSet", "load_runs", "load_history", "load_steps", "tidy", "method_label", "method_rank"]

ID_COLUMNS = ("run_id", "experiment", "method", "dataset", "backbone", "seed", "config_hash", "path", "variant",
              "imbalance_factor")
COST_COLUMNS = ("train_seconds", "total_seconds", "train_images_per_second", "peak_memory_mb")
# Matrix axes every run id already names; any other axis makes a "variant" (e.g. an ablation setting).
STANDARD_AXES = ("seed", "method", "model.name", "data.name")
TIDY_COLUMNS = ("family", "metric", "condition", "severity", "value")
RECORD_GLOBS = ("*/runs/*/record.json", "runs/*/record.json")


@dataclass
class RunSet:
    """``runs``: one row per finished run (ID_COLUMNS + metric_columns(knn_ks) + one column per variant axis,
    accuracies as fractions). ``metrics``: the tidy table, one row per (run, metric value) with the
    run's ID and axis columns and TIDY_COLUMNS. ``excluded``: (path of the record or run folder,
    reason) for everything left out. ``records``: the finished records (typed, `RunRecord`, read once per
    file), keyed by the ``path`` column."""

    runs: pd.DataFrame
    excluded: list[tuple[Path, str]] = field(default_factory=list)
    metrics: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=list(ID_COLUMNS + TIDY_COLUMNS)))
    records: dict[str, RunRecord] = field(default_factory=dict)  # keyed by the ``path`` column
    roots: tuple[Path, ...] = ()
    knn_ks: tuple[int, ...] = (HEADLINE_K,)  # the k of each knn{k}_top1 column of ``runs``


def accuracy_columns(ks) -> tuple[str, ...]:
    """The clean accuracies of a run table whose records hold kNN at `ks`."""
    return (HEAD, SR, *(knn_name(k) for k in ks))


def metric_columns(ks) -> tuple[str, ...]:
    """Every metric column of a run table whose records hold kNN at `ks` (the headline k always)."""
    return (HEAD, ECE, SR, *(knn_name(k) for k in ks), *COST_COLUMNS)


def is_metric_column(name: str) -> bool:
    return name in (HEAD, ECE, SR) + COST_COLUMNS or knn_k(name) is not None


class _Invalid(ValueError):
    """A record that parses but cannot be used; the message is the exclusion reason."""


def _number(name: str, value) -> float:
    if value is None:
        return math.nan
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise _Invalid(f"metric {name} is {value!r}, not a number")
    value = float(value)
    return value if math.isfinite(value) else math.nan


def _flat_metrics(metrics: Metrics, timing: Timing) -> dict[str, float]:
    """The record's numbers by column name: every kNN k it holds (`RunSet.knn_ks` makes the columns)."""
    raw = {HEAD: metrics.head_top1, ECE: metrics.ece, SR: metrics.sr_top1}
    raw.update({knn_name(k): v for k, v in sorted(metrics.knn_top1.items())})
    raw.update({key: getattr(timing, key) for key in COST_COLUMNS})
    flat = {name: _number(name, value) for name, value in raw.items()}
    for name in accuracy_columns(sorted(metrics.knn_top1)):
        if not math.isnan(flat[name]) and not 0.0 <= flat[name] <= 1.0:
            raise _Invalid(f"metric {name} = {flat[name]:g} is outside [0, 1] (accuracies are fractions)")
    return flat


def _row(record: dict, record_path: Path) -> tuple[dict, RunRecord]:
    """The table row of a finished record and the record, typed; raises _Invalid with the reason otherwise."""
    if not isinstance(record, dict):
        raise _Invalid("record.json does not hold a JSON object")
    status = record.get("status")
    if status == "failed":
        raise _Invalid(f"failed: {record.get('error') or 'no error message recorded'}")
    if status == "running":
        raise _Invalid("status 'running': still running, or killed before it finished")
    if status == "interrupted":
        raise _Invalid(f"interrupted ({record.get('error') or 'SIGINT/SIGTERM'}); rerun its command to resume")
    if status != "finished":
        raise _Invalid(f"unknown status {status!r}")
    seed = record.get("seed")
    if seed not in (None, "") and (isinstance(seed, bool) or not isinstance(seed, (int, float))
                                   or not math.isfinite(seed) or float(seed) != int(seed)):
        raise _Invalid(f"seed is {seed!r}, not an integer")
    try:
        typed = RunRecord.from_json(record)
    except SchemaError as err:
        raise _Invalid(str(err)) from None
    missing = [key for key in ("method", "dataset", "backbone", "seed") if getattr(typed, key) in (None, "")]
    if missing:
        raise _Invalid(f"finished but missing {', '.join(missing)}")
    run_dir = record_path.parent
    return {
        "run_id": str(typed.run_id or run_dir.name),
        "experiment": str(typed.experiment or run_dir.parent.parent.name),
        "method": str(typed.method),
        "dataset": str(typed.dataset),
        "backbone": str(typed.backbone),
        "seed": int(typed.seed),
        "config_hash": str(typed.config_hash or ""),
        "path": str(run_dir.resolve()),
        "variant": variant(typed.axes),
        "imbalance_factor": _imbalance_factor(typed),
        **_flat_metrics(typed.metrics or Metrics(), typed.timing or Timing()),
    }, typed


def _axis_text(value) -> str:
    return json.dumps(value, sort_keys=True) if isinstance(value, (dict, list)) else str(value)


def variant_axes(axes, skip: tuple[str, ...] = ()) -> dict:
    """The run's matrix values other than seed, method, backbone and data set (and ``skip``), in matrix order."""
    if not isinstance(axes, dict):
        return {}
    return {str(k): v for k, v in axes.items() if k not in STANDARD_AXES and k not in skip}


def variant(axes, skip: tuple[str, ...] = ()) -> str:
    """'key=value, key=value' of the non-standard axes ('' for none): tells ablation rows apart."""
    return ", ".join(f"{key}={_axis_text(value)}" for key, value in variant_axes(axes, skip).items())


def _imbalance_factor(record: RunRecord) -> float:
    data = record.config.get("data")
    value = data.get("imbalance_factor") if isinstance(data, dict) else None
    return _number("config.data.imbalance_factor", value)


def _fraction(name: str, value) -> float:
    number = _number(name, value)
    if not math.isnan(number) and not 0.0 <= number <= 1.0:
        raise _Invalid(f"metric {name} = {number:g} is outside [0, 1] (accuracies are fractions)")
    return number


# The sections of Metrics.values() that become tidy rows: family -> the parts of a name after it.
SECTION_PARTS = {"ood": ("corruption", "severity", "score"), "transfer": ("target", "score"),
                 "imbalance": ("predictor", "group"), "seg": ("score",)}


def _section_row(name: str, value) -> tuple:
    """The tidy row of one flat name of `Metrics.values()` in SECTION_PARTS ("ood/<corruption>/<severity>/
    <score>", ...); the clean scalars come from the run's columns instead."""
    family, *parts = name.split("/")
    dotted = ".".join([family, *parts])
    if len(parts) != len(SECTION_PARTS[family]):
        raise _Invalid(f"metrics.{dotted} is {value!r}: metrics.{family} holds "
                       f"{' -> '.join(SECTION_PARTS[family])} -> number")
    if family == "ood":
        corruption, severity, metric = parts
        try:
            level = int(severity)
        except ValueError:
            raise _Invalid(f"metrics.ood.{corruption}: severity {severity!r} is not an integer") from None
        return ("ood", metric, corruption, level, _fraction(dotted, value))
    if family == "transfer":
        return ("transfer", parts[1], parts[0], 0, _fraction(dotted, value))
    if family == "imbalance":
        return ("imbalance", top1_name(parts[0]), parts[1], 0, _fraction(dotted, value))
    return ("seg", parts[0], "", 0, _fraction(dotted, value))


def metric_rows(metrics: Metrics, flat: dict[str, float]) -> list[tuple]:
    """(family, metric, condition, severity, value) for every number of a finished record's metrics;
    ``flat`` is its ``_flat_metrics``. Families: clean, cost, and the sections of `Metrics.values()`: ood
    (condition = corruption, severity 1..5), transfer (condition = target data set), imbalance (condition
    = overall/many/medium/few), seg. A cost of 0 training seconds means "did not train" (pretrained) and
    is left out."""
    ks = sorted(k for name in flat if (k := knn_k(name)) is not None)
    rows = [("clean", name, "", 0, flat[name]) for name in accuracy_columns(ks) + (ECE,)]
    rows += [("cost", name, "", 0, flat[name]) for name in COST_COLUMNS
             if not (name == "train_seconds" and flat[name] == 0)]
    order = list(SECTION_PARTS)  # families in this order, each sorted by the parts of its names
    names = sorted((name.split("/") for name in metrics.values() if name.split("/")[0] in SECTION_PARTS),
                   key=lambda parts: (order.index(parts[0]), parts[1:]))
    values = metrics.values()
    rows += [_section_row(name, values[name]) for name in ("/".join(parts) for parts in names)]
    return [row for row in rows if not math.isnan(row[-1])]


def _sort_stamp(record: RunRecord) -> float:
    """finished_at as a number, for keeping the later of two duplicates; -inf when absent."""
    try:
        stamp = datetime.fromisoformat(str(record.finished_at))
    except ValueError:
        return -math.inf
    if stamp.tzinfo is None:
        stamp = stamp.replace(tzinfo=timezone.utc)
    return stamp.timestamp()


def _record_paths(root: Path) -> list[Path]:
    found: set[Path] = set()
    for pattern in RECORD_GLOBS:
        found.update(root.glob(pattern))
    return sorted(found)


def _runs_without_record(root: Path) -> list[Path]:
    dirs: set[Path] = set()
    for pattern in ("*/runs/*", "runs/*"):
        dirs.update(p for p in root.glob(pattern) if p.is_dir() and not (p / "record.json").exists())
    return sorted(dirs)


def check_results_folder(root: Path) -> None:
    """A results folder must be a folder: one line naming the problem otherwise."""
    if root.is_file():
        raise GrpormError(f"{root} is a file, not a results folder; give the folder that holds <experiment>/runs/")
    if not root.is_dir():
        raise GrpormError(f"results folder {root} does not exist")


def load_runs(results_dir: str | Path, *more_dirs: str | Path) -> RunSet:
    """Load every ``<experiment>/runs/<run_id>/record.json`` under ``results_dir`` (a results folder,
    or a single experiment folder holding ``runs/``) and under each of ``more_dirs`` (e.g. the W&B
    cache); a run found twice (same config and seed) is counted once."""
    roots = tuple(Path(d) for d in (results_dir, *more_dirs))
    excluded: list[tuple[Path, str]] = []
    kept: list[tuple[dict, RunRecord, Path]] = []  # (row, record, path)
    long_rows: dict[str, list[tuple]] = {}
    seen: set[Path] = set()  # run folders: one reached through two folders (A and A/sub) is read once
    for root in roots:
        check_results_folder(root)
        for run_dir in _runs_without_record(root):
            if run_dir.resolve() not in seen:
                seen.add(run_dir.resolve())
                excluded.append((run_dir, "no record.json in the run folder (never started, or deleted)"))
        for path in _record_paths(root):
            if path.parent.resolve() in seen:
                continue
            seen.add(path.parent.resolve())
            # the suite's one reader of user files: regular files only, size-limited, any JSON failure one line
            try:
                record = read_json(path, "run record", "delete it or rerun that run")
            except InputError as err:
                excluded.append((path, f"unreadable record.json: {err.problem}"))
                continue
            try:
                row, typed = _row(record, path)
                long_rows[row["path"]] = metric_rows(typed.metrics or Metrics(), row)
                kept.append((row, typed, path))
            except _Invalid as err:
                excluded.append((path, str(err)))
            except RecursionError:  # parses, but too deep to walk (e.g. axes nested hundreds of levels)
                excluded.append((path, "record.json is nested too deeply to read"))

    # The same config and seed finished twice (e.g. under another run id): keep the later one only,
    # so that one seed is never counted twice in a mean.
    by_key: dict[tuple, list[tuple[dict, RunRecord, Path]]] = {}
    for item in kept:
        row = item[0]
        key = (row["experiment"], row["dataset"], row["backbone"], row["method"], row["seed"], row["config_hash"])
        by_key.setdefault(key, []).append(item)
    rows = []
    for items in by_key.values():
        items.sort(key=lambda item: (_sort_stamp(item[1]), item[0]["run_id"]))
        winner = items[-1][0]
        rows.append(winner)
        for _, _, path in items[:-1]:
            excluded.append((path, f"duplicate of run {winner['run_id']} (same config and seed); "
                                   "only the later-finished run is kept"))

    record_of = {row["path"]: record for row, record, _ in kept}
    records = {row["path"]: record_of[row["path"]] for row in rows}
    axis_names: list[str] = []
    for row in rows:  # the variant axes become columns too (the run's config keys)
        axes = variant_axes(records[row["path"]].axes)
        axis_names += [k for k in axes if k not in axis_names]
        row.update({k: _axis_text(v) for k, v in axes.items()})
    # kNN columns for every k some record holds (eval.knn_k), the headline k always
    knn_ks = tuple(sorted({HEADLINE_K} | {k for row in rows for name in row if (k := knn_k(name)) is not None}))
    columns = metric_columns(knn_ks)
    for row in rows:
        row.update({name: math.nan for name in columns if name not in row})
    axis_names = [k for k in axis_names if k not in ID_COLUMNS + columns]
    runs = pd.DataFrame(rows, columns=list(ID_COLUMNS + columns) + axis_names)
    if not runs.empty:
        order = runs["method"].map(method_rank)
        runs = (runs.assign(_rank=order)
                .sort_values(["experiment", "dataset", "backbone", "variant", "_rank", "seed", "run_id"])
                .drop(columns="_rank").reset_index(drop=True))
    excluded.sort(key=lambda item: str(item[0]))
    return RunSet(runs=runs, excluded=excluded, metrics=_tidy_metrics(runs, long_rows, axis_names),
                  records=records, roots=roots, knn_ks=knn_ks)


def _tidy_metrics(runs: pd.DataFrame, long_rows: dict[str, list[tuple]], axis_names: list[str]) -> pd.DataFrame:
    ids = list(ID_COLUMNS) + axis_names
    frames = [pd.DataFrame(long_rows[path], columns=list(TIDY_COLUMNS)).assign(**{c: row[c] for c in ids})
              for path, row in zip(runs["path"], runs.to_dict("records"))] if not runs.empty else []
    frames = [f for f in frames if not f.empty]
    if not frames:
        return pd.DataFrame(columns=ids + list(TIDY_COLUMNS))
    return pd.concat(frames, ignore_index=True)[ids + list(TIDY_COLUMNS)]


def tidy(runs: pd.DataFrame) -> pd.DataFrame:
    """Long form: one row per (run, metric column) with columns ID_COLUMNS + metric, value; missing values dropped."""
    id_vars = [c for c in ID_COLUMNS if c in runs.columns]
    value_vars = [c for c in runs.columns if is_metric_column(c)]
    long = runs.melt(id_vars=id_vars, value_vars=value_vars, var_name="metric", value_name="value")
    long["value"] = pd.to_numeric(long["value"], errors="coerce")
    return long.dropna(subset=["value"]).reset_index(drop=True)


def _load_csv(run_path: str | Path, name: str, index: str) -> pd.DataFrame | None:
    run_dir = Path(run_path)
    if run_dir.is_file():
        run_dir = run_dir.parent
    path = run_dir / name
    if not path.is_file():
        return None
    try:
        table = pd.read_csv(path)
    except (OSError, UnicodeDecodeError, pd.errors.EmptyDataError, pd.errors.ParserError):
        return None
    if table.empty or index not in table.columns:
        return None
    table = table.apply(pd.to_numeric, errors="coerce").dropna(subset=[index])
    if table.empty:
        return None
    # a resumed run may have written a row twice: the last write wins
    return table.drop_duplicates(index, keep="last").sort_values(index).reset_index(drop=True)


def load_history(run_path: str | Path) -> pd.DataFrame | None:
    """The run's per-epoch ``history.csv`` (numeric columns, one row per epoch, sorted), or None when
    it is missing, empty or unreadable. ``run_path`` is the run folder (or a file inside it)."""
    return _load_csv(run_path, "history.csv", "epoch")


def load_steps(run_path: str | Path) -> pd.DataFrame | None:
    """The run's per-step training statistics ``steps.csv`` (one row per logged step), like load_history."""
    return _load_csv(run_path, "steps.csv", "step")


def merged(folders: list[Path]) -> RunSet:
    """The finished runs of several results folders as one RunSet, the one rule of `grporm compare` and
    `grporm.verdict`: an experiment found in more than one folder is kept apart, named
    `<folder>/<experiment>`; within a folder a run finished twice counts once (the other is in
    `excluded`, see `dropped`); overlapping folders (`A` and `A/sub`) are refused, they would count the
    same runs twice."""
    folders = [Path(f) for f in folders]
    for folder in folders:
        check_results_folder(folder)
    resolved = [f.resolve() for f in folders]
    if len(set(resolved)) != len(folders):
        raise GrpormError("a results folder is given twice; give each once")
    for inner, inner_path in zip(folders, resolved):
        for outer, outer_path in zip(folders, resolved):
            if inner_path != outer_path and inner_path.is_relative_to(outer_path):
                raise GrpormError(f"results folder {inner} lies inside {outer}: its runs would count twice; give only {outer}")
    sets = [(str(f), load_runs(f)) for f in folders]
    seen: dict[str, int] = {}
    for _, s in sets:
        for e in set(s.runs["experiment"]) if not s.runs.empty else ():
            seen[e] = seen.get(e, 0) + 1
    runs, metrics, records, excluded = [], [], {}, []
    for label, s in sets:
        rename = {e: f"{label.rstrip('/')}/{e}" for e, count in seen.items() if count > 1}
        if not s.runs.empty:
            runs.append(s.runs.assign(experiment=s.runs["experiment"].replace(rename)))
            metrics.append(s.metrics.assign(experiment=s.metrics["experiment"].replace(rename)))
        records.update(s.records)
        excluded += s.excluded
    if not runs:
        return RunSet(runs=pd.DataFrame(), excluded=excluded)
    knn_ks = tuple(sorted({k for _, s in sets for k in s.knn_ks}))
    return RunSet(runs=pd.concat(runs, ignore_index=True), excluded=excluded,
                  metrics=pd.concat(metrics, ignore_index=True), records=records,
                  roots=tuple(Path(f) for f in folders), knn_ks=knn_ks)


def dropped(run_set: RunSet) -> list[str]:
    """One line per run left out as a duplicate of another (same config and seed), to say so."""
    return [f"{path}: {reason}" for path, reason in run_set.excluded if reason.startswith("duplicate of run")]
