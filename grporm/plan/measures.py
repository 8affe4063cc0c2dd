"""What a verdict row measures, by name: the registry a claim's `measure` is looked up in
(`verdict.claims` of an experiment; analysis/verdict.py computes the values from the records).

A measure is written `name` or `name/condition`: the condition picks a transfer target
(`transfer_sr/digits`), a shot group (`imbalance_sr/few`) or one corruption (`ood_sr/contrast`; without
one, the mean over every corruption and severity). Every measure is higher-is-better, in the record's
unit (fractions), shown in points.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

from grporm.records.schema import MIOU, PROTOCOLS, VAL_HEAD
from grporm.registry import Registry

SEPARATOR = "/"
FIRST_EPOCH = "first_epoch_"  # + protocol: the validation probe of history.csv after the first epoch


@dataclass(frozen=True)
class Measure:
    """family: the record section the value comes from ("clean", "ood", "transfer", "imbalance", "seg",
    or "history" for history.csv); metric: its metric name (history: the column); condition: "none",
    "required" or "optional"; title: the default claim name; doc: what is measured, for the legend."""

    name: str
    family: str
    metric: str
    condition: str
    title: str
    doc: str


MEASURES: Registry[Measure] = Registry("verdict measure")


def _register(measure: Measure) -> None:
    MEASURES.register(measure.name, measure.doc)(measure)


for _prefix, _metric, _title in PROTOCOLS:
    _short = "kNN" if _prefix.startswith("knn") else _title
    _tag = "" if _prefix == "sr" else f" ({_short})"  # SR is the headline protocol: its rows go untagged
    _register(Measure(_prefix, "clean", _metric, "none", _short, f"clean test top-1 of {_title}"))
    _register(Measure(f"ood_{_prefix}", "ood", _metric, "optional", "OOD: corruptions" + _tag, f"{_title} on the corrupted test set, mean over corruptions and severities"))
    _register(Measure(f"transfer_{_prefix}", "transfer", _metric, "required", "OOD: transfer" + _tag,
                      f"{_title} on another data set with the same classes (the condition names it)"))
    _register(Measure(f"imbalance_{_prefix}", "imbalance", _metric, "required", "Imbalance" + _tag,
                      f"balanced test {_title} after long-tailed training, on a shot group (overall/many/medium/few)"))
    _register(Measure(f"{FIRST_EPOCH}{_prefix}", "history", VAL_HEAD if _prefix == "head" else _metric, "none", "Convergence" + ("" if _prefix.startswith("knn") else f" ({_short})"), f"validation {_title} after the first epoch (history.csv)"))
_register(Measure(MIOU, "seg", MIOU, "none", "Segmentation", "test mIoU of the linear segmentation head"))


def split(spec: str) -> tuple[str, str | None]:
    """'transfer_sr/digits' -> ('transfer_sr', 'digits'); 'sr' -> ('sr', None)."""
    name, _, condition = spec.partition(SEPARATOR)
    return name, (condition or None)


def measure_problem(spec: str) -> str | None:
    """Why `spec` names no measure (one line with the fix), or None."""
    name, condition = split(spec)
    if name not in MEASURES:
        return f"unknown verdict measure {spec!r}; choose one of: {', '.join(MEASURES)}"
    measure = MEASURES.get(name)
    if measure.condition == "required" and condition is None:
        example = "few (a shot group)" if measure.family == "imbalance" else "digits (a target data set)"
        return f"measure {name!r} needs a condition: write {name}/{example}"
    if measure.condition == "none" and condition is not None:
        return f"measure {name!r} takes no condition; write {name}"
    return None


def claim_title(spec: str) -> str:
    """The default name of a row of `spec` (the shipped claims' names for their measures)."""
    name, condition = split(spec)
    measure = MEASURES.get(name)
    if condition is None:
        return measure.title
    if measure.family == "imbalance":
        return measure.title if condition == "overall" else f"{measure.title}: {condition}-shot"
    return f"{measure.title} {condition}" if measure.family == "ood" else f"{measure.title} to {condition}"


# -- which runs record a measure ---------------------------------------------------------------------
SHOT_GROUPS = ("overall", "many", "medium", "few")  # the conditions of an imbalance measure


@dataclass(frozen=True)
class Source:
    """What a run must be set up for to record a family's values: `present(run)`; `conditions(run)` the
    conditions it records (corruptions, transfer targets, shot groups), None for a family without;
    `fix` the setting that turns it on, `what` the name of its conditions."""

    present: Callable[[Any], bool]
    fix: str
    conditions: Callable[[Any], tuple[str, ...]] | None = None
    what: str = ""


def _classifies(run) -> bool:
    return run.task == "classification"


# family -> Source: one row per record section a measure reads (Measure.family)
SOURCES: dict[str, Source] = {
    "clean": Source(_classifies, "task: classification (a segmentation run records mIoU only)"),
    "history": Source(lambda run: _classifies(run) and run.train.epochs >= 1,
                      "a classification task that trains (train.epochs >= 1; history.csv probes each epoch)"),
    "ood": Source(lambda run: _classifies(run) and bool(run.eval.ood.corruptions), "eval.ood.corruptions",
                  lambda run: tuple(run.eval.ood.corruptions), "corruptions"),
    "transfer": Source(lambda run: _classifies(run) and bool(run.eval.transfer), "eval.transfer",
                       lambda run: tuple(run.eval.transfer), "transfer targets"),
    "imbalance": Source(lambda run: _classifies(run) and run.data.imbalance_factor is not None,
                        "data.imbalance_factor", lambda run: SHOT_GROUPS, "shot groups"),
    "seg": Source(lambda run: run.task == "segmentation", "task: segmentation"),
}


def records(spec: str, run) -> bool:
    """Does `run` (a RunConfig) record the measure `spec` (a valid one, see measure_problem)?"""
    name, condition = split(spec)
    source = SOURCES[MEASURES.get(name).family]
    if not source.present(run):
        return False
    return condition is None or source.conditions is None or condition in source.conditions(run)


def unrecorded_problem(spec: str, runs: list) -> str | None:
    """Why none of `runs` records the measure `spec`, naming what they do record; None when one does."""
    if any(records(spec, run) for run in runs):
        return None
    name, condition = split(spec)
    source = SOURCES[MEASURES.get(name).family]
    present = [run for run in runs if source.present(run)]
    if present and source.conditions is not None:
        have = sorted({c for run in present for c in source.conditions(run)})
        return f"no run records {spec!r}: their {source.what} are {', '.join(have)}; write {name}/<one of them>"
    names = [m for m in MEASURES if any(SOURCES[MEASURES.get(m).family].present(run) for run in runs)]
    return (f"no run records {spec!r} ({MEASURES.get(name).doc}): it needs {source.fix}; "
            f"these runs record: {', '.join(names) or 'none of the measures'}")


def verdict_problem(verdict) -> tuple[str, str] | None:
    """(dotted key, message) of the first claim of a `VerdictConfig` whose measure is unknown; None if none."""
    for i, claim in enumerate((verdict.claims or []) if verdict is not None else []):
        problem = measure_problem(claim.measure)
        if problem is not None:
            return f"verdict.claims[{i}].measure", problem
    return None
