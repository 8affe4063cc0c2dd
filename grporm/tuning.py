"""Choosing the learning rate: one decisive rule, the same for every method (docs/method.md,
'Choosing hyper-parameters').

A decision belongs to a *setting*: everything that changes training or the score, without the run's
seed, the experiment's name, tracking or the evaluations the score does not use. So the seeds of a
study and an ablation with the same setting share one decision, made once with `tune.seed`.

Here: the decision as a pure function of a score callback, the key of a setting and the record's
file layout (``<results>/tuning/<key>.json``). Training and scoring the candidates is
`grporm.learning_rate.decision_for`. The grid rule (`check_grid`) is checked when an experiment is
loaded (grporm/experiment.py) and again by `decide`.
"""
from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from grporm.config import GRPOConfig, RunConfig
from grporm.methods import method
from grporm.storage import read_record_or_rerun

TUNING_DIR = "tuning"
# How a run is computed or logged, or the lr it is told to use: not part of the setting a decision is for.
TRAIN_NOT_IN_KEY = ("lr", "lr_grid", "search_epochs", "search_train_per_class", "log_every")
SCORE_EVAL_FIELDS = {"sr": ("sr_l2_grid", "sr_max_iter"), "knn20": ("knn_temperature",), "head": (), "miou": ()}


# A tuning grid must be able to bracket an optimum.
MIN_VALUES = 3
MIN_DECADES = 1.5
EXAMPLE = "e.g. [3.0e-4, 1.0e-3, 3.0e-3, 1.0e-2]"


def check_grid(grid: list[float]) -> list[float]:
    """`grid` unchanged if it can bracket an optimum (or is empty: tuning off); ValueError otherwise."""
    if not grid:
        return grid
    if any(not lr > 0 for lr in grid):
        raise ValueError(f"every learning rate must be > 0, {EXAMPLE}")
    if len(grid) < MIN_VALUES:
        raise ValueError(f"needs at least {MIN_VALUES} learning rates to bracket the optimum (got {len(grid)}), {EXAMPLE}")
    if any(b <= a for a, b in zip(grid, grid[1:])):
        raise ValueError(f"must be in increasing order without repeats, {EXAMPLE}")
    decades = math.log10(grid[-1] / grid[0])
    if decades < MIN_DECADES - 1e-9:
        raise ValueError(f"must span at least {MIN_DECADES} decades, max/min >= {10 ** MIN_DECADES:.1f} "
                         f"(got {decades:.2f}), {EXAMPLE}")
    return grid


def tuning_epochs(run: RunConfig) -> int:
    """Whole epochs, at least `fraction` of the final run's (ceil), with the schedule compressed to them."""
    return math.ceil(run.tune.fraction * run.train.epochs - 1e-9)


def binomial_se(p: float, n: int) -> float:
    return math.sqrt(max(p * (1 - p), 0.0) / n) if n > 0 else math.nan


def _significant(x: float, digits: int = 3) -> float:
    """A grid step as a round number (9e-3, not 0.009000000000000001), so records and keys are stable."""
    return float(f"{x:.{digits - 1}e}")


def extend(grid: list[float], direction: str) -> list[float]:
    """One more value past the edge, at the log-step of the grid's last pair on that side."""
    if direction == "up":
        return [*grid, _significant(grid[-1] * grid[-1] / grid[-2])]
    return [_significant(grid[0] * grid[0] / grid[1]), *grid]


@dataclass
class Decision:
    grid: list[float]                      # every value scored, increasing (extensions included)
    scores: dict[float, float | None]      # None = training diverged at that lr
    winner: float
    margin: float | None                   # best - second best; None with a single finite score
    se: float                              # binomial SE of the winner's validation score
    close_call: bool
    edge: bool                             # still on an edge after max_extensions
    extended: list[str] = field(default_factory=list)


def _rank(scores: dict[float, float | None], lr: float) -> tuple[float, float]:
    value = scores[lr]
    return (-math.inf if value is None else value, -lr)  # ties -> the smaller lr


def decide(grid: list[float], score: Callable[[float], float | None], n_val: int, max_extensions: int = 2) -> Decision:
    """Score every grid value (once each), take the best (ties -> smaller lr), extend the grid past an
    edge winner by its own log-step up to `max_extensions` times. Close call: margin below the
    binomial SE sqrt(p(1-p)/n_val) of the winner's score p (or an exact tie)."""
    values = list(check_grid(grid))
    scores: dict[float, float | None] = {}
    extended: list[str] = []
    while True:
        for lr in values:
            if lr not in scores:
                scores[lr] = score(lr)
        if all(scores[lr] is None for lr in values):
            raise ValueError(f"training diverged at every learning rate of {values}; lower the grid")
        winner = max(values, key=lambda lr: _rank(scores, lr))
        direction = "up" if winner == values[-1] else "down" if winner == values[0] else None
        if direction is None or len(extended) >= max_extensions:
            break
        values = extend(values, direction)
        extended.append(direction)
    finite = sorted((scores[lr] for lr in values if scores[lr] is not None), reverse=True)
    best = scores[winner]
    margin = finite[0] - finite[1] if len(finite) > 1 else None
    se = binomial_se(best, n_val)
    close = margin is not None and (margin < se or margin == 0)
    return Decision(values, {lr: scores[lr] for lr in values}, winner, margin, se, close,
                    winner in (values[0], values[-1]), extended)


# -- the setting a decision is for -------------------------------------------------------------------
def setting(run: RunConfig) -> dict:
    """Everything that changes tuning's training or score, without the run's seed, the experiment,
    tracking, out-of-distribution evaluations or the other kNN k (tune.seed is in: it makes the decision)."""
    payload = run.hash_payload()
    out = {"task": payload["task"], "method": payload["method"], "data": payload["data"], "model": payload["model"],
           "train": {k: v for k, v in payload["train"].items() if k not in TRAIN_NOT_IN_KEY},
           "tune": payload["tune"],
           "eval": {k: payload["eval"][k] for k in SCORE_EVAL_FIELDS[run.tune.score]}}
    if method(run.method).objective == "grpo_rm":  # its options change training
        out["grpo_rm"] = payload["grpo_rm"]
    if run.task == "segmentation":
        out["seg"] = payload["seg"]
    return out


def tuning_key(run: RunConfig) -> str:
    return hashlib.sha256(json.dumps(setting(run), sort_keys=True).encode()).hexdigest()[:12]


def label(run: RunConfig) -> str:
    """The setting in a few words, for tables and messages."""
    return describe(setting(run))


def describe(tree: dict) -> str:
    """'data / size / backbone / method (what differs from the defaults)' of a setting, e.g. of a
    decision record's `setting`: tells apart the readings of one study and the studies of one data set."""
    data, train = tree["data"], tree.get("train", {})
    size = f"{data.get('image_size')} px, {data.get('train_per_class') or 'all'}/class"
    parts = [data["name"], size, tree["model"]["name"], tree["method"]]
    if data.get("imbalance_factor") is not None:
        parts.insert(2, f"IF {data['imbalance_factor']:g}")
    defaults = GRPOConfig().model_dump()
    changed = {k: v for k, v in tree.get("grpo_rm", {}).items() if k in defaults and v != defaults[k]}
    if tree.get("grpo_rm", {}).get("group") == "sampled":  # G matters there even at its default
        changed["group_size"] = tree["grpo_rm"]["group_size"]
    else:
        changed.pop("group_size", None)
    if train.get("grad_clip", 1.0) != 1.0:
        changed["grad_clip"] = train["grad_clip"]
    options = ", ".join(f"{k}={_short(v)}" for k, v in changed.items())
    return " / ".join(parts) + (f" ({options})" if options else "")


def _short(value) -> str:
    if isinstance(value, dict):
        return "+".join(f"{k}:{v:g}" if isinstance(v, (int, float)) else str(k) for k, v in value.items())
    return f"{value:g}" if isinstance(value, float) else str(value)


def needs_decision(run: RunConfig) -> bool:
    return bool(run.tune.grid) and method(run.method).trains


def tuning_config(run: RunConfig) -> RunConfig:
    """The run tuning trains: the run's setting at tune.seed, for tuning_epochs, no per-run search."""
    train = run.train.model_copy(update={"epochs": tuning_epochs(run), "lr_grid": []})
    return run.model_copy(update={"experiment": TUNING_DIR, "seed": run.tune.seed, "train": train,
                                  "run_id": f"tune-{tuning_key(run)}", "axes": {}})


def record_path(results: Path, key: str) -> Path:
    return Path(results) / TUNING_DIR / f"{key}.json"


def partial_path(results: Path, key: str) -> Path:
    """Scores of the grid values done so far (a resumed decision skips them); gone once decided."""
    return Path(results) / TUNING_DIR / f".{key}.partial.json"


def lock_path(results: Path, key: str) -> Path:
    return Path(results) / TUNING_DIR / f".{key}.lock"


# What a decision and a tuning's progress must hold to be read back; anything else counts as damaged
# (the decision is redone, the damaged file kept aside).
DECISION_FIELDS = {"key": str, "label": str, "score": str, "grid": list, "scores": list, "winner": (int, float)}
PARTIAL_FIELDS = {"key": str, "scores": list}


def _belongs_to(path: Path):
    """A record's own key must be its file name: a decision copied under another key would be reused
    for the wrong setting."""
    def check(record: dict) -> str | None:
        if not path.name.lstrip(".").startswith(record["key"]):
            return f"holds the decision of key {record['key']!r}, not of its file name"
        rows = record["scores"]
        if not all(isinstance(r, dict) and isinstance(r.get("lr"), (int, float)) for r in rows):
            return "scores must be rows of {'lr': number, 'score': number or null, ...}"
        return None
    return check


def read_decision(path: Path) -> dict | None:
    """The decision at `path`; None if it is missing or damaged (then it is redone, with a warning)."""
    return read_record_or_rerun(path, DECISION_FIELDS, _belongs_to(path))


def read_partial(path: Path) -> dict | None:
    """The scores of an interrupted tuning; None if missing or damaged (the grid is scored again)."""
    return read_record_or_rerun(path, PARTIAL_FIELDS, _belongs_to(path))
