"""The baseline: standard cross-entropy fine-tuning (docs/method.md, 'Baseline and reference rows')."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from grporm.objectives.common import flatten_queries, policy_stats
from grporm.training.labels import IGNORE_INDEX


def ce_loss(
    logits: torch.Tensor,
    targets: torch.Tensor,
    *,
    old_logits: torch.Tensor | None = None,
    ref_logits: torch.Tensor | None = None,
    generator: torch.Generator | None = None,
    ignore_index: int = IGNORE_INDEX,
) -> tuple[torch.Tensor, dict[str, float]]:
    """Mean cross-entropy over queries; logs the same policy statistics as GRPO-RM.

    `old_logits`, `ref_logits` and `generator` are what the training loop passes every objective;
    CE needs none of them. Any other keyword raises TypeError rather than being ignored."""
    del old_logits, ref_logits, generator
    logits, targets = flatten_queries(logits, targets, ignore_index=ignore_index)
    log_policy = F.log_softmax(logits.float(), dim=1)
    loss = F.nll_loss(log_policy, targets)
    # no advantages: no query is ever dropped (the same column as GRPO-RM's, so curves compare)
    return loss, {"loss": loss.item(), **policy_stats(log_policy, targets), "zero_adv_frac": 0.0}
