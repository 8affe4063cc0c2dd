"""Sharded matrices and run locks: disjoint shards, one process per run, stale locks taken over."""
from __future__ import annotations

import json
import os
import socket
import subprocess
import time

import pytest

from grporm.errors import ConfigError
from grporm.plan.experiment import build_experiment
from grporm.plan.matrix import select_runs
from grporm.process.locks import CLAIMED, DONE, Locked, RunLock, claim

from tiny_runs import RESULTS, RUN_ID, invoke, record, run_folder, write_experiment

MATRIX = {"matrix": {"method": ["ce", "grpo_rm"], "seed": [0, 1, 2]}}


def ids(runs):
    return [r.run_id for r in runs]


def test_shards_are_disjoint_cover_the_matrix_and_are_deterministic():
    runs = build_experiment(MATRIX, "x.yaml").runs
    for count in (1, 2, 4, 7):
        shards = [ids(select_runs(runs, None, f"{i}/{count}")) for i in range(count)]
        assert sorted(sum(shards, [])) == sorted(ids(runs))  # every run in exactly one shard
        assert shards == [ids(select_runs(build_experiment(MATRIX, "x.yaml").runs, None, f"{i}/{count}"))
                          for i in range(count)]
    assert ids(select_runs(runs, None, "1/2")) == ids(runs)[1::2]  # round-robin in matrix order
    assert ids(select_runs(runs, "grpo_rm", "0/2")) == [i for i in ids(runs)[0::2] if "grpo_rm" in i]


@pytest.mark.parametrize("text", ["2/2", "-1/2", "1", "a/b", "0/0"])
def test_bad_shard_is_one_line_exit_2(tmp_path, text):
    write_experiment(tmp_path)
    result = invoke(tmp_path, "--shard", text)
    assert result.exit_code == 2
    assert result.output.strip().splitlines() == [f"error: --shard {text!r}: write it as I/N with 0 <= I < N, "
                                                  "e.g. --shard 0/4 ... --shard 3/4"]
    assert not (tmp_path / RESULTS).exists()


def test_dry_run_lists_only_the_shard(tmp_path):
    write_experiment(tmp_path, matrix={"seed": [0, 1, 2]})
    result = invoke(tmp_path, "--dry-run", "--shard", "1/2")
    assert result.exit_code == 0, result.output
    assert "tiny: 1 run(s)" in result.output and "-s1 " in result.output


def holder(path, pid, host=None, age=0.0):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"pid": pid, "host": host or socket.gethostname(), "time": "then", "token": "other"}))
    os.utime(path, (time.time() - age, time.time() - age))


@pytest.fixture
def live_pid():
    proc = subprocess.Popen(["sleep", "60"])
    yield proc.pid
    proc.kill()
    proc.wait()


def dead_pid():
    proc = subprocess.Popen(["true"])
    proc.wait()
    return proc.pid


def test_lock_is_exclusive_and_names_its_holder(tmp_path):
    path = tmp_path / ".lock"
    with RunLock(path) as first:
        content = json.loads(path.read_text())
        assert content["pid"] == os.getpid() and content["host"] == socket.gethostname()
        with pytest.raises(Locked, match=f"locked by pid {os.getpid()} on {socket.gethostname()}"):
            RunLock(path).acquire()
        assert first.token == content["token"]
    assert not path.exists()


def test_stale_locks_are_taken_over_with_a_warning_and_live_ones_respected(tmp_path, live_pid, capsys):
    path = tmp_path / ".lock"
    holder(path, live_pid)
    with pytest.raises(Locked):
        RunLock(path).acquire()  # a live process on this host
    holder(path, live_pid, host="elsewhere", age=30)
    with pytest.raises(Locked):
        RunLock(path, stale_seconds=60).acquire()  # another host, recent heartbeat

    holder(path, dead_pid())
    RunLock(path).acquire()
    assert "is gone" in capsys.readouterr().err
    holder(path, live_pid, host="elsewhere", age=120)
    RunLock(path, stale_seconds=60).acquire()
    assert "no heartbeat for 120 s" in capsys.readouterr().err


def test_a_live_holder_on_this_host_keeps_its_lock_whatever_the_stale_limit(tmp_path, live_pid):
    path = tmp_path / ".lock"
    holder(path, live_pid, age=3600)  # an hour without heartbeat: a suspended process, still alive
    for stale_seconds in (0, 60):
        with pytest.raises(Locked, match=f"locked by pid {live_pid}"):
            RunLock(path, stale_seconds=stale_seconds).acquire()
    assert json.loads(path.read_text())["pid"] == live_pid


def test_claim_skips_done_work_and_rechecks_after_taking_the_lock(tmp_path, live_pid):
    path = tmp_path / ".lock"
    assert claim(RunLock(path), lambda: True) == DONE and not path.exists()
    lock = RunLock(path)
    assert claim(lock, lambda: False) == CLAIMED and path.exists()
    assert claim(RunLock(path), lambda: False).startswith("locked by pid")
    lock.release()
    answers = iter([False, True])  # finished by the previous holder while we took the lock
    assert claim(RunLock(path), lambda: next(answers)) == DONE and not path.exists()


def test_heartbeat_keeps_a_long_run_lock_fresh_and_a_taken_over_lock_is_not_removed(tmp_path):
    path = tmp_path / ".lock"
    lock = RunLock(path, stale_seconds=0.4, heartbeat=0.05)
    lock.acquire()
    time.sleep(0.8)  # twice the stale limit: only the heartbeat keeps it alive
    with pytest.raises(Locked):
        RunLock(path, stale_seconds=0.4).acquire()
    lock.release()
    holder(path, 1, host="elsewhere")  # someone else's lock now
    lock.release()
    assert path.exists()


@pytest.mark.parametrize("stale", [False, True])
def test_racing_for_a_lock_or_a_stale_lock_has_exactly_one_winner(tmp_path, monkeypatch, stale):
    """Six contenders at once, each pausing for a different time between reading the lock and acting
    on it: the window in which an unguarded takeover deletes a lock another contender has just taken."""
    import threading

    import grporm.process.locks

    read = grporm.process.locks._read

    def slow_read(path):
        holder = read(path)
        name = threading.current_thread().name
        time.sleep(0.02 * int(name) if name.isdigit() else 0)
        return holder

    monkeypatch.setattr(grporm.process.locks, "_read", slow_read)
    path = tmp_path / ".lock"
    if stale:
        holder(path, dead_pid())
    start, outcomes, locks = threading.Barrier(6), [], []

    def contend():
        lock = RunLock(path, stale_seconds=3600)
        start.wait()
        try:
            lock.acquire()
            locks.append(lock)
            outcomes.append("won")
        except Locked:
            outcomes.append("lost")

    threads = [threading.Thread(target=contend, name=str(i)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for lock in locks:
        lock.release()
    assert sorted(outcomes) == ["lost"] * 5 + ["won"]


def test_a_run_locked_by_a_live_process_is_skipped_with_a_message(tmp_path, live_pid):
    write_experiment(tmp_path)
    holder(run_folder(tmp_path) / ".lock", live_pid)
    result = invoke(tmp_path)
    assert result.exit_code == 0, result.output
    assert f"{RUN_ID}: skipped, locked by pid {live_pid}" in result.output
    assert not (run_folder(tmp_path) / "record.json").exists()
    assert not (tmp_path / RESULTS / "checkpoints").exists()


@pytest.mark.slow
def test_stale_lock_minutes_are_configurable(tmp_path, live_pid):
    write_experiment(tmp_path, train={"epochs": 1})
    holder(run_folder(tmp_path) / ".lock", live_pid, host="elsewhere", age=90)
    assert "skipped, locked" in invoke(tmp_path).output  # default: 10 minutes
    result = invoke(tmp_path, "--stale-lock", "1")
    assert result.exit_code == 0, result.output
    assert "taking over the stale lock" in result.stderr and record(tmp_path)["status"] == "finished"


def test_shard_flag_is_parsed_strictly():
    with pytest.raises(ConfigError):
        select_runs(build_experiment({}, "x.yaml").runs, None, "0/1/2")
