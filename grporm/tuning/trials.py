"""The learning rate of a run: the decision of its setting's tuning (grporm/tuning/decisions.py rules;
docs/method.md, 'Tuning rules'), made once per setting and kept."""
from __future__ import annotations

import socket
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Callable

from grporm.config import RunConfig
from grporm.errors import GrpormError, TrainingDiverged
from grporm.process import seeding
from grporm.process.distributed import SINGLE, Dist
from grporm.process.locks import CLAIMED, DEFAULT_STALE_SECONDS, DONE, RunLock, claim
from grporm.records.storage import environment, now, write_json
from grporm.tracking.progress import Countdown, write
from grporm.training.build import set_up
from grporm.tuning.decisions import (
    decide,
    decision_record,
    decision_summary,
    label,
    lock_path,
    partial_path,
    read_decision,
    read_partial,
    record_path,
    tuning_config,
    tuning_epochs,
    tuning_key,
)


class TuningTrial:
    """The tuning of one setting at one tuning seed: its config at that seed (which draws its own data
    unless the data section pins a split seed), trained for the tuning epochs from the same initial
    weights at each candidate lr, on that seed's training split, scored on its validation split."""

    def __init__(self, run: RunConfig, seed: int, dist: Dist = SINGLE, splits=None):
        self.cfg, self.dist = tuning_config(run, seed), dist
        self.device = dist.device(run.train.device)
        ready = set_up(self.cfg, self.device, dist, splits=splits, desc=f"tune s{seed}")
        self.built, self.extractor, self.trainer = ready.built, ready.extractor, ready.trainer

    def score(self, lr: float) -> float | None:
        """The validation score after training at `lr`; None if training diverged."""
        cfg, built = self.cfg, self.built
        built.reset()
        try:
            self.trainer.fit(lr, desc=f"tune {lr:g} s{cfg.seed}")
        except TrainingDiverged:
            return None
        return built.task.val_score(self.extractor, built.splits, cfg.eval, cfg.tune.score)


def lends_splits(run: RunConfig) -> bool:
    """Do `run`'s own splits serve one of its tuning seeds (that seed draws the same data)?"""
    return seeding.split_seed(run) in {seeding.split_seed(tuning_config(run, s)) for s in run.tune.seeds}


def decision_for(run: RunConfig, results: Path, dist: Dist = SINGLE, *, splits=None, force: bool = False,
                 wait: bool = True, stale_seconds: float = DEFAULT_STALE_SECONDS, poll_seconds: float = 10.0,
                 echo: Callable[..., None] = write) -> tuple[dict | None, str]:
    """(the tuning record of `run`'s setting, how it was got: "found" | "tuned" | why not).

    One process per key computes it, under the key's lock; another one needing it waits (`wait`) or
    gets (None, "skipped, locked by ...")."""
    key = tuning_key(run)
    lock = RunLock(lock_path(results, key), stale_seconds)
    say = echo if dist.is_main else (lambda *a, **k: None)
    waiting = False
    while True:
        verdict = dist.from_main(lambda: _claim_key(results, key, lock, force))
        if verdict == "found":
            return dist.from_main(lambda: read_decision(record_path(results, key))), "found"
        if verdict == "tune":
            break
        if not wait:
            return None, f"skipped, {verdict}"
        if not waiting:
            say(f"tuning {key} ({label(run)}) is being done by another process ({verdict}); waiting for it")
            waiting = True
        time.sleep(poll_seconds)
    try:
        say(f"tuning the learning rate of {label(run)} on seeds {run.tune.seeds} (key {key}; every run of this "
            "setting reuses it)")
        return _tune(run, results, key, dist, splits, say), "tuned"
    finally:
        if dist.is_main:
            lock.release()


def _claim_key(results: Path, key: str, lock: RunLock, force: bool) -> str:
    """"found", or "tune" with the lock held (and with `force` no record or partial scores left), or why neither."""
    verdict = claim(lock, lambda: not force and bool(read_decision(record_path(results, key))))
    if verdict != CLAIMED:
        return "found" if verdict == DONE else verdict
    if force:
        record_path(results, key).unlink(missing_ok=True)
        partial_path(results, key).unlink(missing_ok=True)
    return "tune"


def _tune(run: RunConfig, results: Path, key: str, dist: Dist, splits, say) -> dict:
    """Score the grid at every tuning seed (resuming the (lr, seed) pairs already scored), decide,
    write the record. `splits`, a run's own, serve the tuning seeds that draw the same data."""
    tic = time.perf_counter()
    saved = partial_path(results, key)
    done = {(row["lr"], row["seed"]): row
            for row in dist.from_main(lambda: (read_partial(saved) or {}).get("scores", [])) if "seed" in row}
    trials: dict[int, TuningTrial] = {}
    candidates = Countdown(len(run.tune.grid) * len(run.tune.seeds), noun="candidate")

    def trial(seed: int) -> TuningTrial:
        if seed not in trials:  # built on first use: a resumed decision may need no training at some seed
            cfg = tuning_config(run, seed)
            lent = splits if splits is not None and seeding.split_seed(cfg) == seeding.split_seed(run) else None
            trials[seed] = TuningTrial(run, seed, dist, lent)
        return trials[seed]

    def score(lr: float, seed: int) -> float | None:
        if (lr, seed) not in done:
            candidates.total = max(candidates.total, len(done) + 1)  # an edge winner extends the grid
            say(f"  {candidates.start(len(done) + 1, f'lr {lr:g} seed {seed}')}")
            start = time.perf_counter()
            t = trial(seed)
            value = t.score(lr)
            candidates.done()
            done[lr, seed] = {"lr": lr, "seed": seed, "score": value, "n_val": len(t.built.splits.val),
                              "seconds": round(time.perf_counter() - start, 1)}
            if dist.is_main:
                write_json(saved, {"key": key, "scores": sorted(done.values(), key=lambda row: (row["lr"], row["seed"]))})
            shown = "diverged" if value is None else f"{100 * value:.1f}%"
            say(f"  {key} lr {lr:g} seed {seed}: validation {run.tune.score} {shown} ({done[lr, seed]['seconds']:.0f} s)")
        return done[lr, seed]["score"]

    seeds = list(run.tune.seeds)
    try:
        decision = decide(run.tune.grid, score, _Sizes(done), seeds, run.tune.max_extensions)
    except ValueError as err:
        raise GrpormError(f"tuning {label(run)} (key {key}): {err}") from None
    record = decision_record(run, key, decision, done)
    record.update({
        "se_n": "validation images per seed" + (" (pixels of an image are not independent)"
                                                 if run.task == "segmentation" else ""),
        "epochs": tuning_epochs(run),
        "fraction": run.tune.fraction,
        "config_hashes": {str(s): tuning_config(run, s).config_hash() for s in seeds},
        "timing": {"total_seconds": round(time.perf_counter() - tic, 1),
                   "candidate_seconds": round(sum(done[lr, s]["seconds"] for lr in decision.grid for s in seeds), 1)},
        "env": environment(),
        "host": socket.gethostname(),
        "distributed": dist.info(),
        "finished_at": now(),
    })
    if dist.is_main:
        write_json(record_path(results, key), record)
        saved.unlink(missing_ok=True)
    say(f"  {key}: {decision_summary(record)}")
    return record


class _Sizes(Mapping):
    """The validation size of each tuning seed, from its scored rows (`decide` reads it once every
    seed is scored)."""

    def __init__(self, done: dict):
        self.done = done

    def __getitem__(self, seed: int) -> int:
        return next(row["n_val"] for (_, s), row in self.done.items() if s == seed)

    def __iter__(self) -> Iterator[int]:
        return iter(sorted({s for _, s in self.done}))

    def __len__(self) -> int:
        return len({s for _, s in self.done})
