"""`grporm run X.yaml --launcher slurm`: the matrix as a Slurm job array through submitit.

Each array task runs `grporm run X.yaml --shard I/N` (same overrides, same folders) in a fresh
process, so a task is exactly what a user would type on a node: the run locks keep two tasks off
one run, finished runs are skipped and interrupted ones resume from their checkpoint. By default
every task gets one run; `--slurm tasks=N` packs the matrix into N shards. Tasks that would have no
run (an --only filter) are not submitted. `--launcher local` uses submitit's LocalExecutor (the
tasks are processes on this machine, waited for): the same path, testable without a cluster.

Options come as `--slurm KEY=VALUE` (repeatable), checked against `SlurmOptions`; any other sbatch
option as `--slurm extra.KEY=VALUE` (e.g. `extra.reservation=mine`). submitit writes each task's
stdout/stderr and pickles next to the results: `<results>/logs/<experiment>/<job id>/` on Slurm
(`<array>_<task>` per task), `<results>/logs/<experiment>/local-<time>/<pid>_0_log.*` locally (the
local executor would create a folder literally named `%j`); `--slurm log_dir=DIR` replaces
`<results>/logs`.

Threads: the tasks of one machine share its cores. Each process gets max(1, cores // processes)
threads -- local: this machine's cores over tasks x --nproc; Slurm: cpus_per_task over --nproc --
through OMP_NUM_THREADS (unless set already) and `-o train.threads=N` (unless the runs set it).
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from grporm.errors import ConfigError, GrpormError, first_error

LAUNCHERS = ("slurm", "local")


class SlurmOptions(BaseModel):
    """What `--slurm KEY=VALUE` may set."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)
    partition: str | None = Field(None, description="sbatch --partition")
    account: str | None = Field(None, description="sbatch --account")
    qos: str | None = Field(None, description="sbatch --qos")
    constraint: str | None = Field(None, description="sbatch --constraint, e.g. a100")
    gpus_per_task: int | None = Field(None, ge=0, description="GPUs of each task; default: --nproc (1)")
    cpus_per_task: int = Field(8, ge=1, description="CPU cores of each task (data loading, evaluation)")
    mem_gb: int | None = Field(None, ge=1, description="memory of each task in GB; default: the partition's")
    time: int = Field(24 * 60, ge=1, description="time limit of each task in minutes")
    tasks: int | None = Field(None, ge=1, description="array size: the matrix in this many shards; default: one run per task")
    array_parallelism: int = Field(64, ge=1, description="at most this many tasks at once")
    setup: list[str] = Field(default_factory=list, description="shell lines before each task, e.g. 'module load cuda'")
    extra: dict[str, Any] = Field(default_factory=dict, description="any other sbatch option, e.g. extra.reservation=X")
    log_dir: Path | None = Field(None, description="submitit's folder; each experiment gets its own under it; default <results>/logs")


def parse_options(items: list[str]) -> SlurmOptions:
    """`KEY=VALUE` strings (values read as YAML, `extra.KEY` into extra) -> SlurmOptions, or a one-line ConfigError."""
    from grporm.plan.experiment import parse_value, suggest

    raw: dict[str, Any] = {}
    for item in items:
        key, sep, text = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ConfigError(f"--slurm {item!r}: write it as KEY=VALUE, e.g. --slurm partition=gpu")
        if key.startswith("extra."):
            raw.setdefault("extra", {})[key[len("extra."):]] = parse_value(text)
        elif key not in SlurmOptions.model_fields:
            raise ConfigError(f"--slurm {key}: unknown option{suggest(key, set(SlurmOptions.model_fields))}; "
                              f"known: {', '.join(SlurmOptions.model_fields)} (any other sbatch option: extra.KEY=VALUE)")
        else:
            raw[key] = parse_value(text)
    try:
        return SlurmOptions.model_validate(raw)
    except ValidationError as err:
        where, first = first_error(err)
        raise ConfigError(f"--slurm {where}: {first['msg']} (got {first.get('input')!r})") from None


def shard_plan(run_ids: list[str], selected: set[str], tasks: int | None) -> tuple[int, list[int]]:
    """(N, the shard indices worth a task): shard I/N is every N-th run of the matrix from the I-th,
    as `grporm run --shard` takes it, restricted to the selected (--only) runs."""
    count = len(run_ids) if tasks is None else min(tasks, len(run_ids))
    if tasks is None and len(selected) == len(run_ids):
        return count, list(range(count))
    return count, [i for i in range(count) if any(r in selected for r in run_ids[i::count])]


class ShardTask:
    """One array task: `python -m grporm run ... --shard I/N` in a child process whose output goes
    to submitit's log file. On Slurm's timeout or preemption signal submitit calls `checkpoint`: the
    child gets SIGTERM (grporm saves its checkpoint and exits) and the task is requeued to resume."""

    def __init__(self, argv: list[str], cwd: str, env: dict[str, str] | None = None):
        self.argv, self.cwd, self.env = argv, cwd, dict(env or {})
        self._child: subprocess.Popen | None = None

    def __call__(self, shard: str) -> str:
        env = {**self.env, **os.environ} if self.env else None  # what the task's environment sets wins
        self._child = subprocess.Popen([sys.executable, "-m", "grporm", *self.argv, "--shard", shard], cwd=self.cwd, env=env)
        code = self._child.wait()
        if code:
            raise RuntimeError(f"grporm run --shard {shard} exited with code {code}; see this task's log")
        return shard

    def checkpoint(self, shard: str):
        import submitit

        if self._child is not None and self._child.poll() is None:
            self._child.send_signal(signal.SIGTERM)
            try:
                self._child.wait(timeout=60)
            except subprocess.TimeoutExpired:
                pass
        return submitit.helpers.DelayedSubmission(ShardTask(self.argv, self.cwd, self.env), shard)

    def __getstate__(self) -> dict:  # a running child cannot travel with a requeued task
        return {"argv": self.argv, "cwd": self.cwd, "env": self.env, "_child": None}

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update({"env": {}} | state)


def log_folder(launcher: str, options: SlurmOptions, results: Path, experiment: str) -> Path:
    """Where submitit puts the tasks' logs and pickles (see the module's docstring)."""
    base = (Path(results) / "logs" if options.log_dir is None else options.log_dir) / experiment
    if launcher == "slurm":
        return base / "%j"  # submitit and Slurm fill in the job id (an array task: <array>_<task>)
    return base / time.strftime("local-%Y%m%d-%H%M%S")


def threads_per_process(launcher: str, options: SlurmOptions, tasks: int, nproc: int, cores: int | None = None) -> int:
    """CPU threads of each process of each task: the cores a task has, shared by its --nproc processes."""
    if launcher == "slurm":
        return max(1, options.cpus_per_task // max(1, nproc))
    if cores is None:
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, cores // max(1, tasks * nproc))


def make_executor(launcher: str, options: SlurmOptions, folder: Path, nproc: int, name: str):
    try:
        import submitit
    except ImportError:
        raise GrpormError("--launcher needs the package submitit: pip install 'grporm[slurm]' (or pip install submitit)") from None
    try:
        executor = submitit.AutoExecutor(folder=str(folder), cluster="slurm" if launcher == "slurm" else "local")
    except RuntimeError as err:  # submitit: 'Could not detect "srun"'
        raise GrpormError(f"--launcher {launcher}: {err} Submit from a machine of the cluster, or use --launcher local") from None
    gpus = nproc if options.gpus_per_task is None else options.gpus_per_task
    common: dict[str, Any] = {"name": name, "timeout_min": options.time, "cpus_per_task": options.cpus_per_task,
                              "mem_gb": options.mem_gb}
    if launcher == "slurm":
        executor.update_parameters(
            **common, tasks_per_node=1, slurm_gpus_per_task=gpus or None, slurm_partition=options.partition,
            slurm_account=options.account, slurm_qos=options.qos, slurm_constraint=options.constraint,
            slurm_array_parallelism=options.array_parallelism, slurm_setup=options.setup or None,
            slurm_additional_parameters=options.extra or None)
    else:  # a local task sees this machine's GPUs as they are; slurm-only options do not apply
        executor.update_parameters(timeout_min=options.time, name=name)
    return executor


def submit(launcher: str, experiment: str, run_ids: list[str], selected: list[str], argv: list[str], options: SlurmOptions,
           nproc: int = 1, echo: Callable[[str], None] = print, results: Path = Path("results"),
           threads: bool = True) -> list:
    """Submit the shards of `run_ids` that hold a `selected` run, each task running `grporm <argv> --shard I/N`
    (argv already names the experiment file, overrides, folders, --only and --nproc). Returns the jobs.
    `threads`: also set train.threads of the tasks' runs (False when the runs set it themselves)."""
    count, shards = shard_plan(run_ids, set(selected), options.tasks)
    folder = log_folder(launcher, options, results, experiment)
    executor = make_executor(launcher, options, folder, nproc, f"grporm-{experiment}")
    per_process = threads_per_process(launcher, options, len(shards), nproc)
    task = ShardTask([*argv, *(["-o", f"train.threads={per_process}"] if threads else [])], os.getcwd(),
                     {"OMP_NUM_THREADS": str(per_process)})
    try:
        jobs = executor.map_array(task, [f"{i}/{count}" for i in shards])
    except Exception as err:  # sbatch missing or refusing: one line
        text = str(err).strip().splitlines()
        raise GrpormError(f"submitting {len(shards)} task(s) to {launcher} failed: "
                          f"{text[0] if text else type(err).__name__}") from None
    shown = folder.parent if launcher == "slurm" else folder  # the %j folder is per job
    echo(f"{experiment}: {len(selected)} run(s) in {len(jobs)} {launcher} task(s) (shards of {count}); "
         f"logs under {shown}/; {per_process} thread(s) per process")
    for job, shard in zip(jobs, shards):
        echo(f"  job {job.job_id}  --shard {shard}/{count}")
    return jobs


def wait(jobs: list, echo: Callable[[str], None] = print) -> int:
    """Wait for every job; the number that failed (each failure's last line is echoed)."""
    failed = 0
    for job in jobs:
        try:
            job.result()
        except Exception as err:  # noqa: BLE001 - submitit re-raises the task's failure
            failed += 1
            lines = [line for line in str(err).strip().splitlines() if line.strip()]
            echo(f"  job {job.job_id} failed: {lines[-1] if lines else type(err).__name__} (log: {job.paths.stdout})")
    return failed


def launch_cli(launcher: str | None, slurm: list[str], exp, runs: list, shard: str | None, nproc: int, argv: list[str],
               echo: Callable[[str], None] = print, results: Path = Path("results")) -> int:
    """`grporm run --launcher`: check, submit, and with the local executor wait; the exit code. `argv`:
    each task's command line without --shard (grporm.plan.run_options.RunOptions.argv, --nproc included)."""
    from grporm.config import Experiment
    from grporm.plan.requirements import preflight as check_files

    if launcher is None:
        raise ConfigError("--slurm needs --launcher slurm (or local)")
    if launcher not in LAUNCHERS:
        raise ConfigError(f"--launcher {launcher!r}: choose one of {', '.join(LAUNCHERS)}")
    if shard is not None:
        raise ConfigError("--shard and --launcher: the launcher makes the shards; use --slurm tasks=N instead")
    options = parse_options(slurm)
    check_files(Experiment(name=exp.name, runs=runs))  # missing data fails here, not after hours in the queue
    own_threads = any(r.train.threads is not None or "train.threads" in r.axes for r in exp.runs)
    jobs = submit(launcher, exp.name, [r.run_id for r in exp.runs], [r.run_id for r in runs], argv, options,
                  nproc, echo, results, threads=not own_threads)
    if launcher == "local":
        failed = wait(jobs, echo)
        echo(f"{len(jobs) - failed} of {len(jobs)} task(s) done" + (f", {failed} failed" if failed else ""))
        return 1 if failed else 0
    return 0
