"""Backbone + a fresh linear head: the model every method fine-tunes."""
from __future__ import annotations

import torch
from torch import nn


class BackboneWithHead(nn.Module):
    """A backbone and a head; with `freeze_backbone` (linear probing) only the head learns."""

    def __init__(self, backbone: nn.Module, head: nn.Module, freeze_backbone: bool = False):
        super().__init__()
        self.backbone = backbone
        self.head = head
        self.freeze_backbone = freeze_backbone
        if freeze_backbone:
            self.backbone.requires_grad_(False)

    def train(self, mode: bool = True) -> "BackboneWithHead":
        super().train(mode)
        if self.freeze_backbone:
            self.backbone.eval()  # batch-norm statistics stay as pretrained
        return self


class Classifier(BackboneWithHead):
    def __init__(self, backbone: nn.Module, feature_dim: int, num_classes: int, freeze_backbone: bool = False):
        super().__init__(backbone, nn.Linear(feature_dim, num_classes), freeze_backbone)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.backbone(x)

    def features_and_logits(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        features = self.backbone(x)
        return features, self.head(features)

    def forward(self, x: torch.Tensor, with_features: bool = False) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """Logits, or (features, logits) with `with_features`: the training loop asks through the
        forward (not `features_and_logits`) so that DDP and torch.compile see the call."""
        features = self.backbone(x)
        logits = self.head(features)
        return (features, logits) if with_features else logits
