"""What one `grporm run` is asked to do, as one object: the CLI builds it from its options, the Python
API (`grporm.run`) from its arguments, and a relaunch (torchrun for `--nproc`, submitit for
`--launcher`) writes the child's command line from it (`argv`), so no option is lost on the way.

It also decides where a run writes when the user did not say:

* an experiment shipped with the repository (under its experiments/ folder, templates aside) writes
  to `results/`, the committed records;
* any other experiment file (the user's own) writes to `grporm-results/` in the current folder
  (git-ignored), so following the own-data steps never touches the committed records;
* checkpoints go under the results folder they belong to (`<results>/checkpoints`), not to a
  `./checkpoints` shared by every results folder.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

# The repository's own experiment files (absent when grporm is installed from a wheel: then every
# experiment is the user's).
SHIPPED_EXPERIMENTS = Path(__file__).resolve().parents[2] / "experiments"
TEMPLATES = SHIPPED_EXPERIMENTS / "templates"  # copied and edited by users: their runs are theirs
COMMITTED_RESULTS = Path("results")
USER_RESULTS = Path("grporm-results")
CHECKPOINTS = "checkpoints"  # the folder of training checkpoints and final weights inside a results folder
DEFAULT_STALE_LOCK_MINUTES = 10.0


def is_shipped(experiment: Path | str) -> bool:
    """Is `experiment` one of the repository's own experiment files (templates excepted)?"""
    try:
        path = Path(experiment).expanduser().resolve()
    except (OSError, RuntimeError, ValueError):
        return False
    return path.is_relative_to(SHIPPED_EXPERIMENTS) and not path.is_relative_to(TEMPLATES)


def default_results(experiment: Path | str) -> Path:
    """`results/` for a shipped experiment, `grporm-results/` for any other (see the module's docstring)."""
    return COMMITTED_RESULTS if is_shipped(experiment) else USER_RESULTS


def default_checkpoints(results: Path | str) -> Path:
    return Path(results) / CHECKPOINTS


@dataclass(frozen=True)
class RunOptions:
    """`grporm run EXPERIMENT ...`: every option that changes what the command does (not --dry-run or
    --verbose, which only print). `results` / `checkpoints` None: the defaults above."""

    experiment: Path
    overrides: tuple[str, ...] = ()
    max_runs: int | None = None
    force: bool = False
    sensitivity: bool = False
    only: str | None = None
    shard: str | None = None
    nproc: int = 1
    stale_lock: float = DEFAULT_STALE_LOCK_MINUTES
    results: Path | None = None
    checkpoints: Path | None = None

    @property
    def results_folder(self) -> Path:
        return Path(self.results) if self.results is not None else default_results(self.experiment)

    @property
    def checkpoints_folder(self) -> Path:
        return Path(self.checkpoints) if self.checkpoints is not None else default_checkpoints(self.results_folder)

    def argv(self, *, shard: bool = True, nproc: bool = False) -> list[str]:
        """The child's `grporm run ...` command line (after `grporm`): the same runs, limits and
        folders (written out, so the child needs no default). `shard`: pass --shard on (torchrun's
        workers run this process's shard; a launcher adds each task's own); `nproc`: pass --nproc on
        (a launcher's task relaunches under torchrun itself; torchrun's workers must not)."""
        return ["run", str(self.experiment), *(x for o in self.overrides for x in ("-o", o)),
                "--stale-lock", str(self.stale_lock),
                "--results", str(self.results_folder), "--checkpoints", str(self.checkpoints_folder),
                *(["--max-runs", str(self.max_runs)] if self.max_runs is not None else []),
                *(["--force"] if self.force else []),
                *(["--sensitivity"] if self.sensitivity else []),
                *(["--only", self.only] if self.only is not None else []),
                *(["--shard", self.shard] if shard and self.shard is not None else []),
                *(["--nproc", str(self.nproc)] if nproc and self.nproc > 1 else [])]
