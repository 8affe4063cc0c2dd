"""What a long command shows while it works.

* One live bar per process (tqdm), reused by every fit the process makes: what trains (the run's id,
  or the tuning candidate), images seen, images/s, the fit's own ETA and, while a matrix runs, the
  ETA of everything this process has left of it (`matrix ETA`). It is drawn only when stdout and
  stderr are terminals; in a log or CI nothing but plain lines is written.
* One plain line per finished unit (an epoch, a run, a tuning candidate, a report stage) with the
  time spent and an estimate of the time left, written through tqdm so it lands above a live bar.
* Every line and the bar of a shard (`grporm run --shard I/N`) start with `[shard I/N]`, so two
  shards printing to one terminal or log can be told apart.

Nothing here goes into a run record, and nothing here changes what a run computes. The estimates
extrapolate from the units done in this process only: a resumed run or a matrix with finished runs
skipped does not count the work it did not do.
"""
from __future__ import annotations

import sys
import time
from typing import Callable

from tqdm.auto import tqdm

from grporm.records.schema import HEADLINE_KNN, MIOU

Say = Callable[[str], None]


def write(line: str) -> None:
    tqdm.write(f"{PROCESS.tag}{line}")


def shard_tag(shard: str | None) -> str:
    """`[shard 0/2] ` for `--shard 0/2` (as the user wrote it, spaces dropped), '' without one."""
    return f"[shard {''.join(shard.split())}] " if shard else ""


def tagged(say: Callable[..., None]) -> Callable[..., None]:
    """`say` with this process's shard tag in front of each line."""
    def tagged_say(line: str = "", *args, **kwargs) -> None:
        say(f"{PROCESS.tag}{line}" if PROCESS.tag and str(line).strip() else line, *args, **kwargs)

    return tagged_say


def terminal() -> bool:
    """Draw live bars? Only when both streams are terminals: a bar in a log file is noise."""
    return all(getattr(stream, "isatty", lambda: False)() for stream in (sys.stdout, sys.stderr))


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


def _mean(steps: list[dict], key: str) -> float | None:
    values = [s[key] for s in steps if isinstance(s.get(key), (int, float))]
    return sum(values) / len(values) if values else None


def training_summary(row: dict, steps: list[dict] = ()) -> list[str]:
    """What the epoch's training did, in words a reader can follow. GRPO-RM's loss is no such thing:
    its surrogate is the advantage-weighted policy ratio, and the advantages of a query's group are
    centred on zero with the ratio 1 at the rollout, so the printed value is ~0 whatever the model
    learns. For a GRPO-RM epoch (its logged steps carry `reward_mean`) the line shows instead the mean
    reward, the mean probability of the true class pi(y) and the clip fraction over the epoch's logged
    steps (every train.log_every-th and the last; the values the run records in steps.csv)."""
    reward = _mean(steps, "reward_mean")
    if reward is not None:
        parts = [f"reward {reward:.3f}"]
        if (pi_y := _mean(steps, "pi_y")) is not None:
            parts.append(f"pi(y) {pi_y:.3f}")
        if (clip := _mean(steps, "clip_frac")) is not None:
            parts.append(f"clip {_percent(clip)}")
        return parts
    return [f"loss {row['train_loss']:.4f}"] if "train_loss" in row else []


def epoch_line(epoch: int, epochs: int, row: dict, elapsed: float, eta: str | None, steps: list[dict] = ()) -> str:
    """`epoch 3/10  loss 0.4123  val kNN@20 81.2%  elapsed 1m02s  ETA 2m25s` (GRPO-RM: `reward 0.812
    pi(y) 0.734  clip 1.2%` in place of the loss, see training_summary; the probe's value, when the fit
    has one: kNN@20 for classification, mIoU for segmentation)."""
    parts = [f"epoch {epoch}/{epochs}", *training_summary(row, steps)]
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

    def epoch_done(self, row: dict, steps: list[dict] = ()) -> None:
        """`steps`: the epoch's logged steps (for GRPO-RM's summary)."""
        if not self.enabled:
            return
        epoch = int(row["epoch"])
        elapsed = time.perf_counter() - self.tic  # training and the epoch's probe: what the wait is made of
        eta = time_left(elapsed, epoch - self.start_epoch, self.epochs - epoch)
        self.say(f"{self.desc}: {epoch_line(epoch, self.epochs, row, elapsed, eta, steps)}")


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

    def seconds_after(self, i: int, current: float) -> float:
        """Seconds the units after unit `i` will take: the mean unit of this process, or while none is
        done, `current` (the estimated length of unit `i` itself) each."""
        per_unit = self.seconds / self.worked if self.worked else current
        return per_unit * max(0, self.total - i)


class ProcessProgress:
    """This process's live bar and shard tag (see the module's docstring): one per process, PROCESS."""

    def __init__(self):
        self.tag = ""
        self.bar = None
        self.matrix: Countdown | None = None
        self.unit = 0  # the unit of `matrix` now running (1-based)
        self.fit_tic = 0.0

    def begin_matrix(self, countdown: Countdown, shard: str | None = None) -> None:
        self.matrix, self.tag = countdown, shard_tag(shard)

    def end_matrix(self) -> None:
        self.close()
        self.matrix, self.unit, self.tag = None, 0, ""

    def start_fit(self, desc: str, total: int, done: int = 0, enabled: bool = True) -> None:
        """A fit of `total` images (`done` of them before a resume) starts: the bar shows it."""
        self.close()
        if not enabled or not terminal():
            return
        self.fit_tic = time.perf_counter()
        self.bar = tqdm(total=total, initial=done, desc=f"{self.tag}{desc}", unit="img", unit_scale=total >= 10_000,
                        dynamic_ncols=True, leave=False, file=sys.stderr,
                        bar_format="{desc}: {percentage:3.0f}%|{bar}| {n_fmt}/{total_fmt} [{elapsed}<{remaining}, "
                                   "{rate_fmt}{postfix}]")

    def advance(self, images: int) -> None:
        if self.bar is None:
            return
        self.bar.update(images)
        if self.matrix is not None and self.unit:
            elapsed = time.perf_counter() - self.fit_tic
            rate = (self.bar.n - self.bar.initial) / elapsed if elapsed > 0 else 0
            left = (self.bar.total - self.bar.n) / rate if rate else None
            if left is not None and self.matrix.tic is not None:
                this_run = time.perf_counter() - self.matrix.tic + left
                self.bar.set_postfix_str(f"matrix ETA {duration(left + self.matrix.seconds_after(self.unit, this_run))}",
                                         refresh=False)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


PROCESS = ProcessProgress()


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
