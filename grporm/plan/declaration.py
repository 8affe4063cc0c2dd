"""An experiment's `verdict:` declaration against the experiment itself: which arm is the control when
none is named (the one rule, used when an experiment is loaded and when a report reads the records),
and the check that every name the declaration uses exists (control, A/A arms, the claims' measures).

Checked when an experiment is loaded (so in `--dry-run`, before anything trains): a declaration that
cannot be judged is one ConfigError line naming the names that exist, not hours of runs ending in
"no verdict".
"""
from __future__ import annotations

from grporm.plan.measures import measure_problem, unrecorded_problem
from grporm.training.methods import METHODS

ARM, METHOD = "arm", "method"
CONTROL_NAME = CONTROL_METHOD = "ce"


def trains(method: str) -> bool:
    """Pretrained rows train nothing: neither control nor treatment. A method no longer registered
    (an old record) is taken to train."""
    return method not in METHODS or METHODS.get(method).trains


def default_control(candidates: dict[str, set[str]]) -> str | None:
    """The control of an experiment whose declaration names none. `candidates`: each arm (or, without
    an arm axis, each method) that trains -> the methods its runs train with. The arm named `ce`, else
    the one arm whose runs are all CE; None when there is no such arm or several."""
    if CONTROL_NAME in candidates:
        return CONTROL_NAME
    ce = [name for name, methods in candidates.items() if methods == {CONTROL_METHOD}]
    return ce[0] if len(ce) == 1 else None


def ambiguous(candidates: dict[str, set[str]], axis: str = ARM) -> str | None:
    """Why no default control can be chosen (with the line to add), or None: chosen, or nothing to
    compare (fewer than two arms train)."""
    if len(candidates) < 2 or default_control(candidates) is not None:
        return None
    ce = sorted(name for name, methods in candidates.items() if methods == {CONTROL_METHOD})
    found = f"{len(ce)} train with method ce ({', '.join(ce)})" if ce else "none trains with method ce"
    return (f"no default control: no {axis} is named ce and {found}; name it: add `control: NAME` under "
            f"`verdict:` (e.g. `verdict: {{control: {(ce or sorted(candidates))[0]}}}`), NAME one of: "
            f"{', '.join(sorted(candidates))}")


def candidates_of(runs) -> tuple[dict[str, set[str]], str]:
    """({arm or method: its methods}, axis) of an experiment's RunConfigs, trained runs only."""
    axis = ARM if any(ARM in run.axes for run in runs) else METHOD
    out: dict[str, set[str]] = {}
    for run in runs:
        if trains(run.method):
            name = str(run.axes.get(ARM, run.method)) if axis == ARM else run.method
            out.setdefault(name, set()).add(run.method)
    return out, axis


def declaration_problem(runs) -> tuple[str, str] | None:
    """(dotted key, message) of the first thing the experiment's declaration (the runs share it)
    names that the experiment does not have, or of a control that cannot be chosen; None if none."""
    if not runs:
        return None
    verdict = runs[0].verdict
    if verdict is not None and not verdict.compare:  # nothing is compared: no control to find
        return None
    names, axis = candidates_of(runs)
    control = verdict.control if verdict is not None else None
    if control is None:
        problem = ambiguous(names, axis)
        if problem is not None:
            return "verdict.control", problem
    elif control not in names:
        return "verdict.control", (f"no {axis} named {control!r} trains in this experiment; "
                                   f"choose one of: {', '.join(sorted(names)) or 'none'}")
    if verdict is None:
        return None
    for i, name in enumerate(verdict.aa):
        if name not in names:
            return f"verdict.aa[{i}]", f"no {axis} named {name!r} trains in this experiment; choose one of: {', '.join(sorted(names))}"
    trained = [run for run in runs if trains(run.method)]
    for i, claim in enumerate(verdict.claims or []):
        problem = measure_problem(claim.measure) or unrecorded_problem(claim.measure, trained)
        if problem is not None:
            return f"verdict.claims[{i}].measure", problem
    return None
