"""Pieces every objective shares: one row per query, and the policy statistics both log."""
from __future__ import annotations

import torch


def flatten_queries(
    logits: torch.Tensor, targets: torch.Tensor, *others: torch.Tensor | None, ignore_index: int = -100
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
