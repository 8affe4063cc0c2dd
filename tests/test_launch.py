"""`grporm run --launcher`: the matrix as a submitit job array of `--shard I/N` tasks.

The Slurm path is checked up to the sbatch script submitit would submit; the local executor runs
the same tasks as processes on this machine, end to end."""
from __future__ import annotations

import json
import os
import pickle
import re
from pathlib import Path

import pytest

from grporm.errors import ConfigError
from grporm.plan.experiment import load_experiment
from grporm.process import launch

from tiny_runs import RESULTS, env, invoke, write_experiment

submitit = pytest.importorskip("submitit")

MATRIX = {"method": ["ce", "grpo_rm"], "seed": [0, 1]}
RUN_IDS = ["digits-test_vit-ce-s0", "digits-test_vit-ce-s1", "digits-test_vit-grpo_rm-s0", "digits-test_vit-grpo_rm-s1"]


def test_options_are_checked_one_line_each():
    options = launch.parse_options(["partition=gpu", "gpus_per_task=2", "time=90", "extra.reservation=mine",
                                    "setup=[module load cuda]", "qos=high", "account=lab"])
    assert (options.partition, options.gpus_per_task, options.time, options.qos, options.account) == ("gpu", 2, 90, "high", "lab")
    assert options.extra == {"reservation": "mine"} and options.setup == ["module load cuda"]
    with pytest.raises(ConfigError, match=r"--slurm partion: unknown option \(did you mean 'partition'\?\)"):
        launch.parse_options(["partion=gpu"])
    with pytest.raises(ConfigError, match=r"--slurm time: .*greater than or equal to 1 \(got 0\)"):
        launch.parse_options(["time=0"])
    with pytest.raises(ConfigError, match="KEY=VALUE"):
        launch.parse_options(["partition"])


def test_shard_plan_skips_tasks_without_a_selected_run():
    ids = [f"r{i}" for i in range(5)]
    assert launch.shard_plan(ids, set(ids), None) == (5, [0, 1, 2, 3, 4])  # one run per task
    assert launch.shard_plan(ids, set(ids), 2) == (2, [0, 1])
    assert launch.shard_plan(ids, set(ids), 9) == (5, [0, 1, 2, 3, 4])  # never more tasks than runs
    assert launch.shard_plan(ids, {"r1", "r3"}, None) == (5, [1, 3])  # --only: the other shards would be empty
    assert launch.shard_plan(ids, {"r1", "r3"}, 2) == (2, [1])


SBATCH = """#!/bin/sh
# stands in for Slurm's sbatch: keeps the script it is given, answers like sbatch
cp "$1" "$FAKE_SLURM/script.sh"
echo "Submitted batch job 4242"
"""


@pytest.fixture
def fake_slurm(tmp_path, monkeypatch) -> Path:
    """sbatch and srun on PATH: submitit talks to Slurm through these commands, so the test ends there."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name, text in (("sbatch", SBATCH), ("srun", "#!/bin/sh\nexit 1\n")):
        (bin_dir / name).write_text(text)
        (bin_dir / name).chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")
    monkeypatch.setenv("FAKE_SLURM", str(tmp_path))
    return tmp_path / "script.sh"


def test_slurm_submits_one_array_of_shard_tasks(tmp_path, fake_slurm):
    write_experiment(tmp_path, matrix=MATRIX)
    result = invoke(tmp_path, "--launcher", "slurm", "--only", "grpo_rm", "--nproc", "2", "-o", "train.epochs=2",
                    "--slurm", "partition=gpu", "--slurm", "cpus_per_task=10", "--slurm", "time=120",
                    "--slurm", "account=lab", "--slurm", "qos=high", "--slurm", "array_parallelism=1",
                    "--slurm", "extra.reservation=mine", "--slurm", "setup=[module load cuda]")
    assert result.exit_code == 0, result.output
    assert "2 run(s) in 2 slurm task(s) (shards of 4); logs under grporm-results/logs/tiny/" in result.output
    assert "5 thread(s) per process" in result.output  # cpus_per_task 10 over --nproc 2
    assert "job 4242_0  --shard 2/4" in result.output and "job 4242_1  --shard 3/4" in result.output
    script = fake_slurm.read_text()
    for line in ("--partition=gpu", "--gpus-per-task=2", "--cpus-per-task=10", "--time=120", "--account=lab",
                 "--qos=high", "--reservation=mine", "--job-name=grporm-tiny", "--array=0-1%1",
                 "--output=" + str(tmp_path / RESULTS / "logs/tiny/%A_%a/%A_%a_0_log.out")):
        assert f"#SBATCH {line}" in script, (line, script)
    assert "module load cuda" in script
    pickled = sorted((tmp_path / RESULTS / "logs" / "tiny").glob("*/*_submitted.pkl"))
    tasks = [pickle.loads(p.read_bytes()) for p in pickled]
    assert [t.args for t in tasks] == [("2/4",), ("3/4",)]
    argv = tasks[0].function.argv
    assert argv[:4] == ["run", "exp.yaml", "-o", "train.epochs=2"] and argv[-2:] == ["--nproc", "2"]
    assert argv[argv.index("--only") + 1] == "grpo_rm" and "--shard" not in argv
    assert "train.threads=5" not in argv  # the runs set train.threads themselves: theirs is kept
    assert tasks[0].function.env == {"OMP_NUM_THREADS": "5"}
    assert [p.name for p in (tmp_path / RESULTS).iterdir()] == ["logs"]  # nothing ran here
    assert not [p for p in tmp_path.rglob("*") if "%" in p.name]  # no folder literally named %j


def test_slurm_without_slurm_is_one_line(tmp_path, monkeypatch):
    write_experiment(tmp_path, matrix=MATRIX)
    monkeypatch.setenv("PATH", str(tmp_path))  # no srun
    result = invoke(tmp_path, "--launcher", "slurm")
    assert result.exit_code == 2 and result.output.count("\n") == 1 and "--launcher local" in result.output, result.output


def test_launcher_errors_are_one_line(tmp_path):
    write_experiment(tmp_path, matrix=MATRIX)
    for args, message in ((["--launcher", "pbs"], "choose one of slurm, local"),
                          (["--slurm", "partition=gpu"], "--slurm needs --launcher"),
                          (["--launcher", "slurm", "--shard", "0/2"], "use --slurm tasks=N"),
                          (["--launcher", "slurm", "--slurm", "gpus=1"], "unknown option")):
        result = invoke(tmp_path, *args)
        assert result.exit_code == 2 and result.output.count("\n") == 1 and message in result.output, result.output
    assert not (tmp_path / RESULTS).exists() and not (tmp_path / "logs").exists()


@pytest.mark.slow  # two task processes, each importing torch and running two runs
def test_local_executor_runs_each_run_of_the_matrix_once(tmp_path, monkeypatch):
    write_experiment(tmp_path, matrix=MATRIX, train={"epochs": 1})
    for key, value in env().items():  # the tasks inherit this environment: one thread each
        monkeypatch.setenv(key, value)
    result = invoke(tmp_path, "--launcher", "local", "--slurm", "tasks=2")
    assert result.exit_code == 0, result.output
    assert "4 run(s) in 2 local task(s) (shards of 2); logs under grporm-results/logs/tiny/local-" in result.output
    assert "2 of 2 task(s) done" in result.output

    records = {p.parent.name: json.loads(p.read_text()) for p in (tmp_path / RESULTS / "tiny" / "runs").glob("*/record.json")}
    assert sorted(records) == RUN_IDS and all(r["status"] == "finished" and r["metrics"] for r in records.values())
    # shard I/2 holds runs I and I+2 of the matrix, done one after the other by the same task process
    matrix_order = [r.run_id for r in load_experiment(tmp_path / "exp.yaml").runs]
    pids = [records[run_id]["pid"] for run_id in matrix_order]
    assert pids[0] == pids[2] and pids[1] == pids[3] and pids[0] != pids[1]
    assert not list((tmp_path / RESULTS).glob("tiny/runs/*/.lock"))  # every lock released

    logs = sorted((tmp_path / RESULTS / "logs" / "tiny").glob("local-*/*_log.out"))
    assert len(logs) == 2 and all(f"job {p.name.split('_')[0]}  --shard" in result.output for p in logs)  # one log per job
    assert not [p for p in tmp_path.rglob("*") if "%" in p.name]  # no folder literally named %j
    assert not (tmp_path / "logs").exists()
    text = "".join(p.read_text() for p in logs)
    for run_id in RUN_IDS:  # each run started exactly once over both tasks
        assert len(re.findall(rf"^\[shard \d/2\] run \d of 2: {re.escape(run_id)}(  \(|$)", text, flags=re.M)) == 1, text


def test_threads_are_divided_between_the_tasks_of_a_machine():
    options = launch.parse_options([])
    assert launch.threads_per_process("local", options, tasks=2, nproc=1, cores=2) == 1
    assert launch.threads_per_process("local", options, tasks=3, nproc=1, cores=16) == 5
    assert launch.threads_per_process("local", options, tasks=2, nproc=2, cores=16) == 4
    assert launch.threads_per_process("local", options, tasks=8, nproc=1, cores=2) == 1  # never 0
    assert launch.threads_per_process("slurm", launch.parse_options(["cpus_per_task=8"]), tasks=50, nproc=2) == 4


def test_the_runs_get_the_divided_threads_unless_they_set_their_own(tmp_path, fake_slurm):
    write_experiment(tmp_path, matrix=MATRIX, train={"threads": None})
    result = invoke(tmp_path, "--launcher", "slurm", "--slurm", "cpus_per_task=6", "--slurm", "log_dir=elsewhere")
    assert result.exit_code == 0, result.output
    assert "logs under elsewhere/tiny/" in result.output
    task = pickle.loads(next((tmp_path / "elsewhere" / "tiny").glob("*/*_submitted.pkl")).read_bytes()).function
    assert task.argv[-2:] == ["-o", "train.threads=6"] and task.env == {"OMP_NUM_THREADS": "6"}
    assert not (tmp_path / RESULTS).exists()


def test_a_task_keeps_the_thread_count_its_environment_sets(tmp_path, monkeypatch):
    seen = {}

    class Child:
        def __init__(self, args, cwd, env):
            seen.update(env)

        def wait(self):
            return 0

    monkeypatch.setattr(launch.subprocess, "Popen", Child)
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    launch.ShardTask(["run", "x.yaml"], str(tmp_path), {"OMP_NUM_THREADS": "1"})("0/1")
    assert seen["OMP_NUM_THREADS"] == "3"
    monkeypatch.delenv("OMP_NUM_THREADS")
    launch.ShardTask(["run", "x.yaml"], str(tmp_path), {"OMP_NUM_THREADS": "1"})("0/1")
    assert seen["OMP_NUM_THREADS"] == "1"
