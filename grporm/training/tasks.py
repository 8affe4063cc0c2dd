"""What a run's task decides, in one place: its data splits and the head on the backbone. A
classification run learns a label per image (a linear head on the pooled feature; SR, kNN and the
head's accuracy evaluate it), a segmentation run a label per pixel (a 1x1-convolution head on a feature
map; mIoU and pixel accuracy evaluate it), and how each is scored: the validation score that picks a
learning rate, the per-epoch probe and the final evaluation (grporm.evaluate.suite). `task_of(cfg)` is the
run's task."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch

from grporm.config import RunConfig
from grporm.data import make_splits
from grporm.data.segmentation import segmentation_splits
from grporm.evaluate.suite import EpochProbe, SegProbe, evaluate, evaluate_segmentation, seg_val_score, val_score
from grporm.models import Backbone
from grporm.models.classifier import Classifier
from grporm.models.segmentation import Segmenter
from grporm.registry import Registry


@dataclass(frozen=True)
class Task:
    """`splits(cfg, seed)`: the run's data; `model(backbone, num_classes, cfg, frozen)`: backbone + head;
    `val_score(extractor, splits, eval_cfg, score)`, `probe(extractor, splits, eval_cfg, subset_seed, log)` and
    `evaluate(extractor, splits, cfg, has_head)`: how it is scored (grporm.evaluate.suite)."""
    name: str
    splits: Callable[[RunConfig, int], object]
    model: Callable[[Backbone, int, RunConfig, bool], torch.nn.Module]
    val_score: Callable[..., float]
    probe: type[EpochProbe]
    evaluate: Callable[..., object]


TASKS: Registry[Task] = Registry("task")
TASKS.register("classification", "a label per image")(Task(
    "classification",
    splits=lambda cfg, seed: make_splits(cfg.data, seed),
    model=lambda backbone, num_classes, cfg, frozen: Classifier(backbone.module, backbone.feature_dim, num_classes, frozen),
    val_score=val_score, probe=EpochProbe, evaluate=evaluate,
))
TASKS.register("segmentation", "a label per pixel, on canvases of pasted items (the seg section)")(Task(
    "segmentation",
    splits=lambda cfg, seed: segmentation_splits(cfg.data, cfg.seg, seed),
    model=lambda backbone, num_classes, cfg, frozen: Segmenter(backbone.module, num_classes, cfg.seg.feature_index, frozen),
    val_score=seg_val_score, probe=SegProbe, evaluate=evaluate_segmentation,
))


def task_of(cfg: RunConfig) -> Task:
    return TASKS.get(cfg.task)
