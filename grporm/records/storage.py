"""The local record of a run: JSON and CSV files, written atomically, under results/."""
from __future__ import annotations

import csv
import io
import json
import os
import platform
import subprocess
import sys
import tempfile
import threading
from datetime import datetime, timezone
from pathlib import Path
from typing import IO, Callable

from grporm.errors import GrpormError
from grporm.records.inputs import InputError, read_json


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def run_dir(results: Path, experiment: str, run_id: str) -> Path:
    """results/<experiment>/runs/<run_id>, refusing names that are not one plain folder name each.

    A lexical check: `..`, separators or an absolute name would leave the run's own folder (into
    another experiment or outside results/), while symlinked folders inside results/ stay allowed.
    """
    for name in (experiment, run_id):
        if name in ("", ".", "..") or "/" in name or "\\" in name or "\0" in name:
            raise GrpormError(f"run {experiment}/{run_id} would be written outside its folder in {results}; rename it")
    return results.resolve() / experiment / "runs" / run_id


def file_mode() -> int:
    """The mode a new file gets from the umask (0666 & ~umask): what `open()` would give it.

    Read from /proc (Linux) rather than by setting the umask and back, which would give any file
    another thread creates meanwhile the mode 0666."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return 0o666 & ~int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    with _UMASK_LOCK:
        mask = os.umask(0o022)
        os.umask(mask)
    return 0o666 & ~mask


_UMASK_LOCK = threading.Lock()


def write_atomic(path: Path, write: Callable[[IO], object], *, binary: bool = False,
                 previous: Path | None = None) -> None:
    """`write(handle)` into a temporary file in the same folder, synced, then renamed over `path`:
    the one writer of every file the suite writes (records, checkpoints, config hashes, reports,
    tables, figures, compare outputs; tests/test_bad_input.py checks no other write is left).

    Readers and a kill at any moment see the old file or the new one, never half of one. The rename
    replaces a symlink at `path` itself, never the file it points to (a planted link cannot make the
    suite overwrite a file elsewhere). The file gets the mode of the umask, as `open()` would give it
    (mkstemp's 0600 would hide records from others sharing a results folder). `previous`: keep the
    file being replaced under that name (the checkpoint fallback).
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, file_mode())
        with os.fdopen(fd, "wb") if binary else os.fdopen(fd, "w", encoding="utf-8") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        if previous is not None and (path.exists() or path.is_symlink()):
            os.replace(path, previous)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_text_atomic(path: Path, text: str) -> None:
    write_atomic(path, lambda handle: handle.write(text))


def write_bytes_atomic(path: Path, data: bytes) -> None:
    write_atomic(path, lambda handle: handle.write(data), binary=True)


def write_json(path: Path, data: dict) -> None:
    write_text_atomic(path, json.dumps(data, indent=2, sort_keys=False, default=str) + "\n")


def write_csv(path: Path, rows: list[dict]) -> None:
    columns: list[str] = []
    for row in rows:
        columns += [key for key in row if key not in columns]
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    write_text_atomic(path, buffer.getvalue())


# What every run record holds, whatever its status: the fields the runner and verify read back.
RECORD_FIELDS = {"run_id": str, "experiment": str, "status": str, "config_hash": str, "metrics": dict}


def read_record(path: Path, fields=RECORD_FIELDS, what: str = "run record", check=None) -> dict | None:
    """The JSON object at `path`, None if there is no file; unreadable, not JSON, or without the
    `fields` (key -> type) -> GrpormError naming it. `fields={}` reads any JSON object."""
    if not path.exists() and not path.is_symlink():
        return None
    try:
        return read_json(path, what, "delete it to rerun that run", fields, check)
    except InputError as err:
        raise GrpormError(f"{what} {path} is corrupted ({err.problem}); delete it to rerun that run") from None


def read_record_or_rerun(path: Path, fields=RECORD_FIELDS, check=None) -> dict | None:
    """The record, or None (so the run is redone) if it is unreadable, with a warning naming it.

    Records are written atomically, so a corrupted one was damaged from outside; an overnight matrix
    should redo that run rather than stop, and the rerun's record replaces it. `set_aside` keeps the
    damaged file for inspection before anything overwrites it.
    """
    try:
        return read_record(path, fields, check=check)
    except GrpormError as err:
        print(f"warning: {err}; the run will be redone (the damaged file is kept as {aside_name(path).name})",
              file=sys.stderr)
        return None


def aside_name(path: Path) -> Path:
    return path.with_name(path.name + ".corrupt")


def set_aside(path: Path, fields=RECORD_FIELDS) -> None:
    """Move an unreadable file out of the way (kept as NAME.corrupt) before a rerun replaces it."""
    try:
        read_record(path, fields)
    except GrpormError:
        os.replace(path, aside_name(path))


def peak_memory_mib() -> float:
    """This process's peak RSS so far, in MiB.

    Linux: VmHWM of /proc/self/status, the high-water mark of this process image. Not ru_maxrss:
    Linux carries the parent's peak across fork + exec into ru_maxrss, so a child started by a
    big process (a torchrun worker, a test's subprocess) would report the parent's peak.
    """
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    import resource

    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss / 2**20 if sys.platform == "darwin" else rss / 1024  # bytes on macOS, KiB on Linux


def environment() -> dict:
    import timm
    import torch

    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                                timeout=5, cwd=Path(__file__).parent).stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        commit = None
    cpu = platform.processor()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "python": sys.version.split()[0],
        "torch": torch.__version__,
        "timm": timm.__version__,
        "platform": platform.platform(),
        "cpu": cpu,
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "cuda": torch.cuda.get_device_name() if torch.cuda.is_available() else None,
        "git_commit": commit,
    }
