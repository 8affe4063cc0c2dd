"""Classification metrics on predictions: top-1 accuracy, expected calibration error, per-class accuracy."""

from __future__ import annotations

import math

import torch


def top1(pred: torch.Tensor, labels: torch.Tensor) -> float:
    """Fraction of predictions equal to the labels (top-1 accuracy, in [0, 1])."""
    return (pred == labels).float().mean().item()


def expected_calibration_error(probs: torch.Tensor, labels: torch.Tensor, n_bins: int = 15) -> float:
    """ECE of the top-1 prediction: sum over equal-width confidence bins of |acc - conf| * fraction.

    Bins are (lo, hi] as in Guo et al. (2017); a confidence of exactly 0 falls in the first bin.
    """
    if probs.ndim != 2 or labels.shape != (probs.shape[0],):
        raise ValueError("probs must be (N, C) and labels (N,)")
    if probs.shape[0] == 0:
        raise ValueError("ECE of an empty set is undefined")
    if n_bins < 1:
        raise ValueError(f"n_bins must be >= 1, got {n_bins}")
    # float64 so the bin sums are exact enough for hand-checked values.
    conf, pred = probs.double().max(dim=1)
    correct = (pred == labels.to(pred.device)).double()
    inner_edges = torch.linspace(0, 1, n_bins + 1, dtype=torch.float64, device=conf.device)[1:-1]
    # right=False: bin i holds edges[i] < conf <= edges[i+1].
    bins = torch.bucketize(conf, inner_edges, right=False)
    acc_sum = torch.bincount(bins, weights=correct, minlength=n_bins)
    conf_sum = torch.bincount(bins, weights=conf, minlength=n_bins)
    # |acc - conf| * (count / N) == |acc_sum - conf_sum| / N; empty bins contribute 0.
    return ((acc_sum - conf_sum).abs().sum() / probs.shape[0]).item()


def per_class_accuracy(pred: torch.Tensor, labels: torch.Tensor, num_classes: int) -> list[float]:
    """Accuracy restricted to each true class; nan for a class with no sample."""
    if pred.shape != labels.shape or pred.ndim != 1:
        raise ValueError("pred and labels must be 1-D and the same length")
    labels = labels.long()
    if labels.numel() and int(labels.max()) >= num_classes:
        raise ValueError(f"label {int(labels.max())} out of range for {num_classes} classes")
    correct = (pred.to(labels.device).long() == labels).double()
    total = torch.bincount(labels, minlength=num_classes).double()
    hits = torch.bincount(labels, weights=correct, minlength=num_classes)
    return [h / t if t > 0 else math.nan for h, t in zip(hits.tolist(), total.tolist())]
