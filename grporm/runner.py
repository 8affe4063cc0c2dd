"""One run from config to record: data, model, learning rate (tuned or searched), training, evaluation.

Also what surrounds runs: picking a shard of the matrix, checking every run's inputs before the
first writes anything (`preflight`), and walking the runs with a lock each (`run_matrix`).
"""
from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import sys
import time
from pathlib import Path
from typing import Callable

import torch

from grporm import seeding
from grporm.checkpoints import save_checkpoint
from grporm.config import RunConfig
from grporm.data import DATASETS, ImageSet, balanced_indices, make_splits
from grporm.data.segmentation import segmentation_splits
from grporm.data.splits import split_indices
from grporm.distributed import SINGLE, Dist, check_world
from grporm.errors import ConfigError, DataMissingError, GrpormError, TrainingDiverged, WeightsError
from grporm.evaluate import (
    expected_calibration_error,
    knn_accuracy,
    per_class_accuracy,
    softmax_regression,
)
from grporm.evaluate.features import extract
from grporm.evaluate.protocols import FrozenScorer, imbalance_metrics, ood_metrics, transfer_metrics
from grporm.evaluate.segmentation import confusion, segmentation_scores
from grporm.inputs import read_text
from grporm.locks import DEFAULT_STALE_SECONDS, Locked, RunLock
from grporm.models import create_backbone, with_pooling
from grporm.models.classifier import Classifier
from grporm.models.segmentation import Segmenter
from grporm.objectives import build_objective
from grporm.records import environment, now, peak_memory_mib, read_record_or_rerun, run_dir, set_aside, write_csv, write_json
from grporm.tracking import Tracker
from grporm.train import STOP, FitResult, Interrupted, fit
from grporm.tuning import (
    decide,
    label,
    lock_path,
    needs_decision,
    partial_path,
    read_decision,
    read_partial,
    record_path,
    setting,
    tuning_config,
    tuning_key,
)

FINAL_WEIGHTS = "model.pt"  # what a finished run keeps under checkpoints/<experiment>/runs/<run id>/
# lr_search.json, the search's progress read back on resume: a list of {"lr", "val_top1"} rows.
LR_SEARCH_FIELDS = {"results": list}


def _lr_rows_problem(state: dict) -> str | None:
    for row in state["results"]:
        if not (isinstance(row, dict) and all(isinstance(row.get(k), (int, float)) and not isinstance(row.get(k), bool)
                                              for k in ("lr", "val_top1"))):
            return f"results row {row!r} is not {{'lr': number, 'val_top1': number}}"
    return None


class RunsFailed(GrpormError):
    """Some runs failed (their records say why); the others were done."""

    exit_code = 1


def pick_device(name: str, dist: Dist = SINGLE) -> torch.device:
    return dist.device(name)


def is_finished(run: RunConfig, results: Path) -> bool:
    record = read_record_or_rerun(run_dir(results, run.experiment, run.run_id) / "record.json")
    return bool(record) and record.get("status") == "finished" and record.get("config_hash") == run.config_hash()


def checkpoint_dir(run: RunConfig, checkpoints: Path) -> Path:
    return run_dir(checkpoints, run.experiment, run.run_id)


def set_threads(run: RunConfig, dist: Dist) -> None:
    # Under torchrun the processes of one machine share its cores.
    torch.set_num_threads(run.train.threads or max(1, (os.cpu_count() or 1) // dist.local_world_size))


class Run:
    """Holds what every stage of one run shares; `execute` reads as the stages in order.

    Under DDP every rank builds a Run; only rank 0 (`dist.is_main`) writes files and logs to W&B.
    """

    def __init__(self, run: RunConfig, results: Path, checkpoints: Path, dist: Dist = SINGLE):
        self.cfg = run
        self.dist = dist
        self.results = results
        self.out = run_dir(results, run.experiment, run.run_id)
        self.ckpt = checkpoint_dir(run, checkpoints)
        self.device = pick_device(run.train.device, dist)
        self.autocast = run.train.precision == "bf16"
        self.progress = FitResult()  # filled by fit as it goes, so a failed run still records its steps
        self.record: dict = {
            "run_id": run.run_id,
            "experiment": run.experiment,
            "status": "running",
            "error": None,
            "method": run.method,
            "dataset": run.data.name,
            "backbone": run.model.name,
            "seed": run.seed,
            "axes": run.axes,
            "config_hash": run.config_hash(),
            "config": run.model_dump(mode="json"),
            "lr": None,
            "lr_search": [],
            "metrics": {},
            "timing": {},
            "env": {},
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "distributed": dist.info(),
            "started_at": now(),
            "finished_at": None,
        }

    # -- stages -------------------------------------------------------------------------------
    def execute(self) -> dict:
        cfg = self.cfg
        set_threads(cfg, self.dist)
        self.record["env"] = environment()
        tic = time.perf_counter()
        self._prepare()
        self.tracker = Tracker(cfg, enabled=self.dist.is_main)
        self.record["wandb"] = self.tracker.info
        if self.dist.is_main:
            set_aside(self.out / "record.json")  # a damaged record is kept, not overwritten
        self._write(self.record)
        error: BaseException | None = None
        fit_result = None
        try:
            if cfg.method != "pretrained":
                lr = self._tuned_lr() if needs_decision(cfg) else self._search_lr()
                fit_result = self._train(lr)
            eval_tic = time.perf_counter()
            self.record["metrics"] = self._evaluate()
            self.record["timing"] = self._timing(fit_result, time.perf_counter() - eval_tic, time.perf_counter() - tic)
            self.record["status"] = "finished"
        except BaseException as err:
            error = err
            interrupted = isinstance(err, (Interrupted, KeyboardInterrupt))
            self.record["status"] = "interrupted" if interrupted else "failed"
            self.record["error"] = f"{type(err).__name__}: {err}"
            raise
        finally:
            self.record["finished_at"] = now()
            self.record["wandb"] = self.tracker.info
            if self.progress.steps:
                self._write_csv("steps.csv", self.progress.steps)
            self._write(self.record)
            if self.record["status"] == "finished" and fit_result is not None and self.dist.is_main:
                self._keep_final_weights()  # after the record: the results are safe whatever happens here
            self.tracker.finish(self._summary(), exit_code=0 if self.record["status"] == "finished" else 1)
            if error is None or isinstance(error, (Interrupted, GrpormError)):  # errors all ranks agree on
                self.dist.barrier()  # every rank got here together; none exits while rank 0 writes
        return self.record

    def _keep_final_weights(self) -> None:
        """A finished run needs no resume state: keep the fine-tuned weights alone (model.pt, a
        third of a training checkpoint with Adam's moments) and drop last.pt and last.prev.pt."""
        try:
            save_checkpoint(self.ckpt / FINAL_WEIGHTS, {"model": self.model.state_dict()})
        except OSError as err:
            print(f"warning: could not save {self.ckpt / FINAL_WEIGHTS} ({err}); the run's results are "
                  "recorded and its training checkpoint is kept", file=sys.stderr)
            return
        for name in ("last.pt", "last.prev.pt"):
            (self.ckpt / name).unlink(missing_ok=True)

    def _write(self, record: dict) -> None:
        if self.dist.is_main:
            write_json(self.out / "record.json", record)

    def _write_csv(self, name: str, rows: list[dict]) -> None:
        if self.dist.is_main:
            write_csv(self.out / name, rows)

    def _prepare(self, splits=None) -> None:
        """Data splits (given, or made from the config), the model and its initial weights."""
        cfg = self.cfg
        self.segmentation = cfg.task == "segmentation"
        if splits is None:
            splits = segmentation_splits(cfg.data, cfg.seg) if self.segmentation else make_splits(cfg.data)
        self.splits = splits
        self.model, self.input_spec = self._build_model()
        self.initial_state = {k: v.clone() for k, v in self.model.state_dict().items()}

    def _build_model(self) -> tuple[Classifier, tuple]:
        cfg = self.cfg
        torch.manual_seed(seeding.derive(cfg.seed, "init"))  # same head (and random backbone) for every method of a seed
        backbone = with_pooling(create_backbone(cfg.model.name, cfg.model.weights, cfg.data.image_size), cfg.model.pool)
        frozen = cfg.method == "linear_probe"
        if self.segmentation:
            model = Segmenter(backbone.module, self.splits.num_classes, cfg.seg.feature_index, frozen)
        else:
            model = Classifier(backbone.module, backbone.feature_dim, self.splits.num_classes, frozen)
        model = model.to(self.device)
        if cfg.train.channels_last:  # also for runs that only evaluate
            model = model.to(memory_format=torch.channels_last)
        return model, (cfg.data.image_size, backbone.mean, backbone.std)

    def _search_lr(self) -> float:
        """Every method gets the same grid and budget; the choice is by validation head accuracy
        (mean IoU for segmentation).

        Each learning rate's result is saved as soon as it is known, so a resumed run redoes only
        the ones it had not finished."""
        cfg = self.cfg
        grid = cfg.train.lr_grid or [cfg.train.lr]
        if len(grid) == 1:
            self.record["lr"] = grid[0]
            return grid[0]
        saved = self.ckpt / "lr_search.json"
        done = {row["lr"]: row for row in self.dist.from_main(
            lambda: (read_record_or_rerun(saved, LR_SEARCH_FIELDS, _lr_rows_problem) or {}).get("results", []))}
        data = self.splits.train
        if cfg.train.search_train_per_class is not None and not self.segmentation:
            per_class = min(cfg.train.search_train_per_class, int(torch.bincount(data.labels).min()))
            data = data.subset(balanced_indices(data.labels, per_class, seeding.generator(cfg.data.split_seed, "subset")))
        for lr in grid:
            if lr in done:
                continue
            self.model.load_state_dict(self.initial_state)
            fit(self.model, build_objective(cfg), data, cfg, lr, cfg.train.search_epochs, self.input_spec,
                self.device, desc=f"lr search {lr:g}", dist=self.dist)
            done[lr] = {"lr": lr, "val_top1": self._val_score()}
            if self.dist.is_main:
                write_json(saved, {"results": [done[x] for x in grid if x in done]})
        found = [done[lr] for lr in grid]
        best = max(found, key=lambda row: (row["val_top1"], -row["lr"]))
        self.record["lr_search"], self.record["lr"] = found, best["lr"]
        self.tracker.log({f"lr_search/val_top1@{row['lr']:g}": row["val_top1"] for row in found})
        self.model.load_state_dict(self.initial_state)
        return best["lr"]

    def _tuned_lr(self) -> float:
        """The winner of the setting's tuning record, made now (before training) if there is none yet."""
        record, _ = decision_for(self.cfg, self.results, self.dist, splits=self.splits)
        summary = {k: record[k] for k in ("key", "winner", "margin", "close_call", "edge")}
        self.record["lr"], self.record["tuning"] = record["winner"], summary
        margin = {} if record["margin"] is None else {"tuning/margin": record["margin"]}
        self.tracker.log({"tuning/lr": record["winner"]} | margin)
        return record["winner"]

    def _train(self, lr: float):
        cfg = self.cfg
        conv_train = self._convergence_subset()

        def on_epoch(epoch: int) -> dict:
            metrics = self._convergence_metrics(conv_train)
            self.tracker.log({f"epoch/{k}": v for k, v in metrics.items()} | {"epoch": epoch})
            return metrics

        def on_step(step: int, stats: dict) -> None:
            self.tracker.log({f"train/{k}": v for k, v in stats.items()}, step=None)

        result = fit(self.model, build_objective(cfg), self.splits.train, cfg, lr, cfg.train.epochs,
                     self.input_spec, self.device, checkpoint=self.ckpt / "last.pt", on_epoch=on_epoch,
                     on_step=on_step, desc=cfg.method, dist=self.dist, result=self.progress)
        self._write_csv("history.csv", result.history)
        return result

    # -- evaluation ---------------------------------------------------------------------------
    def _extract(self, images: ImageSet, desc: str) -> tuple[torch.Tensor, torch.Tensor]:
        """Features and logits of the whole set; under DDP each rank does its slice and all gather."""
        n = len(images)
        mine = images if not self.dist.active else images.subset(torch.arange(n)[self.dist.part(n)])
        feats, logits = self._extract_here(mine, desc)
        return self.dist.gather_rows(feats, n), self.dist.gather_rows(logits, n)

    def _extract_here(self, images: ImageSet, desc: str) -> tuple[torch.Tensor, torch.Tensor]:
        """This process alone: for evaluations only rank 0 makes."""
        return extract(self.model, images, self.input_spec, self.cfg.eval.batch_size, self.device, desc,
                       self.autocast, self.cfg.train.channels_last)

    def _val_score(self, score: str = "head") -> float:
        """Validation score: head accuracy, mIoU, or SR / kNN@20 of frozen features with the training
        split as reference (SR picks its L2 on validation, as the final evaluation does)."""
        if self.segmentation:
            return self._segmentation_scores(self.splits.val, "val")["miou"]
        val, num_classes, eval_cfg = self.splits.val, self.splits.num_classes, self.cfg.eval
        val_f, logits = self._extract(val, "val")
        if score == "head":
            return (logits.argmax(1) == val.labels).float().mean().item()
        train_f, _ = self._extract(self.splits.train, "train")
        value = None
        if self.dist.is_main:  # deterministic, but computed once and sent to the other ranks
            if score == "sr":
                value = softmax_regression(train_f, self.splits.train.labels, val_f, val.labels, val_f, val.labels,
                                           l2_grid=tuple(eval_cfg.sr_l2_grid), max_iter=eval_cfg.sr_max_iter,
                                           num_classes=num_classes)["val_top1"]
            else:
                value = knn_accuracy(train_f, self.splits.train.labels, val_f, val.labels, ks=(20,),
                                     temperature=eval_cfg.knn_temperature, num_classes=num_classes)[20]
        return self.dist.broadcast(value)

    def _segmentation_scores(self, images: ImageSet, desc: str) -> dict:
        """mIoU and pixel accuracy from a confusion matrix accumulated batch by batch."""
        num_classes = self.splits.num_classes
        conf = torch.zeros(num_classes, num_classes, dtype=torch.long)
        for start in range(0, len(images), self.cfg.eval.batch_size):
            batch = images.subset(torch.arange(start, min(start + self.cfg.eval.batch_size, len(images))))
            _, logits = self._extract(batch, desc)
            conf += confusion(logits.argmax(1), batch.labels, num_classes)
        return segmentation_scores(conf)

    def _convergence_subset(self) -> ImageSet | None:
        if self.segmentation:
            return None  # segmentation converges on validation mIoU instead
        train = self.splits.train
        per_class = min(self.cfg.eval.convergence_per_class, int(torch.bincount(train.labels).min()))
        return train.subset(balanced_indices(train.labels, per_class, seeding.generator(self.cfg.data.split_seed, "subset")))

    def _convergence_metrics(self, conv_train: ImageSet) -> dict:
        """Cheap per-epoch probe: val head accuracy, and kNN@20 and SR from a fixed training subset
        (SR with the strongest L2 of eval.sr_l2_grid: the subset is small, and val cannot both pick
        the strength and score it)."""
        if self.segmentation:
            scores = self._segmentation_scores(self.splits.val, "probe val")
            return {"val_miou": scores["miou"], "val_pixel_acc": scores["pixel_acc"]} if self.dist.is_main else {}
        train_feats, _ = self._extract(conv_train, "probe")
        val_feats, val_logits = self._extract(self.splits.val, "probe val")
        if not self.dist.is_main:
            return {}  # only rank 0 records metrics
        knn = knn_accuracy(train_feats, conv_train.labels, val_feats, self.splits.val.labels, ks=(20,),
                           temperature=self.cfg.eval.knn_temperature, num_classes=self.splits.num_classes)
        sr = softmax_regression(train_feats, conv_train.labels, val_feats, self.splits.val.labels,
                                l2_grid=[max(self.cfg.eval.sr_l2_grid)], max_iter=self.cfg.eval.sr_max_iter,
                                num_classes=self.splits.num_classes)
        return {"val_head_top1": (val_logits.argmax(1) == self.splits.val.labels).float().mean().item(),
                "knn20_top1": knn[20], "sr_top1": sr["top1"]}

    def _evaluate(self) -> dict:
        """SPEC 4: features extracted once per split, then SR, kNN, head accuracy and calibration,
        and the shifted-data protocols the config asks for (corruptions, transfer, imbalance)."""
        cfg, splits, num_classes = self.cfg, self.splits, self.splits.num_classes
        if self.segmentation:
            scores = self._segmentation_scores(splits.test, "test")
            return {"seg": {"miou": scores["miou"], "pixel_acc": scores["pixel_acc"]},
                    "per_class": {"iou": scores["iou"]}}
        train_f, _ = self._extract(splits.train, "features train")
        val_f, val_z = self._extract(splits.val, "features val")
        test_f, test_z = self._extract(splits.test, "features test")
        if not self.dist.is_main:
            return {}  # the features are everywhere, the metrics are needed once
        sr = softmax_regression(train_f, splits.train.labels, test_f, splits.test.labels, val_f, splits.val.labels,
                                l2_grid=tuple(cfg.eval.sr_l2_grid), max_iter=cfg.eval.sr_max_iter, num_classes=num_classes)
        knn = knn_accuracy(train_f, splits.train.labels, test_f, splits.test.labels, ks=tuple(cfg.eval.knn_k),
                           temperature=cfg.eval.knn_temperature, num_classes=num_classes)
        metrics = {
            "head_top1": None, "ece": None, "val_head_top1": None,
            "sr_top1": sr["top1"], "sr_l2": sr["l2"],
            "knn_top1": {str(k): v for k, v in knn.items()},
            "per_class": {"sr": sr["per_class"]},
        }
        if cfg.method != "pretrained":  # a pretrained backbone has no head for these classes
            pred = test_z.argmax(1)
            metrics["head_top1"] = (pred == splits.test.labels).float().mean().item()
            metrics["val_head_top1"] = (val_z.argmax(1) == splits.val.labels).float().mean().item()
            metrics["ece"] = expected_calibration_error(test_z.softmax(1), splits.test.labels, cfg.eval.ece_bins)
            metrics["per_class"]["head"] = per_class_accuracy(pred, splits.test.labels, num_classes)
        metrics.update(self._shifted_metrics(train_f, sr.pop("probe"), test_f, test_z))
        rows = [[name, *(metrics["per_class"][m][i] for m in metrics["per_class"])]
                for i, name in enumerate(splits.classes)]
        self.tracker.table("per_class_accuracy", ["class", *metrics["per_class"]], rows)
        return metrics

    def _shifted_metrics(self, train_f: torch.Tensor, probe, test_f: torch.Tensor, test_z: torch.Tensor) -> dict:
        """Out-of-distribution (corruptions, transfer) and imbalance metrics, each only when configured.

        SR is the probe fitted on the clean training features; kNN uses those features too. Runs on
        rank 0 alone (the others have returned), so it extracts without gathering."""
        cfg, splits = self.cfg, self.splits
        scorer = FrozenScorer(train_f, splits.train.labels, probe, splits.num_classes, cfg.eval.knn_temperature,
                              has_head=cfg.method != "pretrained")
        out: dict = {}
        if cfg.eval.ood.corruptions:
            ood = cfg.eval.ood
            out["ood"], out["ood_clean"] = ood_metrics(self._extract_here, splits.test, scorer, ood.corruptions, ood.severities,
                                     ood.test_per_class, ood.seed)
        if cfg.eval.transfer:
            out["transfer"] = transfer_metrics(self._extract_here, cfg.data, cfg.eval.transfer, scorer, splits.classes)
        if cfg.data.imbalance_factor is not None:
            out["imbalance"] = imbalance_metrics(scorer.predictions(test_f, test_z), splits.test.labels,
                                                 splits.train.labels, splits.num_classes, cfg.eval.shot_thresholds)
        return out

    def _timing(self, fit_result, eval_seconds: float, total_seconds: float) -> dict:
        peak = (torch.cuda.max_memory_allocated() / 2**20 if self.device.type == "cuda"
                else peak_memory_mib())
        train_seconds = fit_result.train_seconds if fit_result else 0.0
        return {
            "train_seconds": train_seconds,
            "eval_seconds": eval_seconds,
            "total_seconds": total_seconds,
            "train_images_per_second": fit_result.images_seen / train_seconds if fit_result and train_seconds else None,
            "peak_memory_mb": peak,
        }

    def _summary(self) -> dict:
        m = self.record["metrics"]
        flat = {k: v for k, v in m.items() if isinstance(v, (int, float))}
        flat.update({f"knn{k}_top1": v for k, v in m.get("knn_top1", {}).items()})
        return {"final/" + k: v for k, v in flat.items()} | {"status": self.record["status"]}


class TuningTrial(Run):
    """The tuning of one setting: its config at tune.seed, trained for the tuning epochs from the same
    initial weights at each candidate lr, on the run's training split, scored on validation."""

    def __init__(self, run: RunConfig, results: Path, dist: Dist = SINGLE, splits=None):
        self.cfg, self.dist, self.results = tuning_config(run), dist, results
        self.device = pick_device(run.train.device, dist)
        self.autocast = run.train.precision == "bf16"
        set_threads(run, dist)
        self._prepare(splits)

    def score(self, lr: float) -> float | None:
        """The validation score after training at `lr`; None if training diverged."""
        cfg = self.cfg
        self.model.load_state_dict(self.initial_state)
        try:
            fit(self.model, build_objective(cfg), self.splits.train, cfg, lr, cfg.train.epochs, self.input_spec,
                self.device, desc=f"tune {lr:g}", dist=self.dist)
        except TrainingDiverged:
            return None
        return self._val_score(cfg.tune.score)


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
    if not force and read_decision(record_path(results, key)):
        return "found"
    try:
        lock.acquire()
    except Locked as err:
        return str(err)
    if not force and read_decision(record_path(results, key)):  # done by the lock's previous holder
        lock.release()
        return "found"
    if force:
        record_path(results, key).unlink(missing_ok=True)
        partial_path(results, key).unlink(missing_ok=True)
    return "tune"


def _tune(run: RunConfig, results: Path, key: str, dist: Dist, splits, say) -> dict:
    """Score the grid (resuming the values already scored), decide, write the record."""
    tic = time.perf_counter()
    saved = partial_path(results, key)
    done = {row["lr"]: row for row in dist.from_main(lambda: (read_partial(saved) or {}).get("scores", []))}
    trial = TuningTrial(run, results, dist, splits)
    n_val = len(trial.splits.val)

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
        "se_n": "validation images" + (" (pixels of an image are not independent)" if trial.segmentation else ""),
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


def execute_run(run: RunConfig, results: Path, checkpoints: Path, force: bool = False, dist: Dist = SINGLE) -> dict:
    dist.from_main(lambda: _prepare_checkpoints(run, checkpoints, force))
    return Run(run, results, checkpoints, dist).execute()


def _prepare_checkpoints(run: RunConfig, checkpoints: Path, force: bool) -> None:
    if force:
        shutil.rmtree(checkpoint_dir(run, checkpoints), ignore_errors=True)
    stale = checkpoint_dir(run, checkpoints) / "config_hash"
    if stale.exists() and _read_hash(stale) != run.config_hash():
        shutil.rmtree(stale.parent)  # a checkpoint of another (or an unknown) config must never be resumed
    stale.parent.mkdir(parents=True, exist_ok=True)
    stale.write_text(run.config_hash())


def _read_hash(path: Path) -> str | None:
    """The config hash a checkpoint folder was written for; None if the file is damaged."""
    try:
        return read_text(path, "checkpoint config hash", "delete its folder").strip()
    except ConfigError:
        return None


# -- the matrix ---------------------------------------------------------------------------------
def parse_shard(text: str) -> tuple[int, int]:
    match = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", text)
    index, count = (int(match[1]), int(match[2])) if match else (-1, 0)
    if not 0 <= index < count:
        raise ConfigError(f"--shard {text!r}: write it as I/N with 0 <= I < N, e.g. --shard 0/4 ... --shard 3/4")
    return index, count


def select_runs(runs: list[RunConfig], only: str | None, shard: str | None) -> list[RunConfig]:
    """The runs of this process: shard I/N takes every N-th run of the matrix from the I-th (so each
    shard gets a mix of methods), then --only filters by id."""
    if only is not None and not only.strip():
        raise ConfigError("--only '': give part of a run id (see --dry-run), or leave --only out to run them all")
    if only is not None and not any(only in r.run_id for r in runs):
        raise ConfigError(f"no run matches --only {only!r}")
    if shard is not None:
        index, count = parse_shard(shard)
        runs = runs[index::count]
    return [r for r in runs if only is None or only in r.run_id]


SPLIT_ONLY = {"train_per_class", "val_per_class", "test_per_class", "split_seed", "imbalance_factor"}


def preflight(runs: list[RunConfig], world_size: int = 1) -> None:
    """Load what each run needs (backbone and weights, data files and class counts) before the first
    run starts, so bad input fails in seconds with nothing written instead of hours into a matrix.
    Each backbone is built once and each data set read once, whatever the number of runs."""
    from grporm.config import Experiment
    from grporm.requirements import preflight as check_requirements

    if runs:  # first everything missing at once (data sets, weight files), then a real load of each
        check_requirements(Experiment(name=runs[0].experiment, runs=runs))
    backbones: set[tuple] = set()
    datasets: dict[str, tuple] = {}  # loader settings -> (train labels, test labels, class names)
    for r in runs:
        try:
            check_world(r.train.batch_size, world_size, "--nproc")
            if (key := (r.model.name, r.model.weights, r.data.image_size)) not in backbones:
                _as_input_error(lambda: create_backbone(*key), WeightsError,
                                f"backbone {r.model.name} with weights {r.model.weights}",
                                "check model.weights (a checkpoint of this architecture) or model.name")
                backbones.add(key)
            if (key := r.data.model_dump_json(exclude=SPLIT_ONLY)) not in datasets:
                train, test = _as_input_error(lambda: DATASETS.get(r.data.name)(r.data), DataMissingError,  # noqa: B023 - called at once
                                              f"data {r.data.name} (data.root {r.data.root})",
                                              "fetch the data set again or fix data.root")
                datasets[key] = (train.labels, test.labels, train.classes)
            if datasets[key][0].ndim == 1:  # enough images per class? (mask data sets split by image)
                split_indices(*datasets[key][:2], r.data, datasets[key][2])
        except GrpormError as err:
            err.args = (f"run {r.run_id}: {err}",)
            raise


def _as_input_error(load: Callable, kind: type[GrpormError], what: str, fix: str):
    """`load()`; any failure that is not already a GrpormError is the input's fault here (a corrupt
    image, a truncated file a library chokes on...), so it becomes one line of `kind`."""
    try:
        return load()
    except GrpormError:
        raise
    except Exception as err:  # noqa: BLE001 - libraries raise many types on a bad file
        first = str(err).strip().splitlines()[0][:200] if str(err).strip() else ""
        raise kind(f"{what}: cannot be loaded ({type(err).__name__}{': ' + first if first else ''}); {fix}") from None


def run_matrix(runs: list[RunConfig], results: Path, checkpoints: Path, *, force: bool = False,
               stale_seconds: float = DEFAULT_STALE_SECONDS, dist: Dist = SINGLE,
               echo: Callable[..., None] = print) -> None:
    """Each run not finished and not locked by another process, in order; raises RunsFailed at the end
    if any failed, Interrupted at once on SIGINT/SIGTERM."""
    say = echo if dist.is_main else (lambda *a, **k: None)
    failed: list[tuple[RunConfig, GrpormError]] = []
    for i, r in enumerate(runs, 1):
        tag = f"[{i}/{len(runs)}] {r.run_id}"
        lock = RunLock(run_dir(results, r.experiment, r.run_id) / ".lock", stale_seconds)
        verdict = dist.from_main(lambda: _claim(r, results, lock, force))  # noqa: B023 - called at once
        if verdict != "run":
            say(f"{tag}: {verdict}")
            continue
        say(tag)
        try:
            record = execute_run(r, results, checkpoints, force=force, dist=dist)
        except GrpormError as err:
            if err.exit_code == 2:
                raise
            say(f"{tag} failed: {err}")
            failed.append((r, err))
            continue
        finally:
            if dist.is_main:
                lock.release()
        if dist.is_main:
            say(f"{tag}: {_headline(record)}")
        if dist.agree(STOP.requested):  # the signal came during evaluation: the run is done, stop before the next
            raise Interrupted(STOP.signum or signal.SIGTERM, f"{signal.Signals(STOP.signum or signal.SIGTERM).name} "
                              f"after run {r.run_id} finished")
    if failed:
        raise RunsFailed(_failure_summary(failed, results))


def _claim(r: RunConfig, results: Path, lock: RunLock, force: bool) -> str:
    """'run' with the lock held, else why this run is skipped."""
    finished = "finished already, skipped (--force reruns it)"
    if not force and is_finished(r, results):
        return finished
    try:
        lock.acquire()
    except Locked as err:
        return f"skipped, {err}"
    if not force and is_finished(r, results):  # finished by the lock's previous holder meanwhile
        lock.release()
        return finished
    return "run"


def _headline(record: dict) -> str:
    m = record["metrics"]
    took = f"({record['timing']['total_seconds']:.0f} s)"
    if "seg" in m:
        return f"mIoU {100 * m['seg']['miou']:.1f}  pixel acc {100 * m['seg']['pixel_acc']:.1f}  {took}"
    head = "—" if m["head_top1"] is None else f"{100 * m['head_top1']:.1f}"
    return f"head {head}  SR {100 * m['sr_top1']:.1f}  kNN@20 {100 * m['knn_top1'].get('20', float('nan')):.1f}  {took}"


def settings_to_tune(runs: list[RunConfig]) -> list[RunConfig]:
    """The first run of each tuning key among `runs`, in matrix order (pretrained rows and runs
    without tune.grid need no decision)."""
    first: dict[str, RunConfig] = {}
    for r in runs:
        if needs_decision(r):
            first.setdefault(tuning_key(r), r)
    return list(first.values())


def tune_matrix(settings: list[RunConfig], results: Path, *, force: bool = False, dist: Dist = SINGLE,
                echo: Callable[..., None] = print) -> None:
    """The decision of every setting not decided yet; one locked by another process is left to it."""
    say = echo if dist.is_main else (lambda *a, **k: None)
    for i, r in enumerate(settings, 1):
        tag = f"[{i}/{len(settings)}] {tuning_key(r)} {label(r)}"
        say(tag)
        _, how = decision_for(r, results, dist, force=force, wait=False, echo=echo)
        say(f"{tag}: {'decided already, kept (--force redoes it)' if how == 'found' else how}")


def _failure_summary(failed: list[tuple[RunConfig, GrpormError]], results: Path) -> str:
    if len(failed) == 1:
        r, err = failed[0]
        return f"run {r.run_id} failed: {err} (record: {run_dir(results, r.experiment, r.run_id) / 'record.json'})"
    return f"{len(failed)} runs failed: {', '.join(r.run_id for r, _ in failed)}; their records say why"
