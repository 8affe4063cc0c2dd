"""The baseline: standard cross-entropy fine-tuning (SPEC section 3)."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from grporm.objectives.common import flatten_queries, policy_stats


def ce_loss(
    logits: torch.Tensor, targets: torch.Tensor, *, ignore_index: int = -100, **_: object
) -> tuple[torch.Tensor, dict[str, float]]:
    """Mean cross-entropy over queries; logs the same policy statistics as GRPO-RM."""
    logits, targets = flatten_queries(logits, targets, ignore_index=ignore_index)
    log_policy = F.log_softmax(logits.float(), dim=1)
    loss = F.nll_loss(log_policy, targets)
    return loss, {"loss": loss.item(), **policy_stats(log_policy, targets)}
