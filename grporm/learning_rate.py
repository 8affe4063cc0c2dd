"""The learning rate of a run: the per-run search over train.lr_grid, or the decision of its setting's
tuning (grporm/tuning.py rules; docs/method.md, 'Tuning rules'), made once per setting and kept."""
from __future__ import annotations

import socket
import time
from pathlib import Path
from typing import Callable

import torch

from grporm import seeding
from grporm.build import Built, build, set_threads
from grporm.config import RunConfig
from grporm.data import balanced_indices
from grporm.distributed import SINGLE, Dist
from grporm.errors import GrpormError, TrainingDiverged
from grporm.evaluate.suite import Extractor, val_score
from grporm.locks import CLAIMED, DEFAULT_STALE_SECONDS, DONE, RunLock, claim
from grporm.objectives import build_objective
from grporm.records import environment, now, read_record_or_rerun, write_json
from grporm.train import fit
from grporm.tuning import (
    decide,
    label,
    lock_path,
    partial_path,
    read_decision,
    read_partial,
    record_path,
    setting,
    tuning_config,
    tuning_key,
)

# lr_search.json, the search's progress read back on resume: a list of {"lr", "val_top1"} rows.
LR_SEARCH_FIELDS = {"results": list}


def _lr_rows_problem(state: dict) -> str | None:
    for row in state["results"]:
        if not (isinstance(row, dict) and all(isinstance(row.get(k), (int, float)) and not isinstance(row.get(k), bool)
                                              for k in ("lr", "val_top1"))):
            return f"results row {row!r} is not {{'lr': number, 'val_top1': number}}"
    return None


def search_lr(cfg: RunConfig, built: Built, extractor: Extractor, saved: Path, device: torch.device,
              dist: Dist = SINGLE) -> tuple[float, list[dict]]:
    """(the chosen lr, one {"lr", "val_top1"} row per searched lr; none when the grid has one lr).

    Every method gets the same grid and budget; the choice is by validation head accuracy (mean IoU
    for segmentation). Each learning rate's result is saved to `saved` as soon as it is known, so a
    resumed run redoes only the ones it had not finished. The model is left at its initial weights."""
    grid = cfg.train.lr_grid or [cfg.train.lr]
    if len(grid) == 1:
        return grid[0], []
    done = {row["lr"]: row for row in dist.from_main(
        lambda: (read_record_or_rerun(saved, LR_SEARCH_FIELDS, _lr_rows_problem) or {}).get("results", []))}
    data = built.splits.train
    if cfg.train.search_train_per_class is not None and not built.segmentation:
        per_class = min(cfg.train.search_train_per_class, int(torch.bincount(data.labels).min()))
        data = data.subset(balanced_indices(data.labels, per_class, seeding.generator(seeding.split_seed(cfg), "subset")))
    for lr in grid:
        if lr in done:
            continue
        built.reset()
        fit(built.model, build_objective(cfg), data, cfg, lr, cfg.train.search_epochs, built.input_spec,
            device, desc=f"lr search {lr:g}", dist=dist)
        done[lr] = {"lr": lr, "val_top1": val_score(extractor, built.splits, cfg.eval, segmentation=built.segmentation)}
        if dist.is_main:
            write_json(saved, {"results": [done[x] for x in grid if x in done]})
    found = [done[lr] for lr in grid]
    best = max(found, key=lambda row: (row["val_top1"], -row["lr"]))
    built.reset()
    return best["lr"], found


class TuningTrial:
    """The tuning of one setting: its config at tune.seed, trained for the tuning epochs from the same
    initial weights at each candidate lr, on the run's training split, scored on validation."""

    def __init__(self, run: RunConfig, dist: Dist = SINGLE, splits=None):
        self.cfg, self.dist = tuning_config(run), dist
        self.device = dist.device(run.train.device)
        set_threads(run, dist)
        self.built = build(self.cfg, self.device, splits)
        self.extractor = Extractor.for_run(self.built.model, self.built.input_spec, self.cfg, self.device, dist)

    def score(self, lr: float) -> float | None:
        """The validation score after training at `lr`; None if training diverged."""
        cfg, built = self.cfg, self.built
        built.reset()
        try:
            fit(built.model, build_objective(cfg), built.splits.train, cfg, lr, cfg.train.epochs, built.input_spec,
                self.device, desc=f"tune {lr:g}", dist=self.dist)
        except TrainingDiverged:
            return None
        return val_score(self.extractor, built.splits, cfg.eval, cfg.tune.score, built.segmentation)


def decision_for(run: RunConfig, results: Path, dist: Dist = SINGLE, *, splits=None, force: bool = False,
                 wait: bool = True, stale_seconds: float = DEFAULT_STALE_SECONDS, poll_seconds: float = 10.0,
                 echo: Callable[..., None] = print) -> tuple[dict | None, str]:
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
        say(f"tuning the learning rate of {label(run)} (key {key}; every run of this setting reuses it)")
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
    """Score the grid (resuming the values already scored), decide, write the record."""
    tic = time.perf_counter()
    saved = partial_path(results, key)
    done = {row["lr"]: row for row in dist.from_main(lambda: (read_partial(saved) or {}).get("scores", []))}
    trial = TuningTrial(run, dist, splits)
    n_val = len(trial.built.splits.val)

    def score(lr: float) -> float | None:
        if lr not in done:
            start = time.perf_counter()
            value = trial.score(lr)
            done[lr] = {"lr": lr, "score": value, "n_val": n_val, "seconds": round(time.perf_counter() - start, 1)}
            if dist.is_main:
                write_json(saved, {"key": key, "scores": sorted(done.values(), key=lambda row: row["lr"])})
            shown = "diverged" if value is None else f"{100 * value:.1f}%"
            say(f"  {key} lr {lr:g}: validation {run.tune.score} {shown} ({done[lr]['seconds']:.0f} s)")
        return done[lr]["score"]

    try:
        decision = decide(run.tune.grid, score, n_val, run.tune.max_extensions)
    except ValueError as err:
        raise GrpormError(f"tuning {label(run)} (key {key}): {err}") from None
    trial_cfg = trial.cfg
    record = {
        "key": key,
        "label": label(run),
        "setting": setting(run),
        "score": run.tune.score,
        "n_val": n_val,
        "se_n": "validation images" + (" (pixels of an image are not independent)" if trial.built.segmentation else ""),
        "initial_grid": list(run.tune.grid),
        "grid": decision.grid,
        "scores": [done[lr] for lr in decision.grid],
        "winner": decision.winner,
        "margin": decision.margin,
        "se": decision.se,
        "close_call": decision.close_call,
        "edge": decision.edge,
        "extended": decision.extended,
        "seed": run.tune.seed,
        "epochs": trial_cfg.train.epochs,
        "fraction": run.tune.fraction,
        "config_hash": trial_cfg.config_hash(),
        "timing": {"total_seconds": round(time.perf_counter() - tic, 1),
                   "candidate_seconds": round(sum(done[lr]["seconds"] for lr in decision.grid), 1)},
        "env": environment(),
        "host": socket.gethostname(),
        "distributed": dist.info(),
        "finished_at": now(),
    }
    if dist.is_main:
        write_json(record_path(results, key), record)
        saved.unlink(missing_ok=True)
    margin = "—" if decision.margin is None else f"{100 * decision.margin:.1f}"
    flags = [f for f, on in (("close call", decision.close_call), ("edge", decision.edge)) if on]
    say(f"  {key}: lr {decision.winner:g} (margin {margin} points, SE {100 * decision.se:.1f}"
        + "".join(f", {f}" for f in flags) + ")")
    return record
