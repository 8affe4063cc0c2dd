"""Every evaluation of a run, from a feature extractor and the splits (docs/method.md, 'Evaluation protocols').

Per task (grporm.training.tasks holds which a run uses): `evaluate` gives the final test metrics of a
classification run (SR, kNN, head, ECE, per class, and the shifted-data protocols the config asks for),
`evaluate_segmentation` a segmentation run's (mIoU, pixel accuracy); `EpochProbe` / `SegProbe` the cheap
per-epoch probe `fit` calls; `val_score` / `seg_val_score` the validation score that picks a learning
rate. None of them know about the run that calls them: they see the model only through an `Extractor`.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch

from grporm.data import ImageSet, InputSpec, balanced_indices
from grporm.evaluate.calibration import expected_calibration_error, per_class_accuracy, top1
from grporm.evaluate.features import extract
from grporm.evaluate.knn import knn_accuracy
from grporm.evaluate.protocols import FrozenScorer, imbalance_metrics, ood_metrics, transfer_metrics
from grporm.evaluate.segmentation import confusion, segmentation_scores
from grporm.evaluate.softmax_regression import softmax_regression
from grporm.process import seeding
from grporm.process.allocator import keep_freed_memory
from grporm.process.distributed import SINGLE, Dist
from grporm.records.schema import HEADLINE_K, HEADLINE_KNN, MIOU, PIXEL_ACC, SR, VAL_HEAD, Metrics, SegScores


@dataclass
class Extractor:
    """Features and logits of image sets from `model`, preprocessed with `input_spec`."""

    model: torch.nn.Module
    input_spec: InputSpec
    batch_size: int
    device: torch.device
    autocast: bool = False
    channels_last: bool = False
    dist: Dist = SINGLE

    @classmethod
    def for_run(cls, model, input_spec: InputSpec, cfg, device: torch.device, dist: Dist = SINGLE) -> Extractor:
        keep_freed_memory()  # every forward pass reuses freed pages instead of faulting in new ones
        return cls(model, input_spec, cfg.eval.batch_size, device, cfg.train.precision == "bf16",
                   cfg.train.channels_last, dist)

    def __call__(self, images: ImageSet, desc: str) -> tuple[torch.Tensor, torch.Tensor]:
        """The whole set on every rank; under DDP each rank does its slice and all gather."""
        n = len(images)
        mine = images if not self.dist.active else images.subset(torch.arange(n)[self.dist.part(n)])
        feats, logits = self.here(mine, desc)
        return self.dist.gather_rows(feats, n), self.dist.gather_rows(logits, n)

    def here(self, images: ImageSet, desc: str) -> tuple[torch.Tensor, torch.Tensor]:
        """This process alone: for evaluations only rank 0 makes."""
        return extract(self.model, images, self.input_spec, self.batch_size, self.device, desc,
                       self.autocast, self.channels_last)


def _head_top1(logits: torch.Tensor, labels: torch.Tensor) -> float:
    return top1(logits.argmax(1), labels)


def seg_scores(extractor: Extractor, images: ImageSet, num_classes: int, desc: str) -> dict:
    """mIoU and pixel accuracy from a confusion matrix accumulated batch by batch."""
    conf = torch.zeros(num_classes, num_classes, dtype=torch.long)
    for start in range(0, len(images), extractor.batch_size):
        batch = images.subset(torch.arange(start, min(start + extractor.batch_size, len(images))))
        _, logits = extractor(batch, desc)
        conf += confusion(logits.argmax(1), batch.labels, num_classes)
    return segmentation_scores(conf)


def seg_val_score(extractor: Extractor, splits, eval_cfg, score: str = "head") -> float:
    """Validation mIoU, whatever `score` names (a segmentation run's only score)."""
    return seg_scores(extractor, splits.val, splits.num_classes, "val")[MIOU]


def val_score(extractor: Extractor, splits, eval_cfg, score: str = "head") -> float:
    """Validation score: head accuracy, or SR / kNN@20 of frozen features with the training split as
    reference (SR picks its L2 on validation, as the final evaluation does)."""
    val, train, dist = splits.val, splits.train, extractor.dist
    val_f, logits = extractor(val, "val")
    if score == "head":
        return _head_top1(logits, val.labels)
    train_f, _ = extractor(train, "train")
    value = None
    if dist.is_main:  # deterministic, but computed once and sent to the other ranks
        if score == "sr":
            value = softmax_regression(train_f, train.labels, val_f, val.labels, val_f, val.labels,
                                       l2_grid=tuple(eval_cfg.sr_l2_grid), max_iter=eval_cfg.sr_max_iter,
                                       num_classes=splits.num_classes)["val_top1"]
        else:
            value = knn_accuracy(train_f, train.labels, val_f, val.labels, ks=(HEADLINE_K,),
                                 temperature=eval_cfg.knn_temperature, num_classes=splits.num_classes)[HEADLINE_K]
    return dist.broadcast(value)


class EpochProbe:
    """The per-epoch probe `fit` calls (docs/method.md, 'Convergence probe'): validation head accuracy,
    and kNN@20 and SR from a fixed training subset (SR with the strongest L2 of eval.sr_l2_grid: the
    subset is small, and validation cannot both pick the strength and score it). `log` (e.g. the W&B
    tracker) gets each epoch's values."""

    def __init__(self, extractor: Extractor, splits, eval_cfg, subset_seed: int,
                 log: Callable[[int, dict], None] | None = None):
        self.extractor, self.splits, self.eval_cfg, self.log = extractor, splits, eval_cfg, log
        self.subset = self._subset(subset_seed)

    def _subset(self, seed: int):
        train = self.splits.train
        per_class = min(self.eval_cfg.convergence_per_class, int(torch.bincount(train.labels).min()))
        return train.subset(balanced_indices(train.labels, per_class, seeding.generator(seed, "subset")))

    def __call__(self, epoch: int) -> dict:
        metrics = self._measure()
        if self.log is not None:
            self.log(epoch, metrics)
        return metrics

    def _measure(self) -> dict:
        splits, cfg, is_main = self.splits, self.eval_cfg, self.extractor.dist.is_main
        train_feats, _ = self.extractor(self.subset, "probe")
        val_feats, val_logits = self.extractor(splits.val, "probe val")
        if not is_main:
            return {}  # only rank 0 records metrics
        knn = knn_accuracy(train_feats, self.subset.labels, val_feats, splits.val.labels, ks=(HEADLINE_K,),
                           temperature=cfg.knn_temperature, num_classes=splits.num_classes)
        sr = softmax_regression(train_feats, self.subset.labels, val_feats, splits.val.labels,
                                l2_grid=[max(cfg.sr_l2_grid)], max_iter=cfg.sr_max_iter, num_classes=splits.num_classes)
        return {VAL_HEAD: _head_top1(val_logits, splits.val.labels), HEADLINE_KNN: knn[HEADLINE_K], SR: sr["top1"]}


class SegProbe(EpochProbe):
    """The segmentation run's per-epoch probe: validation mIoU and pixel accuracy (no training subset)."""

    def _subset(self, seed: int):
        return None

    def _measure(self) -> dict:
        scores = seg_scores(self.extractor, self.splits.val, self.splits.num_classes, "probe val")
        return {f"val_{MIOU}": scores[MIOU], f"val_{PIXEL_ACC}": scores[PIXEL_ACC]} if self.extractor.dist.is_main else {}


def evaluate_segmentation(extractor: Extractor, splits, cfg, has_head: bool) -> Metrics:
    """A segmentation run's test metrics: mIoU, pixel accuracy and the IoU per class."""
    scores = seg_scores(extractor, splits.test, splits.num_classes, "test")
    return Metrics(seg=SegScores(scores[MIOU], scores[PIXEL_ACC]), per_class={"iou": scores["iou"]})


def evaluate(extractor: Extractor, splits, cfg, has_head: bool) -> Metrics | None:
    """A classification run's test metrics; features are extracted once per split. None on DDP ranks
    other than 0 (the features are everywhere, the metrics are needed once)."""
    num_classes = splits.num_classes
    train_f, _ = extractor(splits.train, "features train")
    val_f, val_z = extractor(splits.val, "features val")
    test_f, test_z = extractor(splits.test, "features test")
    if not extractor.dist.is_main:
        return None
    sr = softmax_regression(train_f, splits.train.labels, test_f, splits.test.labels, val_f, splits.val.labels,
                            l2_grid=tuple(cfg.eval.sr_l2_grid), max_iter=cfg.eval.sr_max_iter, num_classes=num_classes)
    knn = knn_accuracy(train_f, splits.train.labels, test_f, splits.test.labels, ks=tuple(cfg.eval.knn_k),
                       temperature=cfg.eval.knn_temperature, num_classes=num_classes)
    metrics = Metrics(sr_top1=sr["top1"], sr_l2=sr["l2"], knn_top1=dict(knn), per_class={"sr": sr["per_class"]})
    if has_head:
        pred = test_z.argmax(1)
        metrics.head_top1 = _head_top1(test_z, splits.test.labels)
        metrics.val_head_top1 = _head_top1(val_z, splits.val.labels)
        metrics.ece = expected_calibration_error(test_z.softmax(1), splits.test.labels, cfg.eval.ece_bins)
        metrics.per_class["head"] = per_class_accuracy(pred, splits.test.labels, num_classes)
    scorer = FrozenScorer(train_f, splits.train.labels, sr["probe"], num_classes, cfg.eval.knn_temperature, has_head)
    _shifted(metrics, extractor, splits, cfg, scorer, test_f, test_z)
    return metrics


def _shifted(metrics: Metrics, extractor: Extractor, splits, cfg, scorer: FrozenScorer,
             test_f: torch.Tensor, test_z: torch.Tensor) -> None:
    """Out-of-distribution (corruptions, transfer) and imbalance metrics, each only when configured.

    SR is the probe fitted on the clean training features; kNN uses those features too. Runs on
    rank 0 alone (the others have returned), so it extracts without gathering."""
    if cfg.eval.ood.corruptions:
        ood = cfg.eval.ood
        metrics.ood, metrics.ood_clean = ood_metrics(extractor.here, splits.test, scorer, ood.corruptions,
                                                     ood.severities, ood.test_per_class, seeding.split_seed(cfg),
                                                     ood.seed)
    if cfg.eval.transfer:
        metrics.transfer = transfer_metrics(extractor.here, cfg.data, cfg.eval.transfer, scorer, splits.classes,
                                            cfg.eval.transfer_split)
    if cfg.data.imbalance_factor is not None:
        metrics.imbalance = imbalance_metrics(scorer.predictions(test_f, test_z), splits.test.labels,
                                              splits.train.labels, splits.num_classes, cfg.eval.shot_thresholds)
