"""An embedded semantic-segmentation task built from real images (docs/method.md, 'Segmentation').

Every canvas holds 1..max_items real items (Fashion-MNIST or MNIST images) pasted at random
places; the mask gives each item pixel brighter than `threshold` its class + 1, everything else
background (0). Later items overwrite earlier ones where they overlap, in the image and the mask.
"""
from __future__ import annotations

import torch

from grporm.data.sources import DATASETS, ImageSet
from grporm.data.splits import Splits, make_splits
from grporm.errors import ConfigError
from grporm.process import seeding

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


def _test_subset(test: ImageSet, count: int, generator: torch.Generator) -> ImageSet:
    """`count` test images drawn with `generator` (all of them, in order, when there are no more)."""
    if count >= len(test):
        return test
    return test.subset(torch.randperm(len(test), generator=generator)[:count].sort().values)


def segmentation_splits(data_cfg, seg_cfg, seed: int):
    """Train / val / test for the segmentation task, drawn with the run's split seed `seed`
    (grporm.process.seeding.split_seed).

    A data set that comes with masks (e.g. VOC) is split as it is: validation images are carved
    from its training split, and a test split larger than seg.test_images gives a random subset.
    Any classification data set becomes canvases of its items, each split pasted from the items of
    the matching classification split.
    """
    generator = seeding.generator(seed, "canvases")
    train_full, test = DATASETS.get(data_cfg.name)(data_cfg)
    if train_full.labels.ndim == 3:
        if seg_cfg.val_images >= len(train_full):  # else an empty training split fails deep in the loop
            raise ConfigError(f"seg.val_images={seg_cfg.val_images} leaves none of the {len(train_full)} training "
                              f"images of {data_cfg.name} to train on; set seg.val_images below {len(train_full)}")
        order = torch.randperm(len(train_full), generator=generator)
        val = train_full.subset(order[:seg_cfg.val_images].sort().values)
        train = train_full.subset(order[seg_cfg.val_images:][:seg_cfg.train_images].sort().values)
        return Splits(train=train, val=val, test=_test_subset(test, seg_cfg.test_images, generator))
    items = make_splits(data_cfg, seed, (train_full, test))
    size = data_cfg.image_size

    def canvases(split: ImageSet, count: int) -> ImageSet:
        return make_canvases(split, count, size, seg_cfg.max_items, seg_cfg.threshold, generator)

    return Splits(train=canvases(items.train, seg_cfg.train_images), val=canvases(items.val, seg_cfg.val_images),
                  test=canvases(items.test, seg_cfg.test_images))
