"""The `grporm` command line: run experiments, report results, list what is registered."""
from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Optional

import typer
import yaml
from typer._click import exceptions as click_errors  # typer vendors click; its own classes
from typer.core import TyperArgument, TyperGroup

from grporm.errors import GrpormError
from grporm.plan.run_options import DEFAULT_STALE_LOCK_MINUTES


class PlainArgument(TyperArgument):
    """An argument shown in the usage line as its metavar, as other command lines do (`EXPERIMENT`,
    `[WHAT]`, `RESULTS...`), not typer's `{experiment}`."""

    def _usage_display_name(self) -> str:
        name = self.display_name_raw
        name = name if self.required else f"[{name}]"
        return name + ("..." if self.nargs != 1 and not name.endswith("...") else "")

    def display_type_rich(self, ctx) -> None:  # the name says it already; no `<path>` beside it
        return None


def _placeholder(param) -> str:
    """A metavar in the usual style for an option typer would show as a Python type (`<path>`,
    `<list[str]>`, `<int range>`): PATH, N, NUMBER, TEXT; a flag shows none."""
    if getattr(param, "is_flag", False) or getattr(param, "count", False):
        return ""
    label = param.display_type(None)
    for kind, shown in (("path", "PATH"), ("int", "N"), ("float", "NUMBER")):
        if kind in label:
            return shown
    return "TEXT"


def readable(command) -> None:
    """Every parameter of `command` and its subcommands gets a CLI-style placeholder (see _placeholder;
    an argument: its name in capitals) unless it names its own."""
    for param in command.params:
        if isinstance(param, TyperArgument):
            param.metavar = param.metavar or param.name.upper()
            param.__class__ = PlainArgument
        elif param.metavar is None:
            param.metavar = _placeholder(param)
    for sub in getattr(command, "commands", {}).values():
        readable(sub)
        sub.context_settings.setdefault("help_option_names", HELP_OPTIONS)
        sub.get_help_option = _flag_help(sub.get_help_option)


def _flag_help(get_help_option):
    """The command's --help option, shown as the flag it is (no `<bool>`)."""
    def quiet(ctx):
        option = get_help_option(ctx)
        if option is not None:
            option.metavar = ""
        return option

    return quiet


HELP_OPTIONS = ["-h", "--help"]


class ClosedStdoutTolerant:
    """sys.stdout, except that a reader gone (`grporm ... | head -1`) is not an error: from the first
    broken pipe on, output goes to /dev/null and the command goes on (a matrix still runs to its end,
    as with `> /dev/null`), with no traceback and no "error: ... Broken pipe"."""

    def __init__(self, stream):
        self._stream = stream

    def _closed(self) -> None:
        try:  # the interpreter flushes stdout at exit: that flush must find somewhere to write
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, self._stream.fileno())
            os.close(devnull)
        except (OSError, ValueError, AttributeError):
            pass
        self._stream = os.fdopen(os.open(os.devnull, os.O_WRONLY), "w", encoding="utf-8")  # lives as long as the process

    def write(self, text):
        try:
            return self._stream.write(text)
        except BrokenPipeError:
            self._closed()
            return len(text)

    def flush(self) -> None:
        try:
            self._stream.flush()
        except BrokenPipeError:
            self._closed()

    def __getattr__(self, name):
        return getattr(self._stream, name)


class OneLineErrors(TyperGroup):
    """A command-line usage error (unknown option, `--nproc abc`, a missing argument) is one line on
    stderr and exit code 2, like every other bad input, instead of click's usage box. Placeholders
    read like other command lines' (readable), and -h is --help. Also the root of every command's
    output: warnings are one line each (grporm.tracking.notices), a closed stdout is not an error."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        readable(self)

    def get_help_option(self, ctx):
        return _flag_help(super().get_help_option)(ctx)

    def main(self, args=None, prog_name=None, complete_var=None, standalone_mode=True, **extra):
        from grporm.tracking import notices
        undo_warnings, stdout = notices.install(), sys.stdout
        sys.stdout = ClosedStdoutTolerant(stdout)
        try:
            code = self._main(args, prog_name, complete_var, **extra)
        finally:
            sys.stdout = stdout
            undo_warnings()
        if not standalone_mode:
            return code
        sys.exit(code if isinstance(code, int) else 0)

    def _main(self, args, prog_name, complete_var, **extra):
        try:
            code = super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        except click_errors.NoArgsIsHelpError as err:  # `grporm` alone: the help, as before
            typer.echo(err.format_message(), err=True)
            code = err.exit_code
        except click_errors.ClickException as err:
            command = f" ({err.ctx.command_path})" if getattr(err, "ctx", None) is not None else ""
            typer.echo(f"error: {err.format_message()}{command}; see --help", err=True)
            code = err.exit_code
        except typer.Abort:
            typer.echo("aborted", err=True)
            code = 1
        except OSError as err:  # any command: a name too long, a full disk, a read-only folder...
            code = _os_failure(err)
        return code


app = typer.Typer(cls=OneLineErrors, add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  context_settings={"help_option_names": HELP_OPTIONS},
                  help="GRPO-RM vs cross-entropy fine-tuning of representation models.")


def _version(value: bool) -> None:
    if value:
        from grporm import __version__
        typer.echo(f"grporm {__version__}")
        raise typer.Exit()


@app.callback()
def _root(version: bool = typer.Option(False, "--version", "-V", is_eager=True, callback=_version,
                                       help="print the version and exit")) -> None:
    """GRPO-RM vs cross-entropy fine-tuning of representation models."""


def override_option(text: str = "KEY=VALUE, as for `grporm run` (repeatable)") -> list[str]:
    return typer.Option([], "--override", "-o", metavar="KEY=VALUE", help=text)


def results_option(text: str, default: Path | None = Path("results")) -> Path | None:
    return typer.Option(default, "--results", metavar="DIR", help=text, show_default=default is not None)


def max_runs_option() -> int | None:
    # The limit itself is grporm.plan.experiment.MAX_RUNS (not imported here: the CLI imports lazily).
    return typer.Option(None, "--max-runs", metavar="N", min=1, envvar="GRPORM_MAX_RUNS", show_envvar=False,
                        help="refuse a matrix of more than N runs before building it (default 10,000; "
                             "also the environment variable GRPORM_MAX_RUNS)")


def _checked_environment(check) -> None:
    try:
        check()
    except GrpormError as err:
        _fail(err)


def _end_of_matrix(err: BaseException, dist, kept: str) -> None:
    """How `run` and `tune` end on an error: one line for bad input or a failed run, a resume hint
    for an interruption (printed once under DDP); anything else propagates."""
    from grporm.process.interrupts import Interrupted

    if isinstance(err, GrpormError):
        _fail(err)
    if isinstance(err, OSError):
        raise typer.Exit(_os_failure(err)) from None
    if isinstance(err, Interrupted):
        if dist.is_main:
            typer.echo(f"interrupted: {err}; rerun the same command to resume {kept}", err=True)
        raise typer.Exit(err.exit_code) from None
    if isinstance(err, KeyboardInterrupt):
        typer.echo(f"interrupted: rerun the same command to resume {kept}", err=True)
        raise typer.Exit(130) from None
    raise err


def _fail(err: GrpormError) -> None:
    typer.echo(f"error: {err}", err=True)
    raise typer.Exit(err.exit_code)


def _os_failure(err: OSError) -> int:
    """An operating-system error that reached the top of a command: one line naming the path and
    the fix (records are written atomically, so nothing is left half-written); the exit code."""
    from grporm.errors import os_error

    problem = os_error(err)
    typer.echo(f"error: {problem}", err=True)
    return problem.exit_code


def _warn(line: str) -> None:
    typer.echo(f"warning: {line}", err=True)


@app.command()
def run(
    experiment: Path = typer.Argument(..., metavar="EXPERIMENT", help="experiment YAML file, e.g. experiments/quick.yaml"),
    override: list[str] = override_option("KEY=VALUE, e.g. -o train.lr=3e-4 or -o matrix.seed=[0,1] (repeatable)"),
    dry_run: bool = typer.Option(False, "--dry-run", help="check every run and print them, then exit"),
    verbose: bool = typer.Option(False, "--verbose", "-v", help="with --dry-run: print each run's full config"),
    max_runs: Optional[int] = max_runs_option(),
    force: bool = typer.Option(False, "--force", help="rerun finished runs and drop their checkpoints"),
    sensitivity: bool = typer.Option(False, "--sensitivity",
                                     help="instead, the runs of every close-call cell (its decision or its control's) "
                                          "at the decision's runner-up lr (tune.pick=runner_up, ids ...-lr=runner_up-s<seed>); "
                                          "needs the decisions (grporm tune)"),
    only: Optional[str] = typer.Option(None, "--only", metavar="TEXT", help="run only the runs whose id contains TEXT"),
    shard: Optional[str] = typer.Option(None, "--shard", metavar="I/N",
                                        help="run only shard I of N (I = 0..N-1): every N-th run of the matrix from the I-th"),
    nproc: int = typer.Option(1, "--nproc", metavar="N", min=1, help="processes per run (one per GPU): relaunches under torchrun, DDP"),
    stale_lock: float = typer.Option(DEFAULT_STALE_LOCK_MINUTES, "--stale-lock", metavar="MINUTES", min=0.0,
                                     help="take over a run lock of another host after this long without its heartbeat "
                                          "(a lock held by a live process on this host is never taken)"),
    results: Optional[Path] = results_option("where run records go (default: results/ for the repository's own "
                                             "experiments, grporm-results/ for any other file)", default=None),
    checkpoints: Optional[Path] = typer.Option(None, "--checkpoints", metavar="DIR",
                                               help="where checkpoints and final weights go (default: RESULTS/checkpoints)"),
    launcher: Optional[str] = typer.Option(None, "--launcher", metavar="slurm|local",
                                           help="submit the matrix as a job array of shards through submitit (local: "
                                                "processes on this machine, waited for); see --slurm"),
    slurm: list[str] = typer.Option([], "--slurm", metavar="KEY=VALUE",
                                    help="with --launcher (repeatable): partition, account, qos, constraint, gpus_per_task, "
                                         "cpus_per_task, mem_gb, time (minutes), tasks, array_parallelism, setup, "
                                         "log_dir (default RESULTS/logs), extra.<sbatch option>"),
    until_decided: bool = typer.Option(False, "--until-decided",
                                       help="add seeds in batches (verdict.batch) to the arms whose cells are undecided, "
                                            "up to verdict.max_seeds per cell, looking at the verdict after each batch; "
                                            "resumes from the records; works with --shard and --launcher "
                                            "(log: RESULTS/<experiment>/looks.json)"),
    batch_only: bool = typer.Option(False, "--batch-only", hidden=True,
                                    help="with --until-decided: run this shard of the current batch, then stop (a launcher's task)"),
) -> None:
    """Run every run of an experiment's matrix; finished runs are skipped, interrupted ones resume.

    Records go to --results: by default results/ for the repository's own experiments and
    grporm-results/ (in the current folder) for any other experiment file; checkpoints go under the
    results folder. Several processes (or machines sharing the folders) can work on one matrix at
    once: each run is locked while it runs. On several machines with DDP: torchrun ... -m grporm run
    EXPERIMENT. Every run's settings, data and weights are checked first (--dry-run too): errors stop
    before anything is written, warnings are one line each. W&B: the environment variable WANDB_MODE,
    when set, wins over tracking.mode (except disabled).
    """
    from grporm.plan.run_options import RunOptions

    options = RunOptions(experiment, tuple(override), max_runs, force, sensitivity, only, shard, nproc, stale_lock,
                         results, checkpoints)
    run_command(options, dry_run=dry_run, verbose=verbose, launcher=launcher, slurm=slurm,
                until_decided=until_decided, batch_only=batch_only)


def run_command(options, *, dry_run: bool = False, verbose: bool = False, launcher: str | None = None,
                slurm: list[str] = (), until_decided: bool = False, batch_only: bool = False) -> None:
    """`grporm run` for a RunOptions: check, then print (--dry-run), submit (--launcher), relaunch
    (--nproc) or run the matrix here."""
    from grporm.records.inputs import check_environment, output_folder

    _checked_environment(check_environment)  # before torch is imported: its OpenMP reads OMP_NUM_THREADS
    from grporm.plan.experiment import load_experiment
    from grporm.plan.matrix import is_finished, run_matrix, select_runs, sensitivity_runs
    from grporm.plan.preflight import preflight
    from grporm.process import distributed
    from grporm.process.interrupts import STOP

    o = options
    results, checkpoints = o.results_folder, o.checkpoints_folder
    dist = distributed.SINGLE
    try:
        if until_decided or batch_only:  # seeds in batches until decided: grporm/plan/sequential_runner.py
            from grporm.plan.sequential_runner import run_until_decided, task_arguments

            if not dry_run:
                output_folder(results, "--results")
                output_folder(checkpoints, "--checkpoints")
            with STOP.installed():
                run_until_decided(o.experiment, list(o.overrides), results=results, checkpoints=checkpoints,
                                  max_runs=o.max_runs, shard=o.shard, launcher=launcher, slurm=slurm, dry_run=dry_run,
                                  batch_only=batch_only, stale_seconds=60 * o.stale_lock, echo=typer.echo, warn=_warn,
                                  refused={"force": o.force, "sensitivity": o.sensitivity, "only": o.only,
                                           "nproc": o.nproc > 1},
                                  task_argv=task_arguments(o.experiment, list(o.overrides), results, checkpoints,
                                                           o.stale_lock, o.max_runs))
            return
        exp = load_experiment(o.experiment, list(o.overrides), o.max_runs)
        if o.sensitivity:
            exp = _runner_up_experiment(exp, o.experiment, list(o.overrides), o.max_runs)
            exp.runs = sensitivity_runs(exp.runs, results)
        runs = select_runs(exp.runs, o.only, o.shard) if exp.runs else []
        if dry_run:
            preflight(runs, o.nproc, warn=_warn)  # what a real run would refuse, refused before the list
            typer.echo(f"{exp.name}: {len(runs)} run(s); records under {results / exp.name}")
            for r in runs:
                done = " (finished)" if is_finished(r, results) else ""
                typer.echo(f"  {r.run_id}  config {r.config_hash()}{done}")
                if verbose:
                    typer.echo("    " + yaml.safe_dump(r.model_dump(mode="json"), sort_keys=False).replace("\n", "\n    "))
            return
        if not runs:
            typer.echo(f"{exp.name}: no close-call cell, no runner-up run needed" if o.sensitivity and not exp.runs
                       else f"shard {o.shard} of {exp.name} has no runs")
            return
        output_folder(results, "--results")
        output_folder(checkpoints, "--checkpoints")
        if launcher is not None or slurm:
            from grporm.process import launch
            preflight(runs, o.nproc, warn=_warn)  # bad settings fail here, not after hours in the queue
            raise typer.Exit(launch.launch_cli(launcher, list(slurm), exp, runs, o.shard, o.nproc,
                                               o.argv(shard=False, nproc=True), typer.echo, results))
        dist = distributed.init_from_env()
        relaunch = o.nproc > 1 and not dist.active  # then torchrun's rank 0 says the warnings
        preflight(runs, max(o.nproc, dist.world_size), warn=_warn if dist.is_main and not relaunch else None)  # before anything is written
        if relaunch:
            raise typer.Exit(distributed.launch(o.nproc, o.argv()))
        if dist.is_main:  # where to look, before the first line of the first run
            from grporm.tracking.progress import shard_tag

            typer.echo(f"{shard_tag(o.shard)}{exp.name}: {len(runs)} run(s); records under {results / exp.name}, "
                       f"checkpoints under {checkpoints / exp.name}")
        with STOP.installed():
            run_matrix(runs, results, checkpoints, force=o.force, stale_seconds=60 * o.stale_lock, dist=dist,
                       echo=typer.echo, shard=o.shard)
    except BaseException as err:
        _end_of_matrix(err, dist, "from the last checkpoint")
    finally:
        distributed.shutdown()


def _runner_up_experiment(exp, experiment: Path, override: list[str], max_runs: int | None):
    """`experiment` with tune.pick=runner_up (the ids gain -lr=runner_up); one line if it cannot have it."""
    from grporm.plan.experiment import load_experiment, parse_override
    from grporm.tuning.decisions import needs_decision

    if any(parse_override(o)[0] == "tune.pick" for o in override):
        raise GrpormError("--sensitivity sets tune.pick=runner_up itself; drop -o tune.pick")
    if not any(needs_decision(r) for r in exp.runs):
        raise GrpormError(f"--sensitivity: no run of {exp.name} trains at a tuning decision (tune.grid); nothing to rerun")
    return load_experiment(experiment, [*override, "tune.pick=runner_up"], max_runs)


@app.command()
def tune(
    experiment: Path = typer.Argument(..., metavar="EXPERIMENT", help="experiment YAML file whose runs set tune.grid"),
    override: list[str] = override_option(),
    shard: Optional[str] = typer.Option(None, "--shard", metavar="I/N",
                                        help="decide only every N-th setting from the I-th (I = 0..N-1)"),
    force: bool = typer.Option(False, "--force", help="redo decisions that exist"),
    max_runs: Optional[int] = max_runs_option(),
    results: Optional[Path] = results_option("decisions go to RESULTS/tuning/<key>.json (default: as for grporm run)",
                                             default=None),
) -> None:
    """Choose the learning rate of every setting an experiment's runs need, then print the decisions.

    A decision is made once per setting and shared by seeds and experiments; printed are the grid,
    the validation scores, the winner, the margin and the flags."""
    from grporm.plan.run_options import default_results
    from grporm.records.inputs import check_environment, output_folder

    results = results if results is not None else default_results(experiment)

    _checked_environment(check_environment)
    from grporm.analysis.tuning import decisions_markdown
    from grporm.plan.experiment import load_experiment
    from grporm.plan.matrix import parse_shard, settings_to_tune, tune_matrix
    from grporm.plan.preflight import preflight
    from grporm.process import distributed
    from grporm.process.interrupts import STOP
    from grporm.tuning.decisions import read_decision, record_path, tuning_key

    dist = distributed.SINGLE
    try:
        exp = load_experiment(experiment, override, max_runs)
        settings = settings_to_tune(exp.runs)
        if not settings:
            typer.echo(f"{exp.name}: no run sets tune.grid (pretrained rows need none); nothing to tune")
            return
        mine = settings
        if shard is not None:
            index, count = parse_shard(shard)
            mine = settings[index::count]
        output_folder(results, "--results")
        dist = distributed.init_from_env()
        preflight(mine, dist.world_size, warn=_warn if dist.is_main else None)
        from grporm.tracking.progress import PROCESS, shard_tag, tagged

        PROCESS.tag = shard_tag(shard)  # two shards in one terminal: each line says whose it is
        try:
            with STOP.installed():
                tune_matrix(mine, results, force=force, dist=dist, echo=tagged(typer.echo))
        finally:
            PROCESS.tag = ""
        if dist.is_main:
            found = [read_decision(record_path(results, tuning_key(r))) for r in settings]
            typer.echo(f"\n{exp.name}: {sum(map(bool, found))} of {len(settings)} decision(s) under {results / 'tuning'}")
            if any(found):
                typer.echo(decisions_markdown([r for r in found if r]))
    except BaseException as err:
        _end_of_matrix(err, dist, "(scored learning rates are kept)")
    finally:
        distributed.shutdown()


@app.command()
def report(
    results: Path = results_option("folder with run records"),
    from_wandb: Optional[str] = typer.Option(None, "--from-wandb", metavar="ENTITY/PROJECT",
                                             help="also read the runs of this W&B project (cached under RESULTS/.wandb_cache)"),
    refresh: bool = typer.Option(False, "--refresh", help="with --from-wandb: query W&B again instead of the cache"),
) -> None:
    """Write REPORT.md, its tables and figures, and each experiment's table.md from the run records.

    Tables go under RESULTS/tables/, figures under RESULTS/figures/."""
    from grporm.analysis.report import REPORT_NAME, report_all
    from grporm.tracking.progress import Stages

    try:
        written = report_all(results, from_wandb, refresh, say=Stages())
    except GrpormError as err:
        _fail(err)
    for path in written:
        if path.parent.name not in ("tables", "figures"):
            typer.echo(f"wrote {path}")
    tables = sum(p.parent.name == "tables" for p in written)
    figures = sum(p.parent.name == "figures" for p in written)
    typer.echo(f"wrote {tables} table file(s) under {results / 'tables'} and {figures} figure file(s) under "
               f"{results / 'figures'}; start at {results / REPORT_NAME}")


@app.command()
def compare(
    results: list[Path] = typer.Argument(..., metavar="DIR", help="one or more results folders, e.g. results grporm-results"),
    out: Optional[Path] = typer.Option(None, "--out", metavar="DIR", help="also write verdict.md, .tex, .csv (and verdict_aggregate.csv) here"),
) -> None:
    """Print the verdict over the records of every folder given, as Markdown.

    Each experiment with a control, its treatments against it; an experiment found in two folders is
    kept apart, named <folder>/<experiment> (the rule of grporm.verdict too); a run dropped as a
    duplicate is said on stderr."""
    from grporm.analysis.records import dropped, merged
    from grporm.analysis.verdict import comparisons
    from grporm.analysis.verdict_render import NAME, verdict_files
    from grporm.records.inputs import output_folder
    from grporm.records.storage import write_text_atomic

    try:
        run_set = merged(list(results))
        for line in dropped(run_set):
            _warn(line)
        found = comparisons(run_set)
        if not found:
            raise GrpormError(f"no finished run records under {', '.join(map(str, results))}; "
                              "produce them with `grporm run EXPERIMENT.yaml --results DIR`")
        files = verdict_files(found)
        if out is not None:
            output_folder(out, "--out").mkdir(parents=True, exist_ok=True)
            for suffix, text in files.items():
                write_text_atomic(out / f"{NAME}{suffix}", text)
    except GrpormError as err:
        _fail(err)
    typer.echo(files[".md"])
    if out is not None:
        typer.echo(f"wrote {len(files)} file(s) under {out}")


@app.command()
def verify(
    rerun: Path = typer.Argument(..., metavar="DIR", help="the --results folder of a rerun, e.g. of make verify"),
    against: Path = typer.Option(Path("results"), "--against", metavar="DIR", help="folder with the committed records"),
    experiment: Optional[str] = typer.Option(None, "--experiment", metavar="NAME", help="compare only this experiment"),
) -> None:
    """Compare a rerun's records with the committed ones; exit 1 if any number is outside its tolerance.

    Per run and metric: the committed value, the rerun's, Δ, the tolerance and a verdict (exact /
    within / OUTSIDE). A committed run that is missing or was rerun with another config fails too."""
    from grporm.records.verify import verify as compare_runs

    try:
        report, text = compare_runs(rerun, against, experiment)
    except GrpormError as err:
        _fail(err)
    typer.echo(text)
    if not report.ok:
        raise typer.Exit(1)


@app.command("eval")
def eval_(
    run_path: Path = typer.Argument(..., metavar="RUN", help="a run folder (<results>/<experiment>/runs/<run id>) or "
                                                             "the model.pt of a finished run"),
    override: list[str] = override_option("KEY=VALUE on the run's config, e.g. -o eval.knn_k=[5,20] (repeatable)"),
    json_out: Optional[Path] = typer.Option(None, "--json", metavar="FILE", help="also write the metrics as JSON here"),
    results: Optional[Path] = typer.Option(None, "--results", metavar="DIR",
                                           help="with a model.pt: the results folder holding the run's record"),
    checkpoints: Optional[Path] = typer.Option(None, "--checkpoints", metavar="DIR",
                                               help="with a run folder: the checkpoints folder holding its model.pt"),
) -> None:
    """Evaluate a finished run's saved model with the suite's protocols on the run's data set.

    SR, kNN, head accuracy and ECE (segmentation: mIoU), and the run's corruptions, transfer or
    imbalance evaluation when its config has them, on the fine-tuned weights the run kept; the same
    numbers as its record when nothing is overridden."""
    from grporm.records.inputs import check_environment

    _checked_environment(check_environment)
    from grporm.training.saved import evaluate_saved, locate

    try:
        saved = locate(run_path, results, checkpoints)
        _, metrics = evaluate_saved(saved, override)
    except GrpormError as err:
        _fail(err)
    typer.echo(f"{saved.run_id} ({saved.weights}): {metrics.headline()}")
    for name, value in metrics.values().items():
        if isinstance(value, float):
            typer.echo(f"  {name:28s} {value:.4f}")
    if json_out is not None:
        from grporm.records.storage import write_json

        write_json(json_out, {"run_id": saved.run_id, "weights": str(saved.weights), "record": str(saved.record),
                              "overrides": list(override), "metrics": metrics.to_json()})
        typer.echo(f"wrote {json_out}")


@app.command()
def dashboard(project: str = typer.Argument(..., metavar="ENTITY/PROJECT", help="W&B entity/project of the runs")) -> None:
    """Create a W&B report of a project's runs, grouped as in the tables.

    Needs network and the package wandb-workspaces."""
    from grporm.tracking.wandb_tools import create_dashboard

    try:
        typer.echo(f"created W&B report {create_dashboard(project)}")
    except GrpormError as err:
        _fail(err)


@app.command()
def sync(results: Path = results_option("folder with run records")) -> None:
    """Upload the offline W&B runs with wandb sync.

    The runs under ./wandb (or $WANDB_DIR/wandb) and those the records under RESULTS name."""
    from grporm.tracking import wandb_tools
    try:
        folders = wandb_tools.offline_runs(results)
        if not folders:
            typer.echo(f"no offline W&B runs to sync under {wandb_tools.wandb_folder()} or in the records under {results}")
            return
        typer.echo(f"syncing {len(folders)} offline W&B run(s)")
        code = wandb_tools.sync(folders)
    except GrpormError as err:
        _fail(err)
    if code:
        typer.echo(f"error: wandb sync exited with code {code}", err=True)
        raise typer.Exit(code)


@app.command("list")
def list_(what: Optional[str] = typer.Argument(None, help="datasets | backbones | objectives | rewards | corruptions | methods | experiments")) -> None:
    """List the data sets, packaged backbones, objectives, rewards, methods and shipped experiments."""
    from grporm.data import DATASETS
    from grporm.data.corruptions import CORRUPTIONS
    from grporm.models import PACKAGED_WEIGHTS
    from grporm.objectives import OBJECTIVES, REWARDS
    from grporm.training.methods import METHODS, method_names

    sections = {
        "datasets": DATASETS.describe(),
        "backbones": {name: f"packaged weights; {doc}".rstrip("; ") for name, doc in PACKAGED_WEIGHTS.describe().items()}
        | {"<any timm model>": "weights: hub | none | <path to checkpoint>"},
        "objectives": OBJECTIVES.describe(),
        "rewards": REWARDS.describe(),
        "corruptions": CORRUPTIONS.describe(),
        "methods": {m: METHODS.get(m).doc for m in method_names()},
        "experiments": _shipped_experiments(),
    }
    if what is not None and what not in sections:
        _fail(GrpormError(f"unknown list {what!r}; choose one of: {', '.join(sections)}"))
    import shutil
    import textwrap

    width = max(60, shutil.get_terminal_size((100, 24)).columns)
    for name, entries in sections.items():
        if what in (None, name):
            typer.echo(f"{name}:")
            column = min(40, max(map(len, entries), default=0))
            for key, doc in entries.items():
                # whole descriptions, wrapped in their own column, never cut; a longer name gets its own line
                lines = textwrap.wrap(doc, max(30, width - column - 3))
                if len(key) > column:
                    typer.echo(f"  {key}")
                    lines = lines or []
                else:
                    lines = lines or [""]
                    typer.echo(f"  {key:{column}s} {lines.pop(0)}".rstrip())
                for line in lines:
                    typer.echo(f"  {'':{column}s} {line}")


def _shipped_experiments() -> dict[str, str]:
    """The repository's experiment files (as paths from the current folder when inside it), each with
    its description."""
    from grporm.plan.experiment import load_yaml
    from grporm.plan.run_options import SHIPPED_EXPERIMENTS

    found = {}
    for path in sorted(SHIPPED_EXPERIMENTS.rglob("*.yaml")):
        try:
            shown = str(path.relative_to(Path.cwd().resolve()))
        except ValueError:
            shown = str(path)
        try:
            description = str(load_yaml(path).get("description") or "")
        except GrpormError:
            description = ""
        found[shown] = " ".join(description.split()) or _first_comment_sentence(path)
    return found


def _first_comment_sentence(path: Path) -> str:
    """The first sentence of a file's opening comment (the studies say what they are there)."""
    from grporm.records.inputs import read_text

    lines = []
    try:
        text = read_text(path, "experiment file", "reinstall the repository's experiments")
    except GrpormError:
        return ""
    for line in text.splitlines():
        if not line.startswith("#"):
            break
        lines.append(line.lstrip("#").strip())
    text = " ".join(" ".join(lines).split())
    end = text.find(". ")
    return text if end < 0 else text[:end + 1]


data_app = typer.Typer(no_args_is_help=True, help="Data sets and weight files an experiment needs.")
app.add_typer(data_app, name="data")


@data_app.command("check")
def data_check(
    experiment: Optional[Path] = typer.Argument(None, help="experiment YAML file; without one, every registered data set and packaged weights"),
    override: list[str] = override_option(),
    max_runs: Optional[int] = max_runs_option(),
    offline: bool = typer.Option(False, "--offline", help="count what a run would download (weights: hub, data.download) as missing; also HF_HUB_OFFLINE=1"),
) -> None:
    """List the data sets and weight files needed and where they are; exit 1 if any is missing."""
    from grporm.plan.preflight import settings_checked
    from grporm.plan.requirements import env_offline, experiment_requirements, format_table, inventory
    from grporm.records.inputs import check_environment

    try:
        check_environment()
        if experiment is None:
            if override:
                raise GrpormError("-o/--override needs an experiment file")
            items = inventory()
        else:
            from grporm.plan.experiment import load_experiment

            exp = load_experiment(experiment, override, max_runs)
            settings_checked(exp.runs)  # the settings alone, as `grporm run` checks them; loading is --dry-run's
            items = experiment_requirements(exp)
    except GrpormError as err:
        _fail(err)
    typer.echo(format_table(items))
    offline = offline or env_offline()
    blocking = [r for r in items if r.blocks(offline)]
    fetched = [r for r in items if not r.present and not r.blocks(offline)]
    if fetched:
        typer.echo("fetch = not on disk, the run downloads it (needs network); --offline counts it as missing")
    typer.echo(f"{sum(r.present for r in items)} of {len(items)} present, {len(blocking)} missing")
    if blocking:
        raise typer.Exit(1)


def main() -> None:
    app()


if __name__ == "__main__":
    sys.exit(main())
