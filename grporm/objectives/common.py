"""Pieces every objective shares: one row per query, the policy statistics both log, and the
optional feature-uniformity term (docs/method.md, 'Readings of the objective')."""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from grporm.training.labels import IGNORE_INDEX


def flatten_queries(
    logits: torch.Tensor, targets: torch.Tensor, *others: torch.Tensor | None, ignore_index: int = IGNORE_INDEX
) -> tuple[torch.Tensor | None, ...]:
    """(B, C, *S) logits and (B, *S) targets -> one query per row, ignore_index rows dropped.

    Segmentation is thus the classification objective applied per pixel.
    """
    def rows(t: torch.Tensor | None) -> torch.Tensor | None:
        if t is None or t.dim() == 2:
            return t
        return t.movedim(1, -1).reshape(-1, t.shape[1])

    flat_targets = targets.reshape(-1)
    keep = flat_targets != ignore_index
    return (rows(logits)[keep], flat_targets[keep], *(None if t is None else rows(t)[keep] for t in others))


@torch.no_grad()
def policy_stats(log_policy: torch.Tensor, targets: torch.Tensor) -> dict[str, float]:
    """Entropy, mean pi(y) and argmax accuracy of a (N, C) log-policy."""
    probs = log_policy.exp()
    return {
        "entropy": -(probs * log_policy).sum(dim=1).mean().item(),
        "pi_y": probs.gather(1, targets[:, None]).mean().item(),
        "acc": (log_policy.argmax(dim=1) == targets).float().mean().item(),
    }


def feature_uniformity_loss(features: torch.Tensor, t: float = 2.0) -> torch.Tensor:
    """Wang & Isola (2020)'s uniformity of (B, D) features: log mean_{i != j} exp(-t ||f_i - f_j||^2)
    over the L2-normalised rows; lower = spread more evenly on the sphere. Needs B >= 2.

    Under DDP each rank sees its own slice, so the term is per rank (pairs across ranks are not
    formed)."""
    if len(features) < 2:
        raise ValueError(f"feature uniformity needs at least 2 images per batch (got {len(features)})")
    unit = F.normalize(features.float(), dim=1)
    sq_dist = torch.pdist(unit).square()  # the i < j pairs: the mean over i != j is the same
    return torch.logsumexp(-t * sq_dist, dim=0) - math.log(len(sq_dist))
