"""Training diagnostics logged next to the objective's statistics on every logged step, under the
same names for every method so that CE and GRPO-RM curves compare (docs/method.md, 'Readings of the
objective': why the full group's head keeps growing).

Queries are those of the objectives: an image, or a pixel of a segmentation mask (ignore_index pixels
excluded); features are one vector per image (the pooled feature map in segmentation). Under DDP each
rank computes them on its own slice and rank 0's are logged. `zero_adv_frac` comes from the objective
itself (0 for CE).
"""
from __future__ import annotations

import torch
from torch import nn

from grporm.objectives.common import flatten_queries
from grporm.training.labels import IGNORE_INDEX


@torch.no_grad()
def logit_gap(logits: torch.Tensor, targets: torch.Tensor, ignore_index: int = IGNORE_INDEX) -> float:
    """Max minus min logit of each query, mean over queries."""
    rows, _ = flatten_queries(logits, targets, ignore_index=ignore_index)
    rows = rows.float()
    return (rows.amax(dim=1) - rows.amin(dim=1)).mean().item()


@torch.no_grad()
def head_weight_norm(head: nn.Module) -> float:
    """Frobenius norm of the classifier head's weight (a linear layer or a 1x1 convolution)."""
    return head.weight.float().norm().item()


@torch.no_grad()
def feature_norm(features: torch.Tensor) -> float:
    """Mean L2 norm of the (B, D) backbone features."""
    return features.float().norm(dim=1).mean().item()


@torch.no_grad()
def miscls_grad_share(grad_logits: torch.Tensor, logits: torch.Tensor, targets: torch.Tensor,
                      ignore_index: int = IGNORE_INDEX) -> float:
    """Share of the logit gradient that misclassified queries carry: sum over misclassified queries of
    ||dL/dz_q|| over the sum over all queries (0 when no query has a gradient)."""
    grads, labels, rows = flatten_queries(grad_logits, targets, logits, ignore_index=ignore_index)
    norms = grads.float().norm(dim=1)
    total = norms.sum()
    if total == 0:
        return 0.0
    wrong = rows.argmax(dim=1) != labels
    return (norms[wrong].sum() / total).item()


def training_diagnostics(loss: torch.Tensor, logits: torch.Tensor, features: torch.Tensor,
                         targets: torch.Tensor, head: nn.Module) -> dict[str, float]:
    """logit_gap, head_weight_norm, feature_norm, miscls_grad_share of one step, before its update.

    Takes dL/dz with torch.autograd.grad and keeps the graph, so the step's backward runs after it
    unchanged; it costs one backward through the loss alone, which is why the loop calls this on
    logged steps only."""
    (grad_logits,) = torch.autograd.grad(loss, logits, retain_graph=True)
    return {
        "logit_gap": logit_gap(logits, targets),
        "head_weight_norm": head_weight_norm(head),
        "feature_norm": feature_norm(features),
        "miscls_grad_share": miscls_grad_share(grad_logits, logits, targets),
    }
