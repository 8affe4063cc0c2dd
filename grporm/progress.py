"""What a long command shows while it works: one plain line per finished unit (an epoch, a run, a
tuning candidate, a report stage) with the time spent and an estimate of the time left. Bars (tqdm)
only draw when stdout is a terminal (tqdm's `disable=None`); the lines are written in both cases,
through tqdm so they land above a live bar. Nothing here goes into a run record.

The estimates extrapolate from the units done in this process only: a resumed run or a matrix
with finished runs skipped does not count the work it did not do.
"""
from __future__ import annotations

import time
from typing import Callable

from tqdm.auto import tqdm

from grporm.record_schema import HEADLINE_KNN, MIOU

Say = Callable[[str], None]


def write(line: str) -> None:
    tqdm.write(line)


def duration(seconds: float) -> str:
    """12s, 3m05s, 1h02m: short, and as precise as an estimate deserves."""
    seconds = max(0, int(round(seconds)))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


def time_left(elapsed: float, done: int, remaining: int) -> str | None:
    """The mean time of the `done` units times the `remaining` ones; None before any is done."""
    return duration(elapsed / done * remaining) if done > 0 else None


def _percent(value) -> str:
    return f"{100 * value:.1f}%" if isinstance(value, (int, float)) else "-"


def epoch_line(epoch: int, epochs: int, row: dict, elapsed: float, eta: str | None) -> str:
    """`epoch 3/10  loss 0.4123  val kNN@20 81.2%  elapsed 1m02s  ETA 2m25s` (the probe's value, when
    the fit has one: kNN@20 for classification, mIoU for segmentation)."""
    parts = [f"epoch {epoch}/{epochs}"]
    if "train_loss" in row:
        parts.append(f"loss {row['train_loss']:.4f}")
    if HEADLINE_KNN in row:
        parts.append(f"val kNN@20 {_percent(row[HEADLINE_KNN])}")
    elif f"val_{MIOU}" in row:
        parts.append(f"val mIoU {_percent(row[f'val_{MIOU}'])}")
    parts.append(f"elapsed {duration(elapsed)}")
    parts.append(f"ETA {eta if eta is not None else '-'}")
    return "  ".join(parts)


class EpochClock:
    """One line per finished epoch of a fit; `enabled=False` (DDP ranks but 0) says nothing."""

    def __init__(self, desc: str, epochs: int, start_epoch: int, enabled: bool = True, say: Say = write):
        self.desc, self.epochs, self.start_epoch, self.enabled, self.say = desc, epochs, start_epoch, enabled, say
        self.tic = time.perf_counter()

    def epoch_done(self, row: dict) -> None:
        if not self.enabled:
            return
        epoch = int(row["epoch"])
        elapsed = time.perf_counter() - self.tic  # training and the epoch's probe: what the wait is made of
        eta = time_left(elapsed, epoch - self.start_epoch, self.epochs - epoch)
        self.say(f"{self.desc}: {epoch_line(epoch, self.epochs, row, elapsed, eta)}")


class Countdown:
    """`run 3 of 12 ... estimated time left` over a list of units of which some may be skipped: only the
    units that did work (`done(worked=True)`) time the estimate."""

    def __init__(self, total: int, noun: str = "run"):
        self.total, self.noun = total, noun
        self.worked = 0
        self.seconds = 0.0
        self.tic: float | None = None

    def start(self, i: int, what: str) -> str:
        """The line that opens unit `i` (1-based)."""
        self.tic = time.perf_counter()
        left = time_left(self.seconds, self.worked, self.total - i + 1)
        timing = f"  ({self.worked} done in {duration(self.seconds)}, estimated time left {left})" if left else ""
        return f"{self.noun} {i} of {self.total}: {what}{timing}"

    def done(self, worked: bool = True) -> None:
        if worked and self.tic is not None:
            self.worked += 1
            self.seconds += time.perf_counter() - self.tic
        self.tic = None


class Stages:
    """What a command with silent stretches (`grporm report`) is doing: one line per stage, with the
    time since the command started."""

    def __init__(self, say: Say | None = None):
        self.say = say or write
        self.tic = time.perf_counter()

    def __call__(self, what: str) -> None:
        self.say(f"[{duration(time.perf_counter() - self.tic)}] {what}")


def quiet(_: str) -> None:
    """A `Say` that says nothing (library calls, tests)."""
