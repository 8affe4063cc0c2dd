"""The Python API (`import grporm`): load run records, run an experiment, read the verdict, as pandas
frames. `grporm/__init__.py` exposes these names lazily, so `import grporm` stays light (no torch:
`run` imports the training code only when called)."""
from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Callable, Iterable

import pandas as pd

from grporm.analysis.records import RunSet
from grporm.analysis.records import load_runs as _load_runs
from grporm.errors import GrpormError, os_error

__all__ = ["load_runs", "run", "verdict"]


# -- arguments: what the CLI's parser checks, checked here; each problem one GrpormError naming the argument
def _folder(value, argument: str, default: str) -> Path:
    """A path argument: str or os.PathLike; None is the default."""
    if value is None:
        return Path(default)
    if isinstance(value, (str, os.PathLike)) and not isinstance(value, bytes) and str(value).strip():
        return Path(value)
    raise GrpormError(f"{argument}={value!r}: not a path (a str or pathlib.Path); give a folder, or None for {default!r}")


def _overrides(value) -> list[str]:
    """`overrides`: one "KEY=VALUE" string, an iterable of them, or None (none)."""
    if value is None:
        return []
    if isinstance(value, str):
        return [value]  # one override, not a sequence of one-character overrides
    if isinstance(value, dict):  # its keys alone would pass for overrides; its values' YAML text is ambiguous
        raise GrpormError(f"overrides={value!r}: a dict; give a list of KEY=VALUE strings, e.g. overrides=['train.lr=3e-4']")
    try:
        items = list(value)
    except TypeError:
        raise GrpormError(f"overrides={value!r}: not a list of KEY=VALUE strings; e.g. overrides=['train.lr=3e-4']") from None
    bad = [item for item in items if not isinstance(item, str)]
    if bad:
        raise GrpormError(f"overrides: {bad[0]!r} is a {type(bad[0]).__name__}, not a KEY=VALUE string; "
                          "e.g. overrides=['train.lr=3e-4']")
    return items


def load_runs(*results: str | Path) -> RunSet:
    """The finished runs under one or more results folders (default ``results``): ``.runs`` (one row
    per run), ``.metrics`` (tidy, one row per run and value) and ``.excluded`` (path, reason), as
    `grporm report` reads them."""
    folders = [_folder(r, "results", "results") for r in results if r is not None] or [Path("results")]
    return _load_runs(*folders)


def run(experiment: str | Path, overrides: Iterable[str] | str | None = (), results: str | Path | None = None,
        checkpoints: str | Path | None = None, *, only: str | None = None, force: bool = False,
        max_runs: int | None = None, echo: Callable[..., None] = print) -> RunSet:
    """Run an experiment's matrix like `grporm run EXPERIMENT -o KEY=VALUE ...` in this process (finished
    runs are skipped, interrupted ones resume; settings are checked before anything is written) and
    return the records of its runs (`load_runs` of ``<results>/<experiment name>``). `results` and
    `checkpoints` default as for the command (None): ``results`` for the repository's own experiments,
    ``grporm-results`` for any other file, checkpoints under the results folder. `overrides`: a list of
    "KEY=VALUE" strings, or one such string. Bad input raises a GrpormError with one line naming the
    problem; a failed run raises RunsFailed after the others ran."""
    if experiment is None:
        raise GrpormError("experiment=None: give the experiment YAML file, e.g. experiments/quick.yaml")
    experiment = _folder(experiment, "experiment", "experiments/quick.yaml")
    overrides = _overrides(overrides)
    results = None if results is None else _folder(results, "results", "results")
    checkpoints = None if checkpoints is None else _folder(checkpoints, "checkpoints", "checkpoints")
    if only is not None and not isinstance(only, str):
        raise GrpormError(f"only={only!r}: not a str; give text that run ids contain, or None for every run")
    if max_runs is not None and (isinstance(max_runs, bool) or not isinstance(max_runs, int) or max_runs < 1):
        raise GrpormError(f"max_runs={max_runs!r}: not a positive int; give the most runs a matrix may have, or None")
    if not callable(echo):
        raise GrpormError(f"echo={echo!r}: not callable; give a function such as print")
    try:
        return _run(experiment, overrides, results, checkpoints, only, bool(force), max_runs, echo)
    except OSError as err:  # a full disk, a read-only folder...: one line, as the CLI says it
        raise os_error(err) from None


def _run(experiment: Path, overrides: list[str], results: Path | None, checkpoints: Path | None, only: str | None,
         force: bool, max_runs: int | None, echo: Callable[..., None]) -> RunSet:
    from grporm.plan.experiment import load_experiment
    from grporm.plan.matrix import run_matrix, select_runs
    from grporm.plan.preflight import preflight
    from grporm.plan.run_options import RunOptions
    from grporm.process.interrupts import STOP
    from grporm.records.inputs import check_environment, output_folder

    check_environment()
    options = RunOptions(experiment, tuple(overrides), max_runs, force, only=only, results=results, checkpoints=checkpoints)
    exp = load_experiment(options.experiment, list(options.overrides), options.max_runs)
    runs = select_runs(exp.runs, options.only, None) if exp.runs else []
    results, checkpoints = options.results_folder, options.checkpoints_folder
    if runs:
        preflight(runs, 1, warn=echo)
        output_folder(results, "results")
        output_folder(checkpoints, "checkpoints")
        with STOP.installed():
            run_matrix(runs, results, checkpoints, force=options.force, echo=echo)
    folder = results / exp.name
    return _load_runs(folder) if folder.is_dir() else RunSet(runs=pd.DataFrame())


def verdict(*results: str | Path, echo: Callable[[str], None] | None = None) -> pd.DataFrame:
    """The verdict as a frame (analysis.verdict.verdict_frame): one row per (experiment, claim, backbone,
    treatment) with the paired difference from the control in points, its interval, p values, the
    word and the detectable difference. Several folders follow `grporm compare`'s rule
    (analysis.records.merged): an experiment found in two folders is kept apart as
    `<folder>/<experiment>`, overlapping folders are refused; each run dropped as a duplicate is said
    through ``echo`` (default: a `warning:` line on stderr)."""
    import grporm.analysis.verdict as verdict_module
    from grporm.analysis.records import dropped, merged

    run_set = merged([Path(r) for r in (results or ("results",))])
    for line in dropped(run_set):
        (echo or _warn)(line)
    return verdict_module.verdict_frame(run_set)


def _warn(line: str) -> None:
    print(f"warning: {line}", file=sys.stderr)
