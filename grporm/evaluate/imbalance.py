"""Accuracy on long-tailed training data, split by how many training images a class had (docs/method.md, 'Imbalance')."""
from __future__ import annotations

import torch

from grporm.evaluate.calibration import top1


def shot_groups(train_counts: torch.Tensor, thresholds: tuple[int, int]) -> dict[str, torch.Tensor]:
    """Class masks: few (< low), medium (low..high), many (> high), as in Liu et al. 2019 (20, 100)."""
    low, high = thresholds
    return {"many": train_counts > high, "medium": (train_counts >= low) & (train_counts <= high),
            "few": train_counts < low}


def shot_accuracy(pred: torch.Tensor, labels: torch.Tensor, train_counts: torch.Tensor,
                  thresholds: tuple[int, int] = (20, 100)) -> dict[str, float | None]:
    """Overall accuracy and the mean per-class accuracy of each shot group (None if it is empty)."""
    num_classes = len(train_counts)
    correct = torch.bincount(labels[pred == labels], minlength=num_classes).float()
    total = torch.bincount(labels, minlength=num_classes).float()
    per_class = correct / total.clamp_min(1)
    out: dict[str, float | None] = {"overall": top1(pred, labels)}
    for name, mask in shot_groups(train_counts, thresholds).items():
        mask = mask & (total > 0)
        out[name] = per_class[mask].mean().item() if mask.any() else None
    return out
