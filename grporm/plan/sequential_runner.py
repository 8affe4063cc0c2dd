"""`grporm run EXPERIMENT --until-decided`: seeds added in batches until every primary claim is decided.

The experiment's matrix is the first look (its seeds, n0 per cell). After each look the verdict
(grporm.analysis.verdict, at the look's level: grporm.analysis.sequential) names the treatments whose
cells are still undecided; each of them, and the control while any treatment of it needs seeds, gets
the next `verdict.batch` seeds, up to `verdict.max_seeds` per cell. An arm whose cells are decided
stops; A/A and reference arms and the pretrained row keep the design's seeds. New seeds are the next
integers after the experiment's largest seed that are not tuning seeds (tune.seeds), the same for
every arm, so the arms of a seed still share its data draw.

The state follows from the records alone (`replay`): look 0 needs the design's runs; once they are
all finished the verdict on exactly them says what look 1 adds, and so on, so every process computes
the same next batch, a stopped search resumes where it was, and no finished run is redone. Each batch
is a matrix like any other: `--shard I/N` runs every N-th run of it, then waits until the whole batch
is finished (a barrier on the records: a run nobody holds, e.g. of a shard that died, is taken over
under its lock, grporm/process/locks.py) before looking; `--launcher` submits each batch as an array of
shards (`--batch-only` tasks) and waits for it. `<results>/<experiment>/looks.json` logs every look:
its seeds per arm and row, the decided cells, the claim words and the CPU-minutes so far.
"""
from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable

from grporm.config import RunConfig
from grporm.errors import ConfigError, GrpormError
from grporm.plan.experiment import ARM_AXIS, build_experiment, free_seeds, load_experiment, load_with_base, parse_override
from grporm.plan.matrix import RunsFailed, is_finished, select_runs
from grporm.process.locks import is_held
from grporm.records.storage import read_record_or_rerun, run_dir, write_json
from grporm.training.methods import METHODS

LOOKS_FILE = "looks.json"
POLL_SECONDS = 10.0  # how often a shard at the barrier reads the records again
SEED_KEYS = ("seed", "matrix.seed")  # overrides that set the design's seeds (the extension sets its own)
INCONCLUSIVE = "inconclusive"


class Undecidable(ConfigError):
    """--until-decided cannot run this experiment as declared (one line naming the fix)."""


# -- the design ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Design:
    """The seeds a search may use: the design's (the first look, n0 per cell), then the next free
    integers, `batch` at a time, up to `max_seeds`; and whom the verdict compares."""

    experiment: str
    seeds: tuple[int, ...]  # in the order they are added; the first n0 are the design's
    n0: int
    batch: int
    max_seeds: int
    control: str
    primary: frozenset[str] | None  # the primary claims' names; None: every claim (no claims declared)

    @property
    def counts(self) -> tuple[int, ...]:
        """Seeds per cell at each look: n0, n0 + batch, ..., max_seeds."""
        return tuple(range(self.n0, self.max_seeds, self.batch)) + (self.max_seeds,) if self.max_seeds > self.n0 else (self.n0,)


def seed_sequence(design_seeds: Iterable[int], tuning_seeds: Iterable[int], total: int) -> tuple[int, ...]:
    """The design's seeds (sorted), then the integers after the largest that are not tuning seeds, `total` in all."""
    first = sorted(set(design_seeds))
    return tuple(first + free_seeds(set(tuning_seeds), max(0, total - len(first)), max(first)))


def unit(run: RunConfig) -> str:
    """What the verdict calls a run's side before nested axes: its arm, or its method without an arm axis."""
    return str(run.axes[ARM_AXIS]) if ARM_AXIS in run.axes else run.method


def _axis_text(value) -> str:
    return json.dumps(value, sort_keys=True) if isinstance(value, (dict, list)) else str(value)


def matches(run: RunConfig, treatment: str) -> bool:
    """Is `run` one of the verdict's `treatment` ('arm' or 'arm, axis=value, ...' for an axis only the
    treatments have; grporm.analysis.verdict)?"""
    name, *conditions = treatment.split(", ")
    if unit(run) != name:
        return False
    for condition in conditions:
        key, _, value = condition.partition("=")
        if key not in run.axes or _axis_text(run.axes[key]) != value:
            return False
    return True


def design_of(runs: list[RunConfig], where: str) -> Design:
    """The search's design from the experiment's runs; Undecidable when it cannot have one."""
    declared = next((r.verdict for r in runs if r.verdict is not None), None)
    cap = declared.max_seeds if declared is not None else None
    if cap is None:
        raise Undecidable(f"{where}: --until-decided needs a cap of seeds per cell: set verdict.max_seeds in the "
                          "experiment file (e.g. max_seeds: 12, with batch: 2), or run without --until-decided (a fixed design)")
    per_unit: dict[str, set[int]] = {}
    for r in runs:
        per_unit.setdefault(unit(r), set()).add(r.seed)
    n0 = min(len(s) for s in per_unit.values())
    if cap <= n0:
        raise Undecidable(f"{where}: verdict.max_seeds {cap} leaves no seed to add to the matrix's {n0} per cell; "
                          f"raise it above {n0} (or run without --until-decided)")
    tuning = {s for r in runs for s in r.tune.seeds}
    primary = frozenset(c.name for c in declared.claims if c.primary) if declared.claims else None
    return Design(runs[0].experiment, seed_sequence({r.seed for r in runs}, tuning, cap), n0, declared.batch, cap,
                  declared.control, primary)


def extended_runs(path: Path, overrides: list[str], design: Design, max_runs: int | None) -> list[RunConfig]:
    """Every run the search may need: the experiment's matrix with its seed axis set to all of
    `design.seeds` (the design's own runs keep their ids and config hashes)."""
    raw = load_with_base(Path(path))
    raw.setdefault("matrix", {})
    if not isinstance(raw["matrix"], dict):
        raise ConfigError(f"{path}: matrix: must map dotted keys to lists of values")
    raw["matrix"]["seed"] = list(design.seeds)
    kept = [o for o in overrides if parse_override(o)[0] not in SEED_KEYS]
    return build_experiment(raw, str(path), kept, max_runs).runs


# -- one look -----------------------------------------------------------------------------------------
def primary_rows(frame, design: Design):
    """The verdict frame's rows of the primary claims (the headline's family): only they keep a search going."""
    if frame.empty:
        return frame
    if "primary" in frame.columns:
        return frame[frame["primary"].astype(bool)]
    return frame if design.primary is None else frame[frame["claim"].isin(design.primary)]


def undecided(frame) -> set[str]:
    """The treatments whose cells still need seeds: the verdict's `undecided_treatments` where it has one;
    else (a verdict without it) every treatment cell of an inconclusive claim (not marked `decided`)."""
    if frame.empty:
        return set()
    try:
        from grporm.analysis.verdict import undecided_treatments
    except ImportError:
        open_cells = (frame["role"] == "treatment") & (frame["claim_word"] == INCONCLUSIVE)
        if "decided" in frame.columns:
            open_cells &= ~frame["decided"].astype(bool)
        return set(frame.loc[open_cells, "treatment"])
    return {treatment for _, treatment in undecided_treatments(frame)}


def next_batch(extended: list[RunConfig], required: set[str], needing: set[str], design: Design, look: int) -> list[RunConfig]:
    """The runs look `look` adds: each treatment in `needing`, and the control when any treatment needs
    seeds, up to the look's count of seeds (an arm that stopped earlier catches up), minus what is there."""
    if not needing or look >= len(design.counts):
        return []
    seeds = set(design.seeds[:design.counts[look]])
    return [r for r in extended if r.seed in seeds and r.run_id not in required
            and (unit(r) == design.control or any(matches(r, t) for t in needing))]


@dataclass
class Look:
    """What one look saw (a line of looks.json)."""

    look: int
    seeds: dict[str, dict[str, int]]  # row -> arm -> seeds
    claims: dict[str, str]  # claim -> word (primary claims)
    decided_cells: list[str]
    undecided: list[str]
    cpu_minutes: float
    level: float | None = None  # the α this look spends (grporm.analysis.sequential), before the split over treatments

    def to_json(self) -> dict:
        return {"look": self.look, "seeds_per_row": self.seeds, "claims": self.claims, "decided_cells": self.decided_cells,
                "undecided": self.undecided, "cpu_minutes": round(self.cpu_minutes, 2), "level": self.level}


def look_alpha(design: Design, look: int, alpha: float = 0.05) -> float | None:
    """The level look `look` spends under the verdict's sequential procedure; None with a verdict without one."""
    try:
        from grporm.analysis.sequential import look_level
    except ImportError:
        return None
    return float(look_level(design.counts[look], design.n0, design.batch, design.max_seeds, alpha))


@dataclass
class State:
    """Where a search stands, from the records: the looks made; the current look's runs (`batch`, the
    same list in every process: shards split it) and those of them still to finish (`pending`, empty
    when `stopped` says why the search ended)."""

    design: Design
    looks: list[Look] = field(default_factory=list)
    look: int = 0
    batch: list[RunConfig] = field(default_factory=list)
    pending: list[RunConfig] = field(default_factory=list)
    required: list[RunConfig] = field(default_factory=list)
    stopped: str = ""  # "decided" | "cap" | "no verdict" ('' while running)


def cpu_minutes(record: dict | None) -> float:
    """A finished run's cost: its wall time (training and evaluation) times the threads it used."""
    if not record:
        return 0.0
    seconds = (record.get("timing") or {}).get("total_seconds") or 0.0
    threads = (record.get("env") or {}).get("torch_threads") or 1
    return float(seconds) * float(threads) / 60.0


def _row(line) -> str:
    return "/".join(str(x) for x in (line["dataset"], line["backbone"], line["axes"]) if str(x))


def look_of(frame, runs: list[RunConfig], look: int, needing: set[str], minutes: float) -> Look:
    seeds: dict[str, dict[str, int]] = {}
    for r in runs:
        row = "/".join([r.data.display_name(), r.model.name, *(f"{k}={_axis_text(v)}" for k, v in r.axes.items()
                                                               if k not in (ARM_AXIS, "seed", "model.name", "data.name", "method"))])
        arm = seeds.setdefault(row, {})
        arm[unit(r)] = arm.get(unit(r), 0) + 1
    claims, decided_cells = {}, []
    if not frame.empty:
        claims = {str(c): str(w) for c, w in zip(frame["claim"], frame["claim_word"])}
        decided = frame["decided"].astype(bool) if "decided" in frame.columns else frame["claim_word"] != INCONCLUSIVE
        decided_cells = [f"{line['claim']} / {_row(line)} / {line['treatment']}"
                         for (_, line), yes in zip(frame.iterrows(), decided) if yes and line["role"] == "treatment"]
    return Look(look, seeds, claims, decided_cells, sorted(needing), minutes)


def replay(design: Design, first: list[RunConfig], extended: list[RunConfig], finished: Callable[[RunConfig], bool],
           frame_of: Callable[[list[RunConfig]], object], record_of: Callable[[RunConfig], dict | None]) -> State:
    """The search's state from the records: look after look, the verdict on exactly the runs required
    so far says what the next look adds, until a look is unfinished (its runs are `pending`), every
    primary claim is decided, or the cap is reached."""
    state = State(design, batch=list(first), required=list(first))
    ids = {r.run_id for r in first}
    for look in range(len(design.counts)):
        state.look = look
        state.pending = [r for r in state.batch if not finished(r)]
        if state.pending:
            return state
        whole = frame_of(state.required)
        frame = primary_rows(whole, design)
        needing = undecided(frame)
        minutes = sum(cpu_minutes(record_of(r)) for r in state.required)
        state.looks.append(look_of(frame, state.required, look, needing, minutes))
        state.looks[-1].level = look_alpha(design, look)
        if whole.empty:
            state.stopped = "no verdict"
            return state
        if not needing:  # at the cap the verdict names no cell: decided only if every claim is
            state.stopped = "decided" if all(w != INCONCLUSIVE for w in state.looks[-1].claims.values()) else "cap"
            return state
        state.batch = next_batch(extended, ids, needing, design, look + 1)
        if not state.batch:
            break
        state.required += state.batch
        ids |= {r.run_id for r in state.batch}
    state.pending = []
    state.stopped = "cap"
    return state


# -- reading the records ----------------------------------------------------------------------------
class Records:
    """The experiment's records under `results`, read once per look: finished runs, the verdict on a
    set of runs (grporm.analysis.verdict), each run's record."""

    def __init__(self, results: Path, design: Design):
        self.results, self.design = Path(results), design
        self._found = None  # the experiment's RunSet, read once per `state`

    def finished(self, run: RunConfig) -> bool:
        return is_finished(run, self.results)

    def record(self, run: RunConfig) -> dict | None:
        return read_record_or_rerun(run_dir(self.results, run.experiment, run.run_id) / "record.json")

    def frame(self, runs: list[RunConfig]):
        import pandas as pd

        from grporm.analysis.records import RunSet, load_runs
        from grporm.analysis.verdict import verdict_frame

        folder = self.results / self.design.experiment
        if self._found is None:
            self._found = load_runs(folder) if folder.is_dir() else RunSet(runs=pd.DataFrame())
        found = self._found
        if found.runs.empty:
            return pd.DataFrame()
        ids = {r.run_id for r in runs}
        kept = found.runs[found.runs["run_id"].isin(ids) & (found.runs["experiment"] == self.design.experiment)]
        paths = set(kept["path"])
        subset = RunSet(runs=kept.reset_index(drop=True), excluded=found.excluded,
                        metrics=found.metrics[found.metrics["path"].isin(paths)].reset_index(drop=True),
                        records={p: r for p, r in found.records.items() if p in paths}, roots=found.roots,
                        knn_ks=found.knn_ks)
        try:  # the look's levels need n0 (grporm.analysis.sequential); an older verdict has one look only
            return verdict_frame(subset, first_seeds={self.design.experiment: self.design.n0})
        except TypeError:
            return verdict_frame(subset)

    def state(self, first: list[RunConfig], extended: list[RunConfig]) -> State:
        self._found = None
        return replay(self.design, first, extended, self.finished, self.frame, self.record)


def looks_document(state: State) -> dict:
    """The design and every look made, as looks.json holds them (and the report reads them)."""
    d = state.design
    return {"experiment": d.experiment, "design": {"n0": d.n0, "batch": d.batch, "max_seeds": d.max_seeds,
                                                   "seeds": list(d.seeds), "control": d.control,
                                                   "counts": list(d.counts)},
            "looks": [look.to_json() for look in state.looks],
            "current_look": state.look, "pending_runs": [r.run_id for r in state.pending],
            "stopped": state.stopped or None}


def write_looks(results: Path, state: State) -> Path:
    """<results>/<experiment>/looks.json: the design and every look made (rewritten whole, atomically)."""
    path = Path(results) / state.design.experiment / LOOKS_FILE
    write_json(path, looks_document(state))
    return path


def summary(state: State) -> list[str]:
    """The end of a search: looks, seeds per row and arm, claims, CPU-minutes per decided claim (the
    lines the report shows too: grporm.analysis.sequential.looks_lines)."""
    from grporm.analysis.sequential import looks_lines

    return looks_lines(looks_document(state))


# -- running ----------------------------------------------------------------------------------------
def _barrier(batch: list[RunConfig], results: Path, checkpoints: Path, run: Callable[[list[RunConfig]], None],
             echo: Callable[[str], None], look: int, stale_seconds: float, poll_seconds: float) -> None:
    """Return once every run of `batch` is finished. Runs another process holds are waited for; a run
    nobody holds (its shard died, or it failed) is run here, under its lock."""
    from grporm.training.runner import RunPaths

    said = False
    while True:
        left = [r for r in batch if not is_finished(r, results)]
        if not left:
            return
        free = [r for r in left if not is_held(RunPaths.of(r, results, checkpoints).lock, stale_seconds)]
        if free:
            run(free)
            continue
        if not said:
            echo(f"look {look}: waiting for {len(left)} run(s) of this batch that other processes are running")
            said = True
        time.sleep(poll_seconds)


def refuse_options(given: dict) -> None:
    """Options whose meaning --until-decided cannot keep: one line naming the fix."""
    fixes = {"force": "to rerun a run, delete its folder", "sensitivity": "run --sensitivity after the search",
             "only": "the search chooses its runs; drop --only",
             "nproc": "it runs one process per run; drop --nproc (and start it without torchrun)",
             "shard": "with --launcher the launcher makes the shards; use --slurm tasks=N"}
    for name, value in given.items():
        if value:
            raise ConfigError(f"--until-decided and --{name} do not go together: {fixes[name]}")


def run_until_decided(path: Path, overrides: list[str], *, results: Path, checkpoints: Path, max_runs: int | None = None,
                      shard: str | None = None, launcher: str | None = None, slurm: list[str] = (), dry_run: bool = False,
                      batch_only: bool = False, stale_seconds: float = 600.0, task_argv: list[str] = (),
                      echo: Callable[[str], None] = print, warn: Callable[[str], None] | None = None,
                      refused: dict | None = None, poll_seconds: float = POLL_SECONDS) -> State:
    """The search (module docstring); returns its last state. `task_argv`: the `grporm run ...` line of
    a launcher's task, without --shard; `refused`: {option: given?} of `grporm run` options the search
    cannot keep."""
    from grporm.plan.matrix import run_matrix
    from grporm.plan.preflight import preflight

    refuse_options({**(refused or {}), "shard": bool(shard and (launcher or slurm)),
                    "nproc": bool((refused or {}).get("nproc")) or int(os.environ.get("WORLD_SIZE", "1") or 1) > 1})

    first = load_experiment(path, overrides, max_runs).runs
    trained = [r for r in first if METHODS.get(r.method).trains] if first else []
    design = design_of(trained or first, str(path))
    extended = extended_runs(path, overrides, design, max_runs)
    known = {r.run_id for r in extended}
    if not {r.run_id for r in first} <= known:
        raise GrpormError(f"{path}: its runs do not extend by seed (a run of the matrix is missing when seeds are added)")
    records = Records(results, design)
    if not batch_only:
        preflight(first, warn=warn)  # what a run would refuse, refused before anything is written
        preflight(extended, warn=None)
    while True:
        state = records.state(first, extended)
        if dry_run:
            _print_plan(state, results, echo)
            return state
        if not batch_only and (shard is None or shard.strip().startswith("0/")):
            write_looks(results, state)
        if state.stopped:
            if not batch_only:
                for line in summary(state):
                    echo(line)
            return state
        batch = state.batch
        if launcher is not None or slurm:
            _launch(launcher, slurm, state, task_argv, results, echo)
            continue
        mine = select_runs(batch, None, shard) if shard else batch
        echo(f"{design.experiment}: look {state.look} ({design.counts[state.look]} seeds per cell): {len(state.pending)} "
             f"of {len(batch)} run(s) to finish" + (f", shard {shard} has {len(mine)}" if shard else ""))
        if mine:
            run_matrix(mine, results, checkpoints, stale_seconds=stale_seconds, echo=echo)
        if batch_only:
            return state
        _barrier(batch, results, checkpoints, lambda runs: run_matrix(runs, results, checkpoints,
                                                                       stale_seconds=stale_seconds, echo=echo),
                 echo, state.look, stale_seconds, poll_seconds)


def _print_plan(state: State, results: Path, echo: Callable[[str], None]) -> None:
    d = state.design
    echo(f"{d.experiment}: until decided, seeds {', '.join(map(str, d.seeds))} ({d.n0} first, then {d.batch} per look "
         f"up to {d.max_seeds}); {len(state.looks)} look(s) made")
    for line in summary(state)[1:]:
        echo(line)
    if state.stopped:
        return
    echo(f"look {state.look}: {len(state.pending)} run(s) to finish")
    for r in state.pending:
        echo(f"  {r.run_id}  config {r.config_hash()}")


def _launch(launcher: str | None, slurm: list[str], state: State, task_argv: list[str], results: Path,
            echo: Callable[[str], None]) -> None:
    """One look's runs as an array of `--batch-only` shard tasks (grporm/process/launch.py), waited for."""
    from grporm.config import Experiment
    from grporm.plan.requirements import preflight as check_files
    from grporm.process import launch

    if launcher is None:
        raise ConfigError("--slurm needs --launcher slurm (or local)")
    if launcher not in launch.LAUNCHERS:
        raise ConfigError(f"--launcher {launcher!r}: choose one of {', '.join(launch.LAUNCHERS)}")
    options = launch.parse_options(list(slurm))
    check_files(Experiment(name=state.design.experiment, runs=state.pending))
    echo(f"{state.design.experiment}: look {state.look}: {len(state.pending)} run(s) through {launcher}")
    own_threads = any(r.train.threads is not None for r in state.batch)
    # the tasks shard the look's whole batch (the same list in every process); shards without a run left are not submitted
    jobs = launch.submit(launcher, state.design.experiment, [r.run_id for r in state.batch],
                         [r.run_id for r in state.pending], [*task_argv, "--batch-only"], options, 1, echo, results,
                         threads=not own_threads)
    failed = launch.wait(jobs, echo)
    if failed:
        raise RunsFailed(f"{failed} of {len(jobs)} task(s) of look {state.look} failed; their logs say why; "
                         "rerun the same command to resume")


def task_arguments(path: Path, overrides: list[str], results: Path, checkpoints: Path, stale_lock_minutes: float,
                   max_runs: int | None) -> list[str]:
    """The `grporm run` line a launcher task repeats (its shard and --batch-only are added)."""
    return ["run", str(path), *(x for o in overrides for x in ("-o", o)), "--stale-lock", str(stale_lock_minutes),
            "--results", str(results), "--checkpoints", str(checkpoints), "--until-decided",
            *(["--max-runs", str(max_runs)] if max_runs is not None else [])]
