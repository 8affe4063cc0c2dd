"""One run from config to record: data, model, learning-rate search, training, evaluation."""
from __future__ import annotations

import os
import resource
import shutil
import time
from pathlib import Path

import torch

from grporm.config import RunConfig
from grporm.data import ImageSet, Splits, balanced_indices, make_splits
from grporm.evaluate import (
    expected_calibration_error,
    knn_accuracy,
    per_class_accuracy,
    softmax_regression,
)
from grporm.evaluate.features import extract
from grporm.models import create_backbone
from grporm.models.classifier import Classifier
from grporm.objectives import build_objective
from grporm.records import environment, now, read_record, run_dir, write_csv, write_json
from grporm.tracking import Tracker
from grporm.train import fit


def pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def is_finished(run: RunConfig, results: Path) -> bool:
    record = read_record(run_dir(results, run.experiment, run.run_id) / "record.json")
    return bool(record) and record.get("status") == "finished" and record.get("config_hash") == run.config_hash()


def checkpoint_dir(run: RunConfig, checkpoints: Path) -> Path:
    return run_dir(checkpoints, run.experiment, run.run_id)


class Run:
    """Holds what every stage of one run shares; `execute` reads as the stages in order."""

    def __init__(self, run: RunConfig, results: Path, checkpoints: Path):
        self.cfg = run
        self.out = run_dir(results, run.experiment, run.run_id)
        self.ckpt = checkpoint_dir(run, checkpoints)
        self.device = pick_device(run.train.device)
        self.autocast = run.train.precision == "bf16"
        self.steps: list[dict] = []
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
            "started_at": now(),
            "finished_at": None,
        }

    # -- stages -------------------------------------------------------------------------------
    def execute(self) -> dict:
        cfg = self.cfg
        torch.set_num_threads(cfg.train.threads or os.cpu_count() or 1)
        self.record["env"] = environment()
        tic = time.perf_counter()
        self.splits = make_splits(cfg.data)
        self.model, self.input_spec = self._build_model()
        self.initial_state = {k: v.clone() for k, v in self.model.state_dict().items()}
        self.tracker = Tracker(cfg)
        self.record["wandb"] = self.tracker.info
        write_json(self.out / "record.json", self.record)
        try:
            fit_result = None
            if cfg.method != "pretrained":
                lr = self._search_lr()
                fit_result = self._train(lr)
            eval_tic = time.perf_counter()
            self.record["metrics"] = self._evaluate()
            self.record["timing"] = self._timing(fit_result, time.perf_counter() - eval_tic, time.perf_counter() - tic)
            self.record["status"] = "finished"
        except BaseException as err:
            self.record["status"] = "failed"
            self.record["error"] = f"{type(err).__name__}: {err}"
            raise
        finally:
            self.record["finished_at"] = now()
            self.record["wandb"] = self.tracker.info
            if self.steps:
                write_csv(self.out / "steps.csv", self.steps)
            write_json(self.out / "record.json", self.record)
            self.tracker.finish(self._summary(), exit_code=0 if self.record["status"] == "finished" else 1)
        return self.record

    def _build_model(self) -> tuple[Classifier, tuple]:
        cfg = self.cfg
        torch.manual_seed(cfg.seed)  # same head (and random backbone) for every method of a seed
        backbone = create_backbone(cfg.model.name, cfg.model.weights, cfg.data.image_size)
        model = Classifier(backbone.module, backbone.feature_dim, self.splits.num_classes,
                           freeze_backbone=cfg.method == "linear_probe").to(self.device)
        return model, (cfg.data.image_size, backbone.mean, backbone.std)

    def _search_lr(self) -> float:
        """Every method gets the same grid and budget; the choice is by validation head accuracy."""
        cfg = self.cfg
        grid = cfg.train.lr_grid or [cfg.train.lr]
        if len(grid) == 1:
            self.record["lr"] = grid[0]
            return grid[0]
        saved = self.ckpt / "lr_search.json"
        found = read_record(saved)
        if found is None:
            data = self.splits.train
            if cfg.train.search_train_per_class is not None:
                per_class = min(cfg.train.search_train_per_class, int(torch.bincount(data.labels).min()))
                data = data.subset(balanced_indices(data.labels, per_class, torch.Generator().manual_seed(cfg.data.split_seed)))
            found = []
            for lr in grid:
                self.model.load_state_dict(self.initial_state)
                fit(self.model, build_objective(cfg), data, cfg, lr, cfg.train.search_epochs, self.input_spec,
                    self.device, desc=f"lr search {lr:g}")
                found.append({"lr": lr, "val_top1": self._head_accuracy(self.splits.val)})
            write_json(saved, {"results": found})
        else:
            found = found["results"]
        best = max(found, key=lambda row: (row["val_top1"], -row["lr"]))
        self.record["lr_search"], self.record["lr"] = found, best["lr"]
        self.tracker.log({f"lr_search/val_top1@{row['lr']:g}": row["val_top1"] for row in found})
        self.model.load_state_dict(self.initial_state)
        return best["lr"]

    def _train(self, lr: float):
        cfg = self.cfg
        conv_train = self._convergence_subset()

        def on_epoch(epoch: int) -> dict:
            metrics = self._convergence_metrics(conv_train)
            self.tracker.log({f"epoch/{k}": v for k, v in metrics.items()} | {"epoch": epoch})
            return metrics

        def on_step(step: int, stats: dict) -> None:
            self.steps.append({"step": step, **stats})
            self.tracker.log({f"train/{k}": v for k, v in stats.items()}, step=None)

        result = fit(self.model, build_objective(cfg), self.splits.train, cfg, lr, cfg.train.epochs, self.input_spec,
                     self.device, checkpoint=self.ckpt / "last.pt", on_epoch=on_epoch, on_step=on_step,
                     desc=cfg.method)
        write_csv(self.out / "history.csv", result.history)
        return result

    # -- evaluation ---------------------------------------------------------------------------
    def _extract(self, images: ImageSet, desc: str) -> tuple[torch.Tensor, torch.Tensor]:
        return extract(self.model, images, self.input_spec, self.cfg.eval.batch_size, self.device, desc, self.autocast)

    def _head_accuracy(self, images: ImageSet) -> float:
        _, logits = self._extract(images, "val")
        return (logits.argmax(1) == images.labels).float().mean().item()

    def _convergence_subset(self) -> ImageSet:
        train = self.splits.train
        per_class = min(self.cfg.eval.convergence_per_class, int(torch.bincount(train.labels).min()))
        return train.subset(balanced_indices(train.labels, per_class, torch.Generator().manual_seed(self.cfg.data.split_seed)))

    def _convergence_metrics(self, conv_train: ImageSet) -> dict:
        """Cheap per-epoch probe: val head accuracy and kNN@20 from a fixed training subset."""
        train_feats, _ = self._extract(conv_train, "probe")
        val_feats, val_logits = self._extract(self.splits.val, "probe val")
        knn = knn_accuracy(train_feats, conv_train.labels, val_feats, self.splits.val.labels, ks=(20,),
                           temperature=self.cfg.eval.knn_temperature, num_classes=self.splits.num_classes)
        return {"val_head_top1": (val_logits.argmax(1) == self.splits.val.labels).float().mean().item(),
                "knn20_top1": knn[20]}

    def _evaluate(self) -> dict:
        """SPEC 4: features extracted once per split, then SR, kNN, head accuracy and calibration."""
        cfg, splits, num_classes = self.cfg, self.splits, self.splits.num_classes
        train_f, _ = self._extract(splits.train, "features train")
        val_f, val_z = self._extract(splits.val, "features val")
        test_f, test_z = self._extract(splits.test, "features test")
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
        rows = [[name, *(metrics["per_class"][m][i] for m in metrics["per_class"])]
                for i, name in enumerate(splits.classes)]
        self.tracker.table("per_class_accuracy", ["class", *metrics["per_class"]], rows)
        return metrics

    def _timing(self, fit_result, eval_seconds: float, total_seconds: float) -> dict:
        peak = (torch.cuda.max_memory_allocated() / 2**20 if self.device.type == "cuda"
                else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
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


def execute_run(run: RunConfig, results: Path, checkpoints: Path, force: bool = False) -> dict:
    if force:
        shutil.rmtree(checkpoint_dir(run, checkpoints), ignore_errors=True)
    stale = checkpoint_dir(run, checkpoints) / "config_hash"
    if stale.exists() and stale.read_text().strip() != run.config_hash():
        shutil.rmtree(stale.parent)  # a checkpoint of another config must never be resumed
    stale.parent.mkdir(parents=True, exist_ok=True)
    stale.write_text(run.config_hash())
    return Run(run, results, checkpoints).execute()
