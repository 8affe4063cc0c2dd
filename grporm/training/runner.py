"""One run from config to record; `Run.execute` reads as the stages in order:
build -> learning rate (tuning decision or search) -> train -> evaluate -> record.

The stages live elsewhere (grporm.training.build, grporm.tuning.trials, grporm.training.train, grporm.evaluate.suite,
grporm.records.schema); a Run holds what they share and writes the record. The matrix around runs (shards,
locks, preflight) is grporm.plan.matrix.
"""
from __future__ import annotations

import os
import re
import shutil
import socket
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from grporm.config import RunConfig
from grporm.errors import ConfigError, GrpormError
from grporm.process import seeding
from grporm.process.distributed import SINGLE, Dist
from grporm.process.interrupts import Interrupted
from grporm.records.inputs import read_text
from grporm.records.schema import RunRecord, Timing, TuningSummary
from grporm.records.storage import (
    environment,
    now,
    peak_memory_mib,
    run_dir,
    set_aside,
    write_csv,
    write_json,
    write_text_atomic,
)
from grporm.tracking.tracker import Tracker, artifact_name
from grporm.training.build import set_up
from grporm.training.checkpoints import recorded_config_hash, save_checkpoint
from grporm.training.methods import method
from grporm.training.saved import FINAL_WEIGHTS  # what a finished run keeps under <checkpoints>/<experiment>/runs/<run id>/
from grporm.training.train import FitResult
from grporm.tuning.decisions import needs_decision
from grporm.tuning.trials import decision_for, lends_splits

# The decision's summary a run record keeps in its `tuning` block, with the `pick` and the `lr` it trained at.
PICKED_FIELDS = ("key", "winner", "runner_up", "margin", "se", "seed_se", "close_call", "edge")



@dataclass(frozen=True)
class RunPaths:
    """Where one run writes, computed once per run: `out` (record.json, history.csv, steps.csv, the
    run's lock) under the results folder, `ckpt` (training checkpoints, lr search state, final
    weights) under the checkpoints folder; `results` itself holds the tuning records."""

    results: Path
    out: Path
    ckpt: Path

    @classmethod
    def of(cls, run: RunConfig, results: Path, checkpoints: Path) -> RunPaths:
        return cls(results, run_dir(results, run.experiment, run.run_id), run_dir(checkpoints, run.experiment, run.run_id))

    @property
    def record(self) -> Path:
        return self.out / "record.json"

    @property
    def lock(self) -> Path:
        return self.out / ".lock"


# Has a run of this process trained yet? The first one pays the process's warm-up (Timing.first_in_process).
_TRAINED_IN_PROCESS = False


class Run:
    """What every stage of one run shares. Under DDP every rank builds a Run; only rank 0
    (`dist.is_main`) writes files and logs to W&B."""

    def __init__(self, cfg: RunConfig, paths: RunPaths, dist: Dist = SINGLE):
        self.cfg, self.dist, self.paths = cfg, dist, paths
        self.method = method(cfg.method)
        self.device = dist.device(cfg.train.device)
        # fit fills it as it goes, so a failed or interrupted run still records the steps it made
        self.progress = FitResult()
        self.record = RunRecord(
            run_id=cfg.run_id, experiment=cfg.experiment, status="running", method=cfg.method,
            dataset=cfg.data.display_name(), backbone=cfg.model.name, seed=cfg.seed, axes=cfg.axes,
            config_hash=cfg.config_hash(), config=cfg.model_dump(mode="json"), host=socket.gethostname(),
            pid=os.getpid(), distributed=dist.info(), started_at=now())

    def execute(self) -> RunRecord:
        cfg, record = self.cfg, self.record
        tic = time.perf_counter()
        ready = set_up(cfg, self.device, self.dist, desc=cfg.run_id)
        self.built, self.extractor, self.trainer = ready.built, ready.extractor, ready.trainer
        record.env = environment()  # after set_up's threads
        self.tracker = Tracker(cfg, enabled=self.dist.is_main, folder=self.paths.out)
        record.wandb = self.tracker.info
        if self.dist.is_main:
            set_aside(self.paths.record)  # a damaged record is kept, not overwritten
        self._write()
        error: BaseException | None = None
        try:
            if self.method.trains:
                self._train(self._tuned_lr() if needs_decision(cfg) else self._given_lr())
            eval_tic = time.perf_counter()
            record.metrics = self._evaluate()
            record.timing = self._timing(time.perf_counter() - eval_tic, time.perf_counter() - tic)
            record.status = "finished"
        except BaseException as err:
            error = err
            record.status = "interrupted" if isinstance(err, (Interrupted, KeyboardInterrupt)) else "failed"
            record.error = f"{type(err).__name__}: {err}"
            raise
        finally:
            record.finished_at, record.wandb = now(), self.tracker.info
            if self.progress.steps:
                self._write_csv("steps.csv", self.progress.steps)
            self._write()
            if record.status == "finished" and self.method.trains and self.dist.is_main:
                self._keep_final_weights()  # after the record: the results are safe whatever happens here
            self.tracker.finish(record.summary(), exit_code=0 if record.status == "finished" else 1)
            if error is None or isinstance(error, (Interrupted, GrpormError)):  # errors all ranks agree on
                self.dist.barrier()  # every rank got here together; none exits while rank 0 writes
        return record

    # -- stages -------------------------------------------------------------------------------
    def _tuned_lr(self) -> float:
        """The lr `tune.pick` names in the setting's tuning record (the winner, or the runner-up for a
        sensitivity run), the record made now (before training) if there is none yet."""
        # The run's splits serve the tuning seed that draws the same data, if there is one.
        decision, _ = decision_for(self.cfg, self.paths.results, self.dist,
                                   splits=self.built.splits if lends_splits(self.cfg) else None)
        pick = self.cfg.tune.pick
        lr = decision["winner"] if pick == "winner" else decision["runner_up"]
        if lr is None:
            raise ConfigError(f"tune.pick: runner_up: the decision {decision['key']} has no runner-up (a single "
                              "learning rate did not diverge); leave pick at winner")
        self.record.lr = lr
        self.record.tuning = TuningSummary(**{k: decision.get(k) for k in PICKED_FIELDS}, pick=pick, lr=lr)
        margin = {} if decision["margin"] is None else {"tuning/margin": decision["margin"]}
        self.tracker.log({"tuning/lr": lr} | margin)
        return lr

    def _given_lr(self) -> float:
        """train.lr, for a run without tuning (tune.grid empty)."""
        self.record.lr = self.cfg.train.lr
        return self.record.lr

    def _train(self, lr: float) -> None:
        cfg, built = self.cfg, self.built
        probe = built.task.probe(self.extractor, built.splits, cfg.eval, seeding.split_seed(cfg),
                                 log=self.tracker.log_epoch)
        self.tracker.note_lr(lr, self.record.tuning.key if self.record.tuning is not None else None)
        self.trainer.fit(lr, checkpoint=self.paths.ckpt / "last.pt", on_epoch=probe, on_step=self.tracker.log_step,
                         result=self.progress)
        self._write_csv("history.csv", self.progress.history)
        self.tracker.log_convergence(self.progress.history)

    def _evaluate(self):
        metrics = self.built.task.evaluate(self.extractor, self.built.splits, self.cfg, self.method.has_head)
        if metrics is not None and metrics.seg is None:  # classification: accuracy per named class
            self.tracker.per_class_table(metrics.per_class, self.built.splits.classes)
        return metrics

    def _timing(self, eval_seconds: float, total_seconds: float) -> Timing:
        global _TRAINED_IN_PROCESS
        train_seconds, images = self.progress.train_seconds, self.progress.images_seen
        peak = torch.cuda.max_memory_allocated() / 2**20 if self.device.type == "cuda" else peak_memory_mib()
        first = not _TRAINED_IN_PROCESS
        _TRAINED_IN_PROCESS = _TRAINED_IN_PROCESS or bool(self.method.trains and train_seconds)
        return Timing(train_seconds, eval_seconds, total_seconds,
                      images / train_seconds if self.method.trains and train_seconds else None, peak, first)

    # -- files --------------------------------------------------------------------------------
    def _keep_final_weights(self) -> None:
        """A finished run needs no resume state: keep the fine-tuned weights alone (model.pt, a
        third of a training checkpoint with Adam's moments) and drop last.pt and last.prev.pt."""
        try:
            save_checkpoint(self.paths.ckpt / FINAL_WEIGHTS, {"model": self.built.model.state_dict(),
                                                              "config_hash": self.cfg.config_hash()})
        except OSError as err:
            print(f"warning: could not save {self.paths.ckpt / FINAL_WEIGHTS} ({err}); the run's results are "
                  "recorded and its training checkpoint is kept", file=sys.stderr)
            return
        self.tracker.log_weights(self.paths.ckpt / FINAL_WEIGHTS, artifact_name(self.cfg))  # tracking.log_model
        for name in ("last.pt", "last.prev.pt"):
            (self.paths.ckpt / name).unlink(missing_ok=True)

    def _write(self) -> None:
        if self.dist.is_main:
            write_json(self.paths.record, self.record.to_json())

    def _write_csv(self, name: str, rows: list[dict]) -> None:
        if self.dist.is_main:
            write_csv(self.paths.out / name, rows)


def execute_run(run: RunConfig, paths: RunPaths, force: bool = False, dist: Dist = SINGLE) -> RunRecord:
    dist.from_main(lambda: _prepare_checkpoints(paths.ckpt, run, force))
    return Run(run, paths, dist).execute()


CONFIG_STAMP = "config_hash"  # beside a run's checkpoints: the config they were written for
RESUMABLE = ("last.pt", "last.prev.pt", FINAL_WEIGHTS)  # what may say whose checkpoints these are


def _prepare_checkpoints(folder: Path, run: RunConfig, force: bool) -> None:
    """The run's checkpoint folder, ready to resume only what was written for this config.

    A folder stamped for another config is deleted (it must never be resumed). A folder whose stamp
    is damaged or missing (e.g. a kill while an older version rewrote it in place) is resumed when
    its checkpoint records this run's config hash (saved inside every checkpoint); otherwise it is
    kept aside as `<run id>.unverified` and the run starts afresh: one warning line either way, and
    never a silent deletion of checkpoints that may hold hours of training."""
    if force:
        shutil.rmtree(folder, ignore_errors=True)
    stamp, wanted = folder / CONFIG_STAMP, run.config_hash()
    if folder.is_dir() and any(p.name != CONFIG_STAMP for p in folder.iterdir()):
        recorded = _read_hash(stamp)
        if recorded is None:
            problem = "is missing" if not stamp.exists() and not stamp.is_symlink() else "is damaged"
            if recorded_config_hash(folder, RESUMABLE) == wanted:
                print(f"warning: {stamp} {problem}; the checkpoint in {folder} records this run's config "
                      f"({wanted}), so the run resumes from it", file=sys.stderr)
            else:
                aside = _aside(folder)
                os.replace(folder, aside)
                print(f"warning: {stamp} {problem} and no checkpoint in {folder} records this run's config; "
                      f"its files are kept as {aside} (delete it when not needed) and the run starts afresh",
                      file=sys.stderr)
        elif recorded != wanted:
            shutil.rmtree(folder)  # a checkpoint of another config must never be resumed
    folder.mkdir(parents=True, exist_ok=True)
    write_text_atomic(stamp, wanted)


def _aside(folder: Path) -> Path:
    """`<folder>.unverified`, or `.unverified-2`, ... when that is taken."""
    candidate, n = folder.with_name(f"{folder.name}.unverified"), 1
    while candidate.exists() or candidate.is_symlink():
        n += 1
        candidate = folder.with_name(f"{folder.name}.unverified-{n}")
    return candidate


def _read_hash(path: Path) -> str | None:
    """The config hash a checkpoint folder was written for; None if the file is missing or damaged."""
    try:
        text = read_text(path, "checkpoint config hash", "delete its folder").strip()
    except ConfigError:
        return None
    return text if re.fullmatch(r"[0-9a-f]{6,64}", text) else None
