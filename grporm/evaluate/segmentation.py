"""Segmentation metrics from a confusion matrix: mIoU over classes and pixel accuracy (docs/method.md, 'Segmentation mIoU')."""
from __future__ import annotations

import torch

from grporm.training.labels import IGNORE_INDEX


def confusion(pred: torch.Tensor, target: torch.Tensor, num_classes: int, ignore_index: int = IGNORE_INDEX) -> torch.Tensor:
    """(C, C) counts, rows = true class, columns = predicted; ignored pixels left out."""
    keep = target != ignore_index
    index = target[keep] * num_classes + pred[keep]
    return torch.bincount(index, minlength=num_classes**2).reshape(num_classes, num_classes)


def segmentation_scores(conf: torch.Tensor) -> dict:
    """mIoU over the classes that occur (in truth or prediction), pixel accuracy, per-class IoU."""
    conf = conf.double()
    tp = conf.diag()
    union = conf.sum(0) + conf.sum(1) - tp
    iou = torch.where(union > 0, tp / union.clamp_min(1), torch.full_like(tp, float("nan")))
    present = union > 0
    return {
        "miou": iou[present].mean().item() if present.any() else float("nan"),
        "pixel_acc": (tp.sum() / conf.sum().clamp_min(1)).item(),
        "iou": iou.tolist(),
    }
