"""Read the run records under a results folder into pandas tables.

Layout written by the runner: ``RESULTS/<experiment>/runs/<run_id>/record.json`` (+ ``history.csv``,
``steps.csv``). Only *finished* runs become rows; failed, still-running (or interrupted), unreadable
and duplicated records are listed in ``RunSet.excluded`` with a reason, never averaged in.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import pandas as pd

from grporm.errors import GrpormError

METHOD_ORDER = ("pretrained", "linear_probe", "ce", "grpo_rm")
METHOD_LABEL = {"pretrained": "Pretrained", "linear_probe": "Linear probe", "ce": "CE", "grpo_rm": "GRPO-RM"}

ID_COLUMNS = ("run_id", "experiment", "method", "dataset", "backbone", "seed", "config_hash", "path")
ACCURACY_COLUMNS = ("head_top1", "sr_top1", "knn10_top1", "knn20_top1", "knn100_top1", "knn200_top1")
METRIC_COLUMNS = ("head_top1", "ece", "sr_top1", "knn10_top1", "knn20_top1", "knn100_top1", "knn200_top1",
                  "train_seconds", "train_images_per_second", "peak_memory_mb")
KNN_KS = (10, 20, 100, 200)
RECORD_GLOBS = ("*/runs/*/record.json", "runs/*/record.json")


@dataclass
class RunSet:
    """``runs``: one row per finished run (ID_COLUMNS + METRIC_COLUMNS, accuracies as fractions).
    ``excluded``: (path of the record or run folder, reason) for everything left out."""

    runs: pd.DataFrame
    excluded: list[tuple[Path, str]] = field(default_factory=list)


def method_rank(method: str) -> tuple[int, str]:
    """Sort key: the paper's method order first, unknown methods after, alphabetically."""
    return (METHOD_ORDER.index(method) if method in METHOD_ORDER else len(METHOD_ORDER), method)


class _Invalid(ValueError):
    """A record that parses but cannot be used; the message is the exclusion reason."""


def _number(name: str, value) -> float:
    if value is None:
        return math.nan
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise _Invalid(f"metric {name} is {value!r}, not a number")
    value = float(value)
    return value if math.isfinite(value) else math.nan


def _flat_metrics(record: dict) -> dict[str, float]:
    metrics = record.get("metrics")
    timing = record.get("timing") or {}
    if not isinstance(metrics, dict) or not isinstance(timing, dict):
        raise _Invalid("'metrics' or 'timing' is not an object")
    knn = metrics.get("knn_top1") or {}
    if not isinstance(knn, dict):
        raise _Invalid(f"metrics.knn_top1 is {knn!r}, not an object keyed by k")
    raw = {"head_top1": metrics.get("head_top1"), "ece": metrics.get("ece"), "sr_top1": metrics.get("sr_top1")}
    for k in KNN_KS:
        raw[f"knn{k}_top1"] = knn.get(str(k))
    for key in ("train_seconds", "train_images_per_second", "peak_memory_mb"):
        raw[key] = timing.get(key)
    flat = {name: _number(name, value) for name, value in raw.items()}
    for name in ACCURACY_COLUMNS:
        if not math.isnan(flat[name]) and not 0.0 <= flat[name] <= 1.0:
            raise _Invalid(f"metric {name} = {flat[name]:g} is outside [0, 1] (accuracies are fractions)")
    return flat


def _row(record: dict, record_path: Path) -> dict:
    """The table row of a finished record; raises _Invalid with the reason otherwise."""
    if not isinstance(record, dict):
        raise _Invalid("record.json does not hold a JSON object")
    status = record.get("status")
    if status == "failed":
        raise _Invalid(f"failed: {record.get('error') or 'no error message recorded'}")
    if status == "running":
        raise _Invalid("status 'running': still running, or interrupted before it finished")
    if status != "finished":
        raise _Invalid(f"unknown status {status!r}")
    missing = [key for key in ("method", "dataset", "backbone", "seed") if record.get(key) in (None, "")]
    if missing:
        raise _Invalid(f"finished but missing {', '.join(missing)}")
    seed = record["seed"]
    if isinstance(seed, bool) or not isinstance(seed, (int, float)) or float(seed) != int(seed):
        raise _Invalid(f"seed is {seed!r}, not an integer")
    run_dir = record_path.parent
    return {
        "run_id": str(record.get("run_id") or run_dir.name),
        "experiment": str(record.get("experiment") or run_dir.parent.parent.name),
        "method": str(record["method"]),
        "dataset": str(record["dataset"]),
        "backbone": str(record["backbone"]),
        "seed": int(seed),
        "config_hash": str(record.get("config_hash") or ""),
        "path": str(run_dir.resolve()),
        **_flat_metrics(record),
    }


def _sort_stamp(record: dict) -> float:
    """finished_at as a number, for keeping the later of two duplicates; -inf when absent."""
    try:
        stamp = datetime.fromisoformat(str(record.get("finished_at")))
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


def load_runs(results_dir: str | Path) -> RunSet:
    """Load every ``<experiment>/runs/<run_id>/record.json`` under ``results_dir`` (a results folder,
    or a single experiment folder holding ``runs/``)."""
    root = Path(results_dir)
    if not root.is_dir():
        raise GrpormError(f"results folder {root} does not exist")
    excluded: list[tuple[Path, str]] = [(d, "no record.json in the run folder (never started, or deleted)")
                                        for d in _runs_without_record(root)]
    kept: list[tuple[dict, dict, Path]] = []  # (row, record, path)
    for path in _record_paths(root):
        try:
            record = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
            excluded.append((path, f"unreadable record.json: {type(err).__name__}: {err}"))
            continue
        try:
            kept.append((_row(record, path), record, path))
        except _Invalid as err:
            excluded.append((path, str(err)))

    # The same config and seed finished twice (e.g. under another run id): keep the later one only,
    # so that one seed is never counted twice in a mean.
    by_key: dict[tuple, list[tuple[dict, dict, Path]]] = {}
    for item in kept:
        row = item[0]
        key = (row["experiment"], row["dataset"], row["backbone"], row["method"], row["seed"], row["config_hash"])
        by_key.setdefault(key, []).append(item)
    rows = []
    for items in by_key.values():
        items.sort(key=lambda item: (_sort_stamp(item[1]), item[0]["run_id"]))
        winner = items[-1][0]
        rows.append(winner)
        for row, _, path in items[:-1]:
            excluded.append((path, f"duplicate of run {winner['run_id']} (same config and seed); "
                                   "only the later-finished run is kept"))

    runs = pd.DataFrame(rows, columns=list(ID_COLUMNS + METRIC_COLUMNS))
    if not runs.empty:
        order = runs["method"].map(method_rank)
        runs = (runs.assign(_rank=order).sort_values(["experiment", "dataset", "backbone", "_rank", "seed", "run_id"])
                .drop(columns="_rank").reset_index(drop=True))
    excluded.sort(key=lambda item: str(item[0]))
    return RunSet(runs=runs, excluded=excluded)


def tidy(runs: pd.DataFrame) -> pd.DataFrame:
    """Long form: one row per (run, metric) with columns ID_COLUMNS + metric, value; missing values dropped."""
    id_vars = [c for c in ID_COLUMNS if c in runs.columns]
    value_vars = [c for c in METRIC_COLUMNS if c in runs.columns]
    long = runs.melt(id_vars=id_vars, value_vars=value_vars, var_name="metric", value_name="value")
    long["value"] = pd.to_numeric(long["value"], errors="coerce")
    return long.dropna(subset=["value"]).reset_index(drop=True)


def load_history(run_path: str | Path) -> pd.DataFrame | None:
    """The run's per-epoch ``history.csv`` (numeric columns, one row per epoch, sorted), or None when
    it is missing, empty or unreadable. ``run_path`` is the run folder (or a file inside it)."""
    run_dir = Path(run_path)
    if run_dir.is_file():
        run_dir = run_dir.parent
    path = run_dir / "history.csv"
    if not path.is_file():
        return None
    try:
        history = pd.read_csv(path)
    except (OSError, UnicodeDecodeError, pd.errors.EmptyDataError, pd.errors.ParserError):
        return None
    if history.empty or "epoch" not in history.columns:
        return None
    history = history.apply(pd.to_numeric, errors="coerce").dropna(subset=["epoch"])
    if history.empty:
        return None
    # a resumed run may have written an epoch twice: the last write wins
    history = history.drop_duplicates("epoch", keep="last").sort_values("epoch").reset_index(drop=True)
    return history
