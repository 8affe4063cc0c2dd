"""Stopping on SIGINT/SIGTERM: the stop request the training loop polls at each step boundary
(`STOP`), the signal handlers that set it, and the `Interrupted` error a stopped run or matrix ends
with. Its own module so that the matrix, the runner and the CLI reach it without the training loop."""
from __future__ import annotations

import os
import signal
import sys
import threading
from contextlib import contextmanager


class Interrupted(Exception):
    """SIGINT or SIGTERM stopped training; a checkpoint was written if the fit had a checkpoint path."""

    def __init__(self, signum: int, message: str):
        super().__init__(message)
        self.signum = signum
        self.exit_code = 128 + signum  # the shell convention: 130 for SIGINT, 143 for SIGTERM


class StopRequest:
    """SIGINT/SIGTERM ask the loop to checkpoint at the next step boundary and stop.

    A third signal stops at once: under torchrun a terminal's Ctrl-C reaches each worker twice
    (directly, then forwarded as SIGTERM), so a second one cannot mean "hurry up".
    """

    def __init__(self) -> None:
        self.signum: int | None = None
        self.count = 0
        self.deferring = False  # only a training step can wait for its boundary

    @contextmanager
    def training(self):
        self.deferring = True
        try:
            yield
        finally:
            self.deferring = False

    @property
    def requested(self) -> bool:
        return self.signum is not None

    def _handle(self, signum, _frame) -> None:
        if not self.deferring:  # evaluation, data loading: nothing to checkpoint, stop now
            raise Interrupted(signum, f"{signal.Signals(signum).name} outside training; the last checkpoint is kept")
        self.count += 1
        if self.count >= 3:
            raise KeyboardInterrupt
        if self.signum is None:
            self.signum = signum
            if os.environ.get("RANK", "0") == "0":  # under torchrun, one message for all ranks
                print(f"\n{signal.Signals(signum).name} received: saving a checkpoint at the next training step, "
                      "then stopping (send it twice more to stop at once)", file=sys.stderr, flush=True)

    def deferring_over(self, steps):
        """Iterate the steps of an epoch with signals deferred to the next step boundary."""
        with self.training():
            yield from steps

    @contextmanager
    def installed(self):
        if threading.current_thread() is not threading.main_thread():  # signal handlers live there only
            yield self
            return
        previous = {s: signal.signal(s, self._handle) for s in (signal.SIGINT, signal.SIGTERM)}
        try:
            yield self
        finally:
            for s, handler in previous.items():
                signal.signal(s, handler)
            self.signum, self.count = None, 0


STOP = StopRequest()
