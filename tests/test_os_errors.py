"""An operating-system error anywhere in `run`, `tune`, `report` or `verify` (a name too long, a
full disk, a read-only or immutable folder, a file in the way) is one line naming the path and the
fix, a non-zero exit, no traceback, and no half-written file: the CLI's root turns it into a line
(grporm/cli.py, OneLineErrors), the writers are atomic (grporm/records/storage.py, write_atomic)."""
from __future__ import annotations

import errno
import os

import pytest
from typer.testing import CliRunner

import grporm.plan.matrix
import grporm.records.storage
import grporm.records.verify
from grporm.cli import app

from tiny_runs import RESULTS, invoke, run_folder, write_experiment


def one_line(result, *fragments) -> str:
    errors = result.stderr.strip().splitlines()
    assert result.exit_code == 2, result.output
    assert len(errors) == 1 and errors[0].startswith("error: "), result.stderr
    assert "Traceback" not in result.output
    for fragment in fragments:
        assert fragment in errors[0], (fragment, errors[0])
    return errors[0]


def temporary_files(folder):
    return [p for p in folder.rglob("*") if p.name.endswith(".tmp")]


@pytest.mark.parametrize("code, problem", [(errno.ENOSPC, "no space left on the device"),
                                           (errno.EROFS, "read-only file system"),
                                           (errno.EPERM, "immutable"),
                                           (errno.EDQUOT, "disk quota exceeded")])
def test_a_write_the_system_refuses_is_one_line_and_leaves_no_half_written_file(tmp_path, monkeypatch, code, problem):
    def refused(fd):
        raise OSError(code, os.strerror(code), "/the/disk")

    monkeypatch.setattr(grporm.records.storage.os, "fsync", refused)  # the record's first write, after its bytes went out
    write_experiment(tmp_path)
    result = invoke(tmp_path)
    one_line(result, problem, "/the/disk")
    assert not (run_folder(tmp_path) / "record.json").exists() and temporary_files(tmp_path) == []
    assert not (run_folder(tmp_path) / ".lock").exists()


def test_a_file_where_the_run_folder_goes_is_one_line_naming_it(tmp_path):
    write_experiment(tmp_path)
    (tmp_path / RESULTS).mkdir()
    (tmp_path / RESULTS / "tiny").write_text("in the way")
    result = invoke(tmp_path)
    one_line(result, str(tmp_path / RESULTS / "tiny"), "a part of the path is a file")
    assert sorted(p.name for p in (tmp_path / RESULTS).iterdir()) == ["tiny"]


@pytest.mark.parametrize("command, patched", [("run", "run_matrix"), ("tune", "tune_matrix")])
def test_a_name_too_long_anywhere_in_run_or_tune_is_one_line(tmp_path, monkeypatch, command, patched):
    long = tmp_path / ("a" * 300)

    def too_long(*args, **kwargs):
        raise OSError(errno.ENAMETOOLONG, "File name too long", str(long))

    monkeypatch.setattr(grporm.plan.matrix, patched, too_long)
    write_experiment(tmp_path, tune={"grid": [1e-4, 1e-3, 1e-2]}, seed=2)
    one_line(invoke(tmp_path, command=command), str(long), "too long", "shorten the experiment name")


def test_report_with_a_file_in_the_way_of_its_folder_is_one_line(tmp_path):
    write_experiment(tmp_path, train={"epochs": 1})
    assert invoke(tmp_path).exit_code == 0
    (tmp_path / RESULTS / "tables").write_text("in the way")
    result = CliRunner().invoke(app, ["report", "--results", str(tmp_path / RESULTS)])
    one_line(result, str(tmp_path / RESULTS / "tables"))


def test_verify_meeting_an_os_error_is_one_line(tmp_path, monkeypatch):
    def denied(*args, **kwargs):
        raise PermissionError(errno.EACCES, "Permission denied", "/committed/record.json")

    monkeypatch.setattr(grporm.records.verify, "verify", denied)
    result = CliRunner().invoke(app, ["verify", str(tmp_path)])
    one_line(result, "/committed/record.json", "permission denied", "chattr -i")


def test_the_guard_does_not_swallow_other_errors(tmp_path, monkeypatch):
    def bug(*args, **kwargs):
        raise ZeroDivisionError("a bug")

    monkeypatch.setattr(grporm.plan.matrix, "run_matrix", bug)
    write_experiment(tmp_path)
    result = invoke(tmp_path)
    assert isinstance(result.exception, ZeroDivisionError)  # a bug stays a traceback
