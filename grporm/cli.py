"""The `grporm` command line: run experiments, report results, list what is registered."""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Optional

import typer
import yaml
from typer._click import exceptions as click_errors  # typer vendors click; its own classes
from typer.core import TyperGroup

from grporm.errors import GrpormError


class OneLineErrors(TyperGroup):
    """A command-line usage error (unknown option, `--nproc abc`, a missing argument) is one line on
    stderr and exit code 2, like every other bad input, instead of click's usage box."""

    def main(self, args=None, prog_name=None, complete_var=None, standalone_mode=True, **extra):
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
        if not standalone_mode:
            return code
        sys.exit(code if isinstance(code, int) else 0)


app = typer.Typer(cls=OneLineErrors, add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="GRPO-RM vs cross-entropy fine-tuning of representation models.")
EXPERIMENTS = Path("experiments")


def max_runs_option() -> int | None:
    # The limit itself is grporm.experiment.MAX_RUNS (not imported here: the CLI imports lazily).
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
    from grporm.interrupts import Interrupted

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
    experiment: Path = typer.Argument(..., help="experiment YAML file, e.g. experiments/quick.yaml"),
    override: list[str] = typer.Option([], "--override", "-o", help="KEY=VALUE, e.g. -o train.lr=3e-4 (repeatable)"),
    dry_run: bool = typer.Option(False, "--dry-run", help="print the resolved runs and exit"),
    verbose: bool = typer.Option(False, "--verbose", "-v", help="with --dry-run: print each run's full config"),
    max_runs: Optional[int] = max_runs_option(),
    force: bool = typer.Option(False, "--force", help="rerun finished runs and drop their checkpoints"),
    sensitivity: bool = typer.Option(False, "--sensitivity",
                                     help="instead, the runs of every close-call cell (its decision or its ce control's) "
                                          "at the decision's runner-up lr (tune.pick=runner_up, ids ...-lr=runner_up-s<seed>); "
                                          "needs the decisions (grporm tune)"),
    only: Optional[str] = typer.Option(None, "--only", help="run only the runs whose id contains this text"),
    shard: Optional[str] = typer.Option(None, "--shard", metavar="I/N",
                                        help="run only shard I of N (I = 0..N-1): every N-th run of the matrix from the I-th"),
    nproc: int = typer.Option(1, "--nproc", min=1, help="processes per run (one per GPU): relaunches under torchrun, DDP"),
    stale_lock: float = typer.Option(10.0, "--stale-lock", metavar="MINUTES", min=0.0,
                                     help="take over a run lock of another host after this long without its heartbeat "
                                          "(a lock held by a live process on this host is never taken)"),
    results: Path = typer.Option(Path("results"), "--results", help="where run records go"),
    checkpoints: Path = typer.Option(Path("checkpoints"), "--checkpoints", help="where checkpoints go"),
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

    Several processes (or machines sharing the folders) can work on one matrix at once: each run is
    locked while it runs. On several machines with DDP: torchrun ... -m grporm run EXPERIMENT.yaml.
    Every run's settings, data and weights are checked first (--dry-run too): errors stop before
    anything is written, warnings are one line each. W&B: the environment variable WANDB_MODE, when
    set, wins over tracking.mode (except disabled).
    """
    from grporm.inputs import check_environment, output_folder

    _checked_environment(check_environment)  # before torch is imported: its OpenMP reads OMP_NUM_THREADS
    from grporm import distributed
    from grporm.experiment import load_experiment
    from grporm.interrupts import STOP
    from grporm.matrix import is_finished, run_matrix, select_runs, sensitivity_runs
    from grporm.preflight import preflight

    dist = distributed.SINGLE
    try:
        if until_decided or batch_only:  # seeds in batches until decided: grporm/sequential_runner.py
            from grporm.sequential_runner import run_until_decided, task_arguments

            if not dry_run:
                output_folder(results, "--results")
                output_folder(checkpoints, "--checkpoints")
            with STOP.installed():
                run_until_decided(experiment, override, results=results, checkpoints=checkpoints, max_runs=max_runs,
                                  shard=shard, launcher=launcher, slurm=slurm, dry_run=dry_run, batch_only=batch_only,
                                  stale_seconds=60 * stale_lock, echo=typer.echo, warn=_warn,
                                  refused={"force": force, "sensitivity": sensitivity, "only": only, "nproc": nproc > 1},
                                  task_argv=task_arguments(experiment, override, results, checkpoints, stale_lock, max_runs))
            return
        exp = load_experiment(experiment, override, max_runs)
        if sensitivity:
            exp = _runner_up_experiment(exp, experiment, override, max_runs)
            exp.runs = sensitivity_runs(exp.runs, results)
        runs = select_runs(exp.runs, only, shard) if exp.runs else []
        if dry_run:
            typer.echo(f"{exp.name}: {len(runs)} run(s)")
            for r in runs:
                done = " (finished)" if is_finished(r, results) else ""
                typer.echo(f"  {r.run_id}  config {r.config_hash()}{done}")
                if verbose:
                    typer.echo("    " + yaml.safe_dump(r.model_dump(mode="json"), sort_keys=False).replace("\n", "\n    "))
            preflight(runs, nproc, warn=_warn)  # what a real run would refuse, refused here too
            return
        if not runs:
            typer.echo(f"{exp.name}: no close-call cell, no runner-up run needed" if sensitivity and not exp.runs
                       else f"shard {shard} of {exp.name} has no runs")
            return
        output_folder(results, "--results")
        output_folder(checkpoints, "--checkpoints")
        argv = ["run", str(experiment), *(x for o in override for x in ("-o", o)), "--stale-lock", str(stale_lock),
                "--results", str(results), "--checkpoints", str(checkpoints), *(["--force"] if force else []),
                *(["--sensitivity"] if sensitivity else []),
                *(["--only", only] if only else [])]
        if launcher is not None or slurm:
            from grporm import launch

            preflight(runs, nproc, warn=_warn)  # bad settings fail here, not after hours in the queue
            raise typer.Exit(launch.launch_cli(launcher, slurm, exp, runs, shard, nproc, argv, typer.echo, results))
        dist = distributed.init_from_env()
        relaunch = nproc > 1 and not dist.active  # then torchrun's rank 0 says the warnings
        preflight(runs, max(nproc, dist.world_size), warn=_warn if dist.is_main and not relaunch else None)  # before anything is written
        if relaunch:
            raise typer.Exit(distributed.launch(nproc, [*argv, *(["--shard", shard] if shard else [])]))
        with STOP.installed():
            run_matrix(runs, results, checkpoints, force=force, stale_seconds=60 * stale_lock, dist=dist, echo=typer.echo)
    except BaseException as err:
        _end_of_matrix(err, dist, "from the last checkpoint")
    finally:
        distributed.shutdown()


def _runner_up_experiment(exp, experiment: Path, override: list[str], max_runs: int | None):
    """`experiment` with tune.pick=runner_up (the ids gain -lr=runner_up); one line if it cannot have it."""
    from grporm.experiment import load_experiment, parse_override
    from grporm.tuning import needs_decision

    if any(parse_override(o)[0] == "tune.pick" for o in override):
        raise GrpormError("--sensitivity sets tune.pick=runner_up itself; drop -o tune.pick")
    if not any(needs_decision(r) for r in exp.runs):
        raise GrpormError(f"--sensitivity: no run of {exp.name} trains at a tuning decision (tune.grid); nothing to rerun")
    return load_experiment(experiment, [*override, "tune.pick=runner_up"], max_runs)


@app.command()
def tune(
    experiment: Path = typer.Argument(..., help="experiment YAML file whose runs set tune.grid"),
    override: list[str] = typer.Option([], "--override", "-o", help="KEY=VALUE, as for `grporm run` (repeatable)"),
    shard: Optional[str] = typer.Option(None, "--shard", metavar="I/N",
                                        help="decide only every N-th setting from the I-th (I = 0..N-1)"),
    force: bool = typer.Option(False, "--force", help="redo decisions that exist"),
    max_runs: Optional[int] = max_runs_option(),
    results: Path = typer.Option(Path("results"), "--results", help="decisions go to RESULTS/tuning/<key>.json"),
) -> None:
    """Choose the learning rate of every setting the experiment's runs need (once per setting, shared by
    seeds and experiments), then print the decisions: grid, validation scores, winner, margin, flags."""
    from grporm.inputs import check_environment, output_folder

    _checked_environment(check_environment)
    from grporm import distributed
    from grporm.analysis.tuning import decisions_markdown
    from grporm.experiment import load_experiment
    from grporm.interrupts import STOP
    from grporm.matrix import parse_shard, settings_to_tune, tune_matrix
    from grporm.preflight import preflight
    from grporm.tuning import read_decision, record_path, tuning_key

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
        with STOP.installed():
            tune_matrix(mine, results, force=force, dist=dist, echo=typer.echo)
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
    results: Path = typer.Option(Path("results"), "--results", help="folder with run records"),
    from_wandb: Optional[str] = typer.Option(None, "--from-wandb", metavar="ENTITY/PROJECT",
                                             help="also read the runs of this W&B project (cached under RESULTS/.wandb_cache)"),
    refresh: bool = typer.Option(False, "--refresh", help="with --from-wandb: query W&B again instead of the cache"),
) -> None:
    """Write REPORT.md (all tables and figures, under tables/ and figures/) and each experiment's table.md, from the run records."""
    from grporm.analysis.report import REPORT_NAME, report_all
    from grporm.progress import Stages

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
    results: list[Path] = typer.Argument(..., metavar="RESULTS...", help="one or more results folders, e.g. results my_results"),
    out: Optional[Path] = typer.Option(None, "--out", metavar="DIR", help="also write verdict.md, .tex, .csv (and verdict_aggregate.csv) here"),
) -> None:
    """The verdict over the records of every folder given (Markdown on stdout): each experiment with a
    control, its treatments against it; an experiment found in two folders is kept apart, named <folder>/<experiment>."""
    from grporm.analysis.verdict import NAME, comparisons, merged, verdict_files
    from grporm.inputs import output_folder

    try:
        found = comparisons(merged(list(results)))
        if not found:
            raise GrpormError(f"no finished run records under {', '.join(map(str, results))}; "
                              "produce them with `grporm run EXPERIMENT.yaml --results DIR`")
        files = verdict_files(found)
        if out is not None:
            output_folder(out, "--out").mkdir(parents=True, exist_ok=True)
            for suffix, text in files.items():
                (out / f"{NAME}{suffix}").write_text(text, encoding="utf-8")
    except GrpormError as err:
        _fail(err)
    typer.echo(files[".md"])
    if out is not None:
        typer.echo(f"wrote {len(files)} file(s) under {out}")


@app.command()
def verify(
    rerun: Path = typer.Argument(..., metavar="RERUN_DIR", help="the --results folder of a rerun, e.g. of make verify"),
    against: Path = typer.Option(Path("results"), "--against", help="folder with the committed records"),
    experiment: Optional[str] = typer.Option(None, "--experiment", help="compare only this experiment"),
) -> None:
    """Compare a rerun's records with the committed ones: per run and metric the committed value, the
    rerun's, Δ, the tolerance and a verdict (exact / within / OUTSIDE); exit 1 if any is outside, or a
    committed run is missing or was rerun with another config."""
    from grporm.verify import verify as compare_runs

    try:
        report, text = compare_runs(rerun, against, experiment)
    except GrpormError as err:
        _fail(err)
    typer.echo(text)
    if not report.ok:
        raise typer.Exit(1)


@app.command()
def dashboard(project: str = typer.Argument(..., metavar="ENTITY/PROJECT", help="W&B entity/project of the runs")) -> None:
    """Create a W&B report of the project's runs grouped as in the tables (needs network and wandb-workspaces)."""
    from grporm.wandb_tools import create_dashboard

    try:
        typer.echo(f"created W&B report {create_dashboard(project)}")
    except GrpormError as err:
        _fail(err)


@app.command()
def sync(results: Path = typer.Option(Path("results"), "--results", help="folder with run records")) -> None:
    """Upload the offline W&B runs (wandb sync) under ./wandb, or $WANDB_DIR/wandb, and those the records name."""
    from grporm import wandb_tools

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
    """List the registered data sets, packaged backbones, objectives, rewards and shipped experiments."""
    from grporm.data import DATASETS
    from grporm.data.corruptions import CORRUPTIONS
    from grporm.methods import METHODS, method_names
    from grporm.models import PACKAGED_WEIGHTS
    from grporm.objectives import OBJECTIVES, REWARDS

    sections = {
        "datasets": DATASETS.describe(),
        "backbones": {name: f"packaged weights; {doc}".rstrip("; ") for name, doc in PACKAGED_WEIGHTS.describe().items()}
        | {"<any timm model>": "weights: hub | none | <path to checkpoint>"},
        "objectives": OBJECTIVES.describe(),
        "rewards": REWARDS.describe(),
        "corruptions": CORRUPTIONS.describe(),
        "methods": {m: METHODS.get(m).doc for m in method_names()},
        "experiments": {str(p): "" for p in sorted(EXPERIMENTS.rglob("*.yaml"))},
    }
    if what is not None and what not in sections:
        _fail(GrpormError(f"unknown list {what!r}; choose one of: {', '.join(sections)}"))
    for name, entries in sections.items():
        if what in (None, name):
            typer.echo(f"{name}:")
            for key, doc in entries.items():
                typer.echo(f"  {key:28s} {doc}".rstrip())


data_app = typer.Typer(no_args_is_help=True, help="Data sets and weight files an experiment needs.")
app.add_typer(data_app, name="data")


@data_app.command("check")
def data_check(
    experiment: Optional[Path] = typer.Argument(None, help="experiment YAML file; without one, every registered data set and packaged weights"),
    override: list[str] = typer.Option([], "--override", "-o", help="KEY=VALUE, as for `grporm run` (repeatable)"),
    max_runs: Optional[int] = max_runs_option(),
    offline: bool = typer.Option(False, "--offline", help="count what a run would download (weights: hub, data.download) as missing; also HF_HUB_OFFLINE=1"),
) -> None:
    """List every data set and weight file needed, where it was looked for and whether it is there; exit 1 if any is missing."""
    from grporm.inputs import check_environment
    from grporm.preflight import settings_checked
    from grporm.requirements import env_offline, experiment_requirements, format_table, inventory

    try:
        check_environment()
        if experiment is None:
            if override:
                raise GrpormError("-o/--override needs an experiment file")
            items = inventory()
        else:
            from grporm.experiment import load_experiment

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
