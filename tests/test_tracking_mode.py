"""W&B's mode: the environment (WANDB_MODE) wins over the file (tracking.mode), except that it never
turns on a disabled one; `online` without a reachable server falls back to offline after a short
wait instead of W&B's 90 s, in one line. No test here touches the network or waits more than a
fraction of a second: the probe's timeout is made tiny and wandb.init is a fake."""
from __future__ import annotations

import socket
import time

import pytest

from grporm.config import RunConfig
from grporm.tracking import tracker

from tiny_runs import invoke, record, write_experiment


@pytest.fixture(autouse=True)
def fresh(monkeypatch):
    monkeypatch.setattr(tracker, "_said", set())
    monkeypatch.setattr(tracker, "_unreachable", set())
    monkeypatch.setattr(tracker, "PROBE_SECONDS", 0.2)
    monkeypatch.delenv("WANDB_MODE", raising=False)


@pytest.mark.parametrize("env, file, expected", [
    (None, "online", ("online", "tracking.mode")),
    ("offline", "online", ("offline", "WANDB_MODE")),
    ("online", "offline", ("online", "WANDB_MODE")),
    ("disabled", "offline", ("disabled", "WANDB_MODE")),
    ("dryrun", "online", ("offline", "WANDB_MODE")),  # W&B's old name
    ("offline", "disabled", ("disabled", "tracking.mode")),  # the environment never turns tracking on
])
def test_the_environment_wins_over_the_file(monkeypatch, capsys, env, file, expected):
    if env is not None:
        monkeypatch.setenv("WANDB_MODE", env)
    assert tracker.resolve_mode(file) == expected
    said = capsys.readouterr().err
    if expected[1] == "WANDB_MODE" and expected[0] != file:
        assert said.count("\n") == 1 and f"WANDB_MODE={env}" in said and f"tracking.mode: {file}" in said
        tracker.resolve_mode(file)
        assert capsys.readouterr().err == ""  # said once per process, not once per run
    else:
        assert said == ""


class FakeRun:
    id, dir, url = "fake", ".", None

    def define_metric(self, *args, **kwargs):
        pass


def fake_init(calls, fail_online=False):
    def init(**kwargs):
        calls.append(kwargs)
        if fail_online and kwargs["mode"] == "online":
            raise TimeoutError("Run initialization has timed out")
        return FakeRun()
    return init


def test_online_without_a_reachable_server_falls_back_to_offline_quickly(monkeypatch, capsys):
    import wandb

    calls = []
    monkeypatch.setattr(wandb, "init", fake_init(calls))
    monkeypatch.setenv("WANDB_BASE_URL", "https://wandb.invalid")

    def hangs(*args, **kwargs):  # a name lookup or connection that answers too late
        time.sleep(3)
        raise socket.timeout("timed out")

    monkeypatch.setattr(socket, "create_connection", hangs)
    tic = time.perf_counter()
    run = tracker.Tracker(RunConfig(run_id="r", tracking={"mode": "online"}))
    assert time.perf_counter() - tic < 2
    assert [c["mode"] for c in calls] == ["offline"]
    assert run.info["mode"] == "offline" and "wandb.invalid not reachable within 0.2 s" in run.info["fallback"]
    said = capsys.readouterr().err.strip().splitlines()
    assert len(said) == 1 and "runs log offline instead" in said[0]
    tracker.Tracker(RunConfig(run_id="r2", tracking={"mode": "online"}))  # the next run: no second probe, no line
    assert capsys.readouterr().err == "" and [c["mode"] for c in calls] == ["offline", "offline"]


def test_a_refused_connection_falls_back_too(monkeypatch):
    with socket.socket() as server:  # a port nobody listens on: bound, never listening
        server.bind(("127.0.0.1", 0))
        port = server.getsockname()[1]
        assert not tracker.reachable(f"http://127.0.0.1:{port}", timeout=0.2)
        server.listen()
        assert tracker.reachable(f"http://127.0.0.1:{port}", timeout=0.2)


def test_online_that_fails_to_start_logs_offline_and_keeps_the_run(monkeypatch):
    import wandb

    calls = []
    monkeypatch.setattr(wandb, "init", fake_init(calls, fail_online=True))
    monkeypatch.setattr(tracker, "reachable", lambda url, timeout=0: True)
    run = tracker.Tracker(RunConfig(run_id="r", tracking={"mode": "online"}))
    assert [c["mode"] for c in calls] == ["online", "offline"]
    assert calls[0]["settings"].init_timeout == tracker.INIT_TIMEOUT  # bounded, not W&B's 90 s
    assert run.wb is not None and run.info["mode"] == "offline" and "TimeoutError" in run.info["fallback"]


def test_the_record_says_which_one_decided(tmp_path, monkeypatch):
    write_experiment(tmp_path, tracking={"mode": "offline"}, train={"epochs": 1})
    monkeypatch.setenv("WANDB_MODE", "disabled")
    result = invoke(tmp_path)
    assert result.exit_code == 0, result.output
    assert record(tmp_path)["wandb"] == {"mode": "disabled", "mode_from": "WANDB_MODE"}
    assert "W&B: mode disabled from the environment variable WANDB_MODE=disabled" in result.stderr
    assert not (tmp_path / "wandb").exists()
