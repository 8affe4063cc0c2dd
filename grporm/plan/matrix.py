"""What surrounds runs: picking a shard of the matrix, walking the runs with a lock each (`run_matrix`),
the runs of close calls again at the runner-up (`sensitivity_runs`), and deciding the learning rate of
every tuning setting of a matrix (`tune_matrix`); the checks before any run are grporm/plan/preflight.py."""
from __future__ import annotations

import re
import signal
from pathlib import Path
from typing import Callable

from grporm.config import RunConfig
from grporm.errors import ConfigError, GrpormError
from grporm.plan.declaration import trains
from grporm.plan.experiment import PICK_AXIS
from grporm.process.distributed import SINGLE, Dist
from grporm.process.interrupts import STOP, Interrupted
from grporm.process.locks import CLAIMED, DEFAULT_STALE_SECONDS, DONE, RunLock, claim
from grporm.records.schema import RunRecord
from grporm.records.storage import read_record_or_rerun, run_dir
from grporm.tracking.progress import PROCESS, Countdown, tagged
from grporm.training.runner import RunPaths, execute_run
from grporm.tuning.decisions import is_close_call, label, needs_decision, read_decision, record_path, tuning_key
from grporm.tuning.trials import decision_for


class RunsFailed(GrpormError):
    """Some runs failed (their records say why); the others were done."""

    exit_code = 1


def is_finished(run: RunConfig, results: Path) -> bool:
    return _finished(run, run_dir(results, run.experiment, run.run_id) / "record.json")


def _finished(run: RunConfig, path: Path) -> bool:
    record = read_record_or_rerun(path)
    return bool(record) and record.get("status") == "finished" and record.get("config_hash") == run.config_hash()


def parse_shard(text: str) -> tuple[int, int]:
    match = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", text)
    index, count = (int(match[1]), int(match[2])) if match else (-1, 0)
    if not 0 <= index < count:
        raise ConfigError(f"--shard {text!r}: write it as I/N with 0 <= I < N, e.g. --shard 0/4 ... --shard 3/4")
    return index, count


def select_runs(runs: list[RunConfig], only: str | None, shard: str | None) -> list[RunConfig]:
    """The runs of this process: shard I/N takes every N-th run of the matrix from the I-th (so each
    shard gets a mix of methods), then --only filters by id."""
    if only is not None and not only.strip():
        raise ConfigError("--only '': give part of a run id (see --dry-run), or leave --only out to run them all")
    if only is not None and not any(only in r.run_id for r in runs):
        raise ConfigError(f"no run matches --only {only!r}")
    if shard is not None:
        index, count = parse_shard(shard)
        runs = runs[index::count]
    return [r for r in runs if only is None or only in r.run_id]


def run_matrix(runs: list[RunConfig], results: Path, checkpoints: Path, *, force: bool = False,
               stale_seconds: float = DEFAULT_STALE_SECONDS, dist: Dist = SINGLE,
               echo: Callable[..., None] = print, shard: str | None = None) -> None:
    """Each run not finished and not locked by another process, in order; raises RunsFailed at the end
    if any failed, Interrupted at once on SIGINT/SIGTERM. `shard` (`--shard I/N`) tags every line."""
    countdown = Countdown(len(runs))  # times only the runs done in this process
    PROCESS.begin_matrix(countdown, shard)
    try:
        _run_each(runs, results, checkpoints, force, stale_seconds, dist, tagged(echo), countdown)
    finally:
        PROCESS.end_matrix()


def _run_each(runs: list[RunConfig], results: Path, checkpoints: Path, force: bool, stale_seconds: float, dist: Dist,
              echo: Callable[..., None], countdown: Countdown) -> None:
    say = echo if dist.is_main else (lambda *a, **k: None)
    failed: list[tuple[RunConfig, GrpormError, RunPaths]] = []
    for i, r in enumerate(runs, 1):
        tag = f"[{i}/{len(runs)}] {r.run_id}"
        paths = RunPaths.of(r, results, checkpoints)
        lock = RunLock(paths.lock, stale_seconds)
        verdict = dist.from_main(lambda: _claim(r, paths.record, lock, force))  # noqa: B023 - called at once
        if verdict != "run":
            say(f"{tag}: {verdict}")
            continue
        say(countdown.start(i, r.run_id))
        PROCESS.unit = i
        try:
            record = execute_run(r, paths, force=force, dist=dist)
        except GrpormError as err:
            if err.exit_code == 2:
                raise
            say(f"{tag} failed: {err}")
            failed.append((r, err, paths))
            continue
        finally:
            countdown.done()
            if dist.is_main:
                lock.release()
        if dist.is_main:
            say(f"{tag}: {_headline(record)}")
        if dist.agree(STOP.requested):  # the signal came during evaluation: the run is done, stop before the next
            raise Interrupted(STOP.signum or signal.SIGTERM, f"{signal.Signals(STOP.signum or signal.SIGTERM).name} "
                              f"after run {r.run_id} finished")
    if failed:
        raise RunsFailed(_failure_summary(failed))


def _claim(r: RunConfig, record: Path, lock: RunLock, force: bool) -> str:
    """'run' with the lock held, else why this run is skipped."""
    verdict = claim(lock, lambda: not force and _finished(r, record))
    if verdict == CLAIMED:
        return "run"
    return "finished already, skipped (--force reruns it)" if verdict == DONE else f"skipped, {verdict}"


def _headline(record: RunRecord) -> str:
    return f"{record.metrics.headline()}  ({record.timing.total_seconds:.0f} s)"


def sensitivity_runs(runs: list[RunConfig], results: Path) -> list[RunConfig]:
    """The runs (loaded with tune.pick runner_up) whose own decision is a close call
    (grporm.tuning.decisions.is_close_call); every decision must be made first."""
    keys = {tuning_key(r) for r in runs if needs_decision(r)}
    decisions = {k: read_decision(record_path(results, k)) for k in sorted(keys)}
    missing = [k for k, d in decisions.items() if d is None]
    if missing:
        raise ConfigError(f"--sensitivity: {len(missing)} of {len(keys)} setting(s) have no decision under "
                          f"{Path(results) / 'tuning'} yet (e.g. key {missing[0]}); make them first: "
                          "`grporm tune EXPERIMENT` (or `make tune`)")
    return [r for r in runs if is_close_call(r, decisions) and _compared(r, runs)]


def _cell(run: RunConfig) -> str:
    return repr(sorted((k, repr(v)) for k, v in run.axes.items() if k not in ("arm", "method", "seed", PICK_AXIS)))


def _compared(run: RunConfig, runs: list[RunConfig]) -> bool:
    """Whether another arm trains in the run's cell (its axes but the arm, method, seed and pick): a rerun at
    the runner-up of an arm alone in its cell (a control that `matrix.exclude` left by itself) feeds no
    verdict line, so it is not made."""
    who = lambda r: r.axes.get("arm", r.method)  # noqa: E731
    return any(trains(r.method) and who(r) != who(run) and _cell(r) == _cell(run) for r in runs)


def settings_to_tune(runs: list[RunConfig]) -> list[RunConfig]:
    """The first run of each tuning key among `runs`, in matrix order (pretrained rows and runs
    without tune.grid need no decision)."""
    first: dict[str, RunConfig] = {}
    for r in runs:
        if needs_decision(r):
            first.setdefault(tuning_key(r), r)
    return list(first.values())


def tune_matrix(settings: list[RunConfig], results: Path, *, force: bool = False, dist: Dist = SINGLE,
                echo: Callable[..., None] = print) -> None:
    """The decision of every setting not decided yet; one locked by another process is left to it."""
    say = echo if dist.is_main else (lambda *a, **k: None)
    for i, r in enumerate(settings, 1):
        tag = f"[{i}/{len(settings)}] {tuning_key(r)} {label(r)}"
        say(tag)
        _, how = decision_for(r, results, dist, force=force, wait=False, echo=echo)
        say(f"{tag}: {'decided already, kept (--force redoes it)' if how == 'found' else how}")


def _failure_summary(failed: list[tuple[RunConfig, GrpormError, RunPaths]]) -> str:
    if len(failed) == 1:
        r, err, paths = failed[0]
        return f"run {r.run_id} failed: {err} (record: {paths.record})"
    return f"{len(failed)} runs failed: {', '.join(r.run_id for r, _, _ in failed)}; their records say why"
