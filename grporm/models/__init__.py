"""Backbones (timm models pooled to features) and offline packaged weights."""
from grporm.models.backbones import Backbone, create_backbone, with_pooling
from grporm.models.packaged import PACKAGED_WEIGHTS

__all__ = ["Backbone", "create_backbone", "with_pooling", "PACKAGED_WEIGHTS"]
