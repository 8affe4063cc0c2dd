"""The `grporm` command line: run experiments, report results, list what is registered."""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Optional

import typer
import yaml

from grporm.errors import GrpormError

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="GRPO-RM vs cross-entropy fine-tuning of representation models.")
EXPERIMENTS = Path("experiments")


def _fail(err: GrpormError) -> None:
    typer.echo(f"error: {err}", err=True)
    raise typer.Exit(err.exit_code)


@app.command()
def run(
    experiment: Path = typer.Argument(..., help="experiment YAML file, e.g. experiments/quick.yaml"),
    override: list[str] = typer.Option([], "--override", "-o", help="KEY=VALUE, e.g. -o train.lr=3e-4 (repeatable)"),
    dry_run: bool = typer.Option(False, "--dry-run", help="print the resolved runs and exit"),
    verbose: bool = typer.Option(False, "--verbose", "-v", help="with --dry-run: print each run's full config"),
    force: bool = typer.Option(False, "--force", help="rerun finished runs and drop their checkpoints"),
    only: Optional[str] = typer.Option(None, "--only", help="run only the runs whose id contains this text"),
    results: Path = typer.Option(Path("results"), "--results", help="where run records go"),
    checkpoints: Path = typer.Option(Path("checkpoints"), "--checkpoints", help="where checkpoints go"),
) -> None:
    """Run every run of an experiment's matrix; finished runs are skipped, interrupted ones resume."""
    from grporm.config import load_experiment

    try:
        exp = load_experiment(experiment, override)
        runs = [r for r in exp.runs if only is None or only in r.run_id]
        if not runs:
            raise GrpormError(f"no run of {experiment} matches --only {only!r}")
        if dry_run:
            from grporm.runner import is_finished

            typer.echo(f"{exp.name}: {len(runs)} run(s)")
            for r in runs:
                done = " (finished)" if is_finished(r, results) else ""
                typer.echo(f"  {r.run_id}  config {r.config_hash()}{done}")
                if verbose:
                    typer.echo("    " + yaml.safe_dump(r.model_dump(mode="json"), sort_keys=False).replace("\n", "\n    "))
            return
        from grporm.runner import execute_run, is_finished

        failed = []
        for i, r in enumerate(runs, 1):
            if not force and is_finished(r, results):
                typer.echo(f"[{i}/{len(runs)}] {r.run_id}: finished already, skipped (--force reruns it)")
                continue
            typer.echo(f"[{i}/{len(runs)}] {r.run_id}")
            try:
                record = execute_run(r, results, checkpoints, force=force)
            except GrpormError as err:
                if err.exit_code == 2:
                    raise
                typer.echo(f"[{i}/{len(runs)}] {r.run_id} failed: {err}", err=True)
                failed.append(r.run_id)
                continue
            m = record["metrics"]
            head = "—" if m["head_top1"] is None else f"{100 * m['head_top1']:.1f}"
            typer.echo(f"[{i}/{len(runs)}] {r.run_id}: head {head}  SR {100 * m['sr_top1']:.1f}  "
                       f"kNN@20 {100 * m['knn_top1'].get('20', float('nan')):.1f}  "
                       f"({record['timing']['total_seconds']:.0f} s)")
        if failed:
            raise GrpormError(f"{len(failed)} run(s) failed: {', '.join(failed)}; their records say why")
    except GrpormError as err:
        _fail(err)
    except KeyboardInterrupt:
        typer.echo("interrupted: rerun the same command to resume from the last checkpoint", err=True)
        raise typer.Exit(130)


@app.command()
def report(results: Path = typer.Option(Path("results"), "--results", help="folder with run records")) -> None:
    """Write each experiment's table (Markdown) and convergence figure from the run records."""
    from analysis import write_report

    try:
        for path in write_report(results):
            typer.echo(f"wrote {path}")
    except GrpormError as err:
        _fail(err)


@app.command("list")
def list_(what: Optional[str] = typer.Argument(None, help="datasets | backbones | objectives | rewards | methods | experiments")) -> None:
    """List the registered data sets, packaged backbones, objectives, rewards and shipped experiments."""
    from grporm.config import METHODS
    from grporm.data import DATASETS
    from grporm.models import PACKAGED_WEIGHTS
    from grporm.objectives import OBJECTIVES, REWARDS

    sections = {
        "datasets": DATASETS.describe(),
        "backbones": {name: f"packaged weights; {doc}".rstrip("; ") for name, doc in PACKAGED_WEIGHTS.describe().items()}
        | {"<any timm model>": "weights: hub | none | <path to checkpoint>"},
        "objectives": OBJECTIVES.describe(),
        "rewards": REWARDS.describe(),
        "methods": {m: "" for m in METHODS},
        "experiments": {str(p): "" for p in sorted(EXPERIMENTS.rglob("*.yaml"))},
    }
    if what is not None and what not in sections:
        _fail(GrpormError(f"unknown list {what!r}; choose one of: {', '.join(sections)}"))
    for name, entries in sections.items():
        if what in (None, name):
            typer.echo(f"{name}:")
            for key, doc in entries.items():
                typer.echo(f"  {key:28s} {doc}".rstrip())


def main() -> None:
    app()


if __name__ == "__main__":
    sys.exit(main())
