"""Choosing the learning rate: one decisive rule, the same for every method (docs/method.md,
'Tuning rules').

A decision belongs to a *setting*: everything that changes training or the score, without the run's
seed, the experiment's name, tracking or the evaluations the score does not use. So the seeds of a
study and an ablation with the same setting share one decision, made once on the tuning seeds
(`tune.seeds`, at least 2). Which of the decision's learning rates a run trains at (`tune.pick`:
the winner, or the runner-up for the sensitivity runs of a close call) is not part of the setting.

Here: the decision as a pure function of a score callback, the key of a setting and the record's
file layout (``<results>/tuning/<key>.json``). Training and scoring the candidates is
`grporm.tuning.trials.decision_for`. The grid rule (`check_grid`) is checked when an experiment is
loaded (grporm/plan/experiment.py) and again by `decide`.
"""
from __future__ import annotations

import hashlib
import json
import math
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Mapping, Sequence

from pydantic import BaseModel, ConfigDict, ValidationError

from grporm.config import MIN_TUNING_SEEDS, GRPOConfig, RunConfig
from grporm.errors import GrpormError, first_error
from grporm.records.storage import read_record, read_record_or_rerun
from grporm.stats import mean_binomial_se, paired_se
from grporm.training.methods import method

TUNING_DIR = "tuning"
# How a run is computed or logged, or the lr it is told to use: not part of the setting a decision is for
# (lr_grid & co. are retired options, still in the hashed payload at their last default).
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
    seeds: list[int]                       # the tuning seeds
    per_seed: dict[float, dict[int, float | None]]  # lr -> seed -> validation score; None = diverged
    scores: dict[float, float | None]      # mean over the seeds; None = diverged at some seed
    winner: float
    runner_up: float | None                # second best mean; None with a single finite score
    margin: float | None                   # winner's mean - runner-up's mean
    se: float                              # binomial SE of the winner's mean score
    seed_se: float | None                  # SE of the per-seed differences winner - runner-up
    uncertainty: float | None              # max(se, seed_se): a margin below it is a close call
    close_call: bool
    edge: bool                             # still on an edge after max_extensions
    extended: list[str] = field(default_factory=list)


def _rank(scores: dict[float, float | None], lr: float) -> tuple[float, float]:
    value = scores[lr]
    return (-math.inf if value is None else value, -lr)  # ties -> the smaller lr


def _mean(values: list[float | None]) -> float | None:
    return None if any(v is None for v in values) else sum(values) / len(values)


def close_call_threshold(se: float, seed_se: float | None) -> float:
    """The combined uncertainty of a margin: the larger of the binomial SE of the winner's mean and the
    SE of the paired per-seed differences (docs/method.md, 'Tuning rules')."""
    known = [x for x in (se, seed_se) if x is not None and not math.isnan(x)]
    return max(known) if known else math.nan


def decide(grid: list[float], score: Callable[[float, int], float | None], n_val: int | Mapping[int, int],
           seeds: Sequence[int], max_extensions: int = 2) -> Decision:
    """Score every grid value once per tuning seed (`score(lr, seed)`), take the best mean over the
    seeds (ties -> smaller lr; a value that diverged at any seed never wins), extend the grid past an
    edge winner by its own log-step up to `max_extensions` times. Close call: the margin over the
    runner-up is below `close_call_threshold` (or an exact tie). `n_val`: the validation size, one
    for every seed or per seed."""
    seeds = list(seeds)
    if len(seeds) < MIN_TUNING_SEEDS or len(set(seeds)) != len(seeds):
        raise ValueError(f"a decision needs at least {MIN_TUNING_SEEDS} distinct tuning seeds (got {seeds}); "
                         "set tune.seeds, e.g. [0, 1]")
    values = list(check_grid(grid))
    per_seed: dict[float, dict[int, float | None]] = {}
    extended: list[str] = []
    while True:
        for lr in values:
            for seed in seeds:
                if seed not in per_seed.setdefault(lr, {}):
                    per_seed[lr][seed] = score(lr, seed)
        scores = {lr: _mean([per_seed[lr][s] for s in seeds]) for lr in values}
        if all(scores[lr] is None for lr in values):
            raise ValueError(f"training diverged at every learning rate of {values} (at some tuning seed); lower the grid")
        winner = max(values, key=lambda lr: _rank(scores, lr))
        direction = "up" if winner == values[-1] else "down" if winner == values[0] else None
        if direction is None or len(extended) >= max_extensions:
            break
        values = extend(values, direction)
        extended.append(direction)
    finite = sorted((lr for lr in values if scores[lr] is not None), key=lambda lr: _rank(scores, lr), reverse=True)
    runner_up = finite[1] if len(finite) > 1 else None
    sizes = [n_val[s] if isinstance(n_val, Mapping) else n_val for s in seeds]  # read once every seed is scored
    se = mean_binomial_se([per_seed[winner][s] for s in seeds], sizes)
    margin = seed_se = uncertainty = None
    if runner_up is not None:
        margin = scores[winner] - scores[runner_up]
        seed_se = paired_se([per_seed[winner][s] for s in seeds], [per_seed[runner_up][s] for s in seeds])
        uncertainty = close_call_threshold(se, seed_se)
    close = margin is not None and (margin == 0 or margin < uncertainty)
    return Decision(values, seeds, {lr: dict(per_seed[lr]) for lr in values}, scores, winner, runner_up, margin,
                    se, seed_se, uncertainty, close, winner in (values[0], values[-1]), extended)


# -- the setting a decision is for -------------------------------------------------------------------
def setting(run: RunConfig) -> dict:
    """Everything that changes tuning's training or score, without the run's seed, the experiment,
    tracking, out-of-distribution evaluations or the other kNN k (tune.seeds are in: they make the
    decision; tune.pick is out: it only says which of the decision's lrs a run uses)."""
    payload = run.hash_payload()
    out = {"task": payload["task"], "method": payload["method"], "data": payload["data"], "model": payload["model"],
           "train": {k: v for k, v in payload["train"].items() if k not in TRAIN_NOT_IN_KEY},
           "tune": {k: v for k, v in payload["tune"].items() if k != "pick"},
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
    size = f"{data.get('image_size')} px, {data.get('train_per_class') or 'all'}/class" + (
        f", {train['epochs']} epochs" if "epochs" in train else "")  # e.g. CE with twice the steps
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


def tuning_config(run: RunConfig, seed: int) -> RunConfig:
    """The run tuning trains at tuning seed `seed` (which also draws its data unless the data section
    pins a split seed): the run's setting, for tuning_epochs, pick at its default."""
    train = run.train.model_copy(update={"epochs": tuning_epochs(run)})
    tune = run.tune.model_copy(update={"pick": "winner"})
    return run.model_copy(update={"experiment": TUNING_DIR, "seed": seed, "train": train, "tune": tune,
                                  "run_id": f"tune-{tuning_key(run)}-s{seed}", "axes": {}})


def record_path(results: Path, key: str) -> Path:
    return Path(results) / TUNING_DIR / f"{key}.json"


def partial_path(results: Path, key: str) -> Path:
    """Scores of the grid values done so far (a resumed decision skips them); gone once decided."""
    return Path(results) / TUNING_DIR / f".{key}.partial.json"


def lock_path(results: Path, key: str) -> Path:
    return Path(results) / TUNING_DIR / f".{key}.lock"


CLOSE_CALL_RULE = ("close call: margin == 0 or margin < max(se, seed_se); margin = winner's mean - runner-up's mean "
                   "over the k tuning seeds, se = sqrt(sum_s p_s (1 - p_s) / n_s) / k with p_s the winner's score "
                   "on seed s's n_s validation images, seed_se = sample std of the per-seed differences "
                   "(winner - runner-up) / sqrt(k)")


def decision_record(run: RunConfig, key: str, decision: Decision, rows: dict[tuple[float, int], dict]) -> dict:
    """The record of a decision: the rule's numbers and every per-seed score. `rows`: (lr, seed) ->
    {"lr", "seed", "score", "n_val", "seconds"} of every scored pair."""
    seeds = decision.seeds
    return {
        "key": key,
        "label": label(run),
        "setting": setting(run),
        "score": run.tune.score,
        "seeds": seeds,
        "n_val": {str(s): rows[decision.winner, s]["n_val"] for s in seeds},
        "initial_grid": list(run.tune.grid),
        "grid": decision.grid,
        "scores": [{"lr": lr, "score": decision.scores[lr],
                    "per_seed": [{k: rows[lr, s][k] for k in ("seed", "score", "n_val", "seconds")} for s in seeds]}
                   for lr in decision.grid],
        "winner": decision.winner,
        "runner_up": decision.runner_up,
        "margin": decision.margin,
        "se": decision.se,
        "seed_se": decision.seed_se,
        "uncertainty": decision.uncertainty,
        "close_call_rule": CLOSE_CALL_RULE,
        "close_call": decision.close_call,
        "edge": decision.edge,
        "extended": decision.extended,
    }


def as_points(value: float | None) -> str:
    """A fraction in percentage points, one decimal (a dash for none); also the tuning table's (analysis/tuning.py)."""
    return "—" if value is None else f"{100 * value:.1f}"


def flags(record: dict) -> str:
    """What a reader must know about a decision: close call, edge, grid extensions."""
    out = []
    if record.get("close_call"):
        out.append("close call")
    if record.get("edge"):
        out.append("edge")
    out += [f"extended {d}" for d in record.get("extended") or []]
    return ", ".join(out)


def decision_summary(record: dict) -> str:
    """One line: 'lr 0.001 (runner-up 0.0003, margin 1.2 points, SE 0.9, seed SE 1.5, close call)'."""
    runner_up = record.get("runner_up")
    parts = [f"runner-up {runner_up:g}" if runner_up is not None else "no runner-up",
             f"margin {as_points(record.get('margin'))} points", f"SE {as_points(record.get('se'))}",
             f"seed SE {as_points(record.get('seed_se'))}"]
    return f"lr {record['winner']:g} (" + ", ".join(parts + [f for f in flags(record).split(", ") if f]) + ")"


# What a decision and a tuning's progress must hold to be read back, typed; anything else counts as
# damaged (the decision is redone, the damaged file kept aside). Strict: a number where a string
# belongs (or true where a number does) is damage, not something to coerce.
class ScoreRow(BaseModel):
    model_config = ConfigDict(extra="allow", strict=True)

    lr: float
    score: float | None = None


class PartialRecord(BaseModel):
    """The scores of an interrupted tuning (``<results>/tuning/.<key>.partial.json``)."""

    model_config = ConfigDict(extra="allow", strict=True)

    key: str
    scores: list[ScoreRow]


class DecisionRecord(PartialRecord):
    """A decision (``<results>/tuning/<key>.json``, `decision_record`'s shape) a run may train at."""

    label: str
    score: str
    grid: list
    seeds: list
    winner: float
    margin: float | None
    runner_up: float | None
    close_call: bool


def _valid(model: type[BaseModel], path: Path):
    """The file's problem under `model`, or under its name: a record's own key must be its file name (a
    decision copied under another key would be reused for the wrong setting)."""
    def check(record: dict) -> str | None:
        try:
            model.model_validate(record)
        except ValidationError as err:
            where, first = first_error(err)
            return f"lacks the key {where!r}" if first["type"] == "missing" else f"{where}: {first['msg']}"
        if not path.name.lstrip(".").startswith(record["key"]):
            return f"holds the decision of key {record['key']!r}, not of its file name"
        return None
    return check


def read_decision(path: Path) -> dict | None:
    """The decision at `path` a run may train at (checked against `DecisionRecord`); None if it is
    missing or damaged (then it is redone)."""
    return read_record_or_rerun(path, {}, _valid(DecisionRecord, path))


def read_partial(path: Path) -> dict | None:
    """The scores of an interrupted tuning; None if missing or damaged (the grid is scored again)."""
    return read_record_or_rerun(path, {}, _valid(PartialRecord, path))


def load_records(results: Path) -> list[dict]:
    """Every decision under `results`/tuning, by setting label then key; a damaged one is skipped
    with a warning naming it."""
    folder = Path(results) / TUNING_DIR
    records = []
    for path in sorted(folder.glob("[!.]*.json")) if folder.is_dir() else []:
        try:
            records.append(read_record(path, {}, "tuning record", _valid(DecisionRecord, path)))
        except GrpormError as err:
            print(f"warning: {err}; left out of the report", file=sys.stderr)
    return sorted(records, key=lambda r: (setting_label(r), r["key"]))


# -- sensitivity: the runs of a close call, again at the runner-up ------------------------------------
def is_close_call(run: RunConfig, decisions: Mapping[str, dict]) -> bool:
    """Does `run` train at a decision that is a close call? Those runs are run again at the runner-up;
    the verdict pairs them with the other side at its own winner (a cell whose two sides are both close
    calls moves both). `decisions`: tuning key -> decision record, for every run that needs one."""
    return needs_decision(run) and bool(decisions[tuning_key(run)].get("close_call"))


def setting_label(record: dict) -> str:
    """A decision record's setting in words, from its setting where it has a readable one (decisions made before `describe` carry
    a shorter label), else its stored label."""
    try:
        return describe(record["setting"])
    except (KeyError, TypeError, AttributeError, ValueError):
        return record.get("label", "")
