"""An embedded semantic-segmentation task built from real images (SPEC section 2, issue 3).

Every canvas holds 1..max_items real items (Fashion-MNIST or MNIST images) pasted at random
places; the mask gives each item pixel brighter than `threshold` its class + 1, everything else
background (0). Later items overwrite earlier ones where they overlap, in the image and the mask.
"""
from __future__ import annotations

import torch

from grporm.data.sources import ImageSet

BACKGROUND = "background"


def make_canvases(items: ImageSet, count: int, canvas: int, max_items: int, threshold: int,
                  generator: torch.Generator) -> ImageSet:
    """`count` canvases (uint8 (N, 1, S, S)) with int64 masks (N, S, S) over background + classes."""
    _, _, h, w = items.images.shape
    if canvas < max(h, w):
        raise ValueError(f"canvas {canvas} is smaller than the items ({h}x{w})")
    images = torch.zeros(count, 1, canvas, canvas, dtype=torch.uint8)
    masks = torch.zeros(count, canvas, canvas, dtype=torch.long)
    n_items = torch.randint(1, max_items + 1, (count,), generator=generator)
    for i in range(count):
        picks = torch.randint(0, len(items), (int(n_items[i]),), generator=generator)
        for j in picks.tolist():
            top = int(torch.randint(0, canvas - h + 1, (1,), generator=generator))
            left = int(torch.randint(0, canvas - w + 1, (1,), generator=generator))
            item = items.images[j, 0]
            on = item > threshold
            region = (slice(top, top + h), slice(left, left + w))
            images[i, 0][region] = torch.where(on, item, images[i, 0][region])
            masks[i][region] = torch.where(on, items.labels[j] + 1, masks[i][region])
    return ImageSet(images, masks, [BACKGROUND, *items.classes])
