"""A linear segmentation head on one feature map of the backbone, upsampled to the input size."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from grporm.models.classifier import BackboneWithHead


def feature_channels(backbone: nn.Module, index: int) -> int:
    """Channels of timm's intermediate `index` (a CNN stage, or a ViT block's patch tokens)."""
    info = backbone.feature_info
    return info[index]["num_chs"]


class Segmenter(BackboneWithHead):
    def __init__(self, backbone: nn.Module, num_classes: int, feature_index: int, freeze_backbone: bool = False):
        head = nn.Conv2d(feature_channels(backbone, feature_index), num_classes, kernel_size=1)
        super().__init__(backbone, head, freeze_backbone)
        self.feature_index = feature_index

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        (fmap,) = self.backbone.forward_intermediates(x, indices=[self.feature_index], intermediates_only=True)
        return fmap

    def features_and_logits(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Globally pooled feature map (for the frozen-feature protocols) and per-pixel logits."""
        fmap = self.forward_features(x)
        logits = F.interpolate(self.head(fmap), size=x.shape[-2:], mode="bilinear", align_corners=False)
        return fmap.mean(dim=(2, 3)), logits

    def forward(self, x: torch.Tensor, with_features: bool = False) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """Per-pixel logits, or (pooled features, logits) with `with_features` (see Classifier.forward)."""
        features, logits = self.features_and_logits(x)
        return (features, logits) if with_features else logits
