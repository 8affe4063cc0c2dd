"""One process per run: a lock file in the run's results folder, created with O_CREAT | O_EXCL.

The file holds {pid, host, time, token}; a daemon thread touches it every `heartbeat` seconds while
the run lasts. On this host the holder's pid decides: a live holder's lock is never taken, whatever
its heartbeat's age (a suspended or busy process is still running the run), a gone holder's is
stale at once. A holder on another host cannot be asked: its lock is stale when its heartbeat is
older than `stale_seconds` (a dead or unreachable machine). Breaking a stale lock happens under a short-lived `.breaking` guard, also
O_EXCL, so two processes judging the same lock stale cannot both win: the loser either finds the
lock gone and loses the O_EXCL race, or finds a fresh lock and backs off.
"""
from __future__ import annotations

import json
import os
import socket
import sys
import threading
import time
import uuid
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

DEFAULT_STALE_SECONDS = 600.0
BREAKING_STALE_SECONDS = 60.0  # a takeover takes milliseconds; an older guard was left by a killed process


class Locked(Exception):
    """Another live process holds the run."""


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, owned by someone else
        return True
    return True


def _read(path: Path) -> dict | None:
    try:
        holder = json.loads(path.read_text())
    except (OSError, ValueError):
        return None  # gone, or its creator has not written it yet
    return holder if isinstance(holder, dict) else None


def _age(path: Path) -> float | None:
    try:
        return time.time() - path.stat().st_mtime
    except FileNotFoundError:
        return None


def _create_exclusive(path: Path, text: str) -> bool:
    try:
        fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666)  # the umask decides, as for every file
    except FileExistsError:
        return False
    with os.fdopen(fd, "w") as handle:
        handle.write(text)
    return True


def describe(holder: dict | None) -> str:
    if holder is None:
        return "a process that is still creating the lock"
    return f"pid {holder.get('pid')} on {holder.get('host')} since {holder.get('time')}"


class RunLock:
    """`with RunLock(path): ...` holds the lock for the block, or raises `Locked` naming the holder."""

    def __init__(self, path: Path, stale_seconds: float = DEFAULT_STALE_SECONDS, heartbeat: float | None = None):
        self.path = path
        self.stale_seconds = stale_seconds
        self.heartbeat = heartbeat if heartbeat is not None else max(0.05, min(30.0, stale_seconds / 4))
        self.token = uuid.uuid4().hex
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def stale_reason(self, holder: dict | None) -> str | None:
        age = _age(self.path)
        if age is None:
            return None  # released meanwhile: the next O_EXCL attempt decides
        if holder is not None and holder.get("host") == socket.gethostname() and isinstance(holder.get("pid"), int):
            return None if _pid_alive(holder["pid"]) else f"its process {holder['pid']} on this host is gone"
        if age > self.stale_seconds:
            return f"no heartbeat for {age:.0f} s (limit {self.stale_seconds:.0f} s)"
        return None

    def acquire(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        me = json.dumps({"pid": os.getpid(), "host": socket.gethostname(),
                         "time": datetime.now(timezone.utc).isoformat(timespec="seconds"), "token": self.token})
        for _ in range(3):
            if _create_exclusive(self.path, me):
                self._start_heartbeat()
                return
            holder = _read(self.path)
            reason = self.stale_reason(holder)
            if reason is None:
                raise Locked(f"locked by {describe(holder)} ({self.path})")
            self._break(holder, reason)
        raise Locked(f"lock {self.path} keeps changing hands; another process is taking it")

    def _break(self, judged: dict | None, reason: str) -> None:
        """Remove the lock we judged stale, unless it changed hands meanwhile."""
        guard = self.path.with_name(self.path.name + ".breaking")
        if (_age(guard) or 0.0) > BREAKING_STALE_SECONDS:
            guard.unlink(missing_ok=True)
        if not _create_exclusive(guard, self.token):
            return  # another process is breaking it; the next O_EXCL attempt decides
        try:
            current = _read(self.path)
            if current == judged and self.stale_reason(current) is not None:
                print(f"warning: taking over the stale lock {self.path} of {describe(judged)}: {reason}",
                      file=sys.stderr)
                self.path.unlink(missing_ok=True)
        finally:
            guard.unlink(missing_ok=True)

    def _start_heartbeat(self) -> None:
        def beat() -> None:
            while not self._stop.wait(self.heartbeat):
                try:
                    os.utime(self.path)
                except OSError:
                    return

        self._thread = threading.Thread(target=beat, name=f"lock {self.path.parent.name}", daemon=True)
        self._thread.start()

    def release(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        holder = _read(self.path)
        if holder is not None and holder.get("token") == self.token:  # never remove a lock taken over from us
            self.path.unlink(missing_ok=True)

    def __enter__(self) -> "RunLock":
        self.acquire()
        return self

    def __exit__(self, *exc) -> None:
        self.release()


# What `claim` found: the work done already, or the lock now held; anything else is why neither.
DONE, CLAIMED = "done", "claimed"


def claim(lock: RunLock, done: Callable[[], bool]) -> str:
    """DONE if `done()`; else CLAIMED with `lock` held, unless `done()` turned true while we waited
    for it (the lock's previous holder finished the work: DONE, lock released); else why the lock
    could not be taken ("locked by ..."). One process does each piece of work, and none redoes it."""
    if done():
        return DONE
    try:
        lock.acquire()
    except Locked as err:
        return str(err)
    if done():
        lock.release()
        return DONE
    return CLAIMED


def is_held(path: Path, stale_seconds: float = DEFAULT_STALE_SECONDS) -> bool:
    """Is the lock at `path` held by a live process (one `RunLock.acquire` would not take over)? For a
    process that waits for others' work without claiming it."""
    if not path.exists():
        return False
    return RunLock(path, stale_seconds).stale_reason(_read(path)) is None and path.exists()
