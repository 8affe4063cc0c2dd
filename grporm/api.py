"""The Python API (`import grporm`): load run records, run an experiment, read the verdict, as pandas
frames. `grporm/__init__.py` exposes these names lazily, so `import grporm` stays light (no torch:
`run` imports the training code only when called)."""
from __future__ import annotations

from pathlib import Path
from typing import Callable, Iterable

import pandas as pd

from grporm.analysis.records import RunSet
from grporm.analysis.records import load_runs as _load_runs

__all__ = ["load_runs", "run", "verdict"]


def load_runs(*results: str | Path) -> RunSet:
    """The finished runs under one or more results folders (default ``results``): ``.runs`` (one row
    per run), ``.metrics`` (tidy, one row per run and value) and ``.excluded`` (path, reason), as
    `grporm report` reads them."""
    return _load_runs(*(results or ("results",)))


def run(experiment: str | Path, overrides: Iterable[str] = (), results: str | Path | None = None,
        checkpoints: str | Path | None = None, *, only: str | None = None, force: bool = False,
        max_runs: int | None = None, echo: Callable[..., None] = print) -> RunSet:
    """Run an experiment's matrix like `grporm run EXPERIMENT -o KEY=VALUE ...` in this process (finished
    runs are skipped, interrupted ones resume; settings are checked before anything is written) and
    return the records of its runs (`load_runs` of ``<results>/<experiment name>``). `results` and
    `checkpoints` default as for the command: ``results`` for the repository's own experiments,
    ``grporm-results`` for any other file, checkpoints under the results folder. Bad input raises a
    GrpormError with one line naming the problem; a failed run raises RunsFailed after the others ran."""
    from grporm.experiment import load_experiment
    from grporm.inputs import check_environment, output_folder
    from grporm.interrupts import STOP
    from grporm.matrix import run_matrix, select_runs
    from grporm.preflight import preflight
    from grporm.run_options import RunOptions

    check_environment()
    options = RunOptions(Path(experiment), tuple(overrides), max_runs, force, only=only,
                         results=None if results is None else Path(results),
                         checkpoints=None if checkpoints is None else Path(checkpoints))
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


def verdict(*results: str | Path) -> pd.DataFrame:
    """The verdict as a frame (analysis.verdict.verdict_frame): one row per (experiment, claim, backbone,
    treatment) with the paired difference from the control in points, its interval, p values, the
    word and the detectable difference."""
    import grporm.analysis.verdict as verdict_module

    return verdict_module.verdict_frame(load_runs(*results))
