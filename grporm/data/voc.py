"""Pascal VOC 2012 segmentation, torchvision's layout: `VOCdevkit/VOC2012/{JPEGImages,
SegmentationClass, ImageSets/Segmentation/{train,val}.txt}`, read with PIL (no torchvision
download). Images are resized to `data.image_size` square (bilinear), masks with nearest neighbour;
21 classes with background; the border label 255 becomes -100 (ignored). train = train.txt (1464
images), test = val.txt (1449 images).
"""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from grporm.data.sources import (
    DATASETS,
    IGNORE_INDEX,
    LOCATORS,
    ImageSet,
    Location,
    data_root,
    decode_images,
    locate,
    missing_error,
    threads,
)
from grporm.errors import DataMissingError, first_line

if TYPE_CHECKING:
    from grporm.config import DataConfig

VOC_CLASSES = [
    "background", "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow",
    "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa", "train", "tvmonitor",
]
VOC_BORDER = 255
VOC_NEEDS = ["JPEGImages", "SegmentationClass", "ImageSets/Segmentation/train.txt", "ImageSets/Segmentation/val.txt"]


def _voc_complete(folder: Path) -> bool:
    return all((folder / n).exists() for n in VOC_NEEDS)


@LOCATORS.register("voc2012_seg")
def locate_voc2012_seg(cfg: "DataConfig") -> Location:
    root = data_root(cfg, "voc2012_seg")
    hint = (f"extract http://host.robots.ox.ac.uk/pascal/VOC/voc2012/VOCtrainval_11-May-2012.tar into {root} "
            "(or set data.root=DIR) giving VOCdevkit/VOC2012/{JPEGImages,SegmentationClass,ImageSets} "
            "(data.download is not supported)")
    return locate([root / "VOCdevkit" / "VOC2012", root / "VOC2012", root], _voc_complete, hint)


def _read_voc_split(folder: Path, split: str, size: int) -> ImageSet:
    from PIL import Image

    ids = [line.strip() for line in (folder / "ImageSets" / "Segmentation" / f"{split}.txt").read_text().splitlines() if line.strip()]
    if not ids:
        raise DataMissingError(f"{folder}/ImageSets/Segmentation/{split}.txt lists no images")
    images = decode_images([folder / "JPEGImages" / f"{i}.jpg" for i in ids], (size, size))
    masks = np.empty((len(ids), size, size), dtype=np.int64)

    def one(k: int) -> None:
        path = folder / "SegmentationClass" / f"{ids[k]}.png"
        try:
            with Image.open(path) as im:
                if im.mode not in ("P", "L"):  # an RGB-coloured mask cannot be read as class indices
                    raise DataMissingError(f"{path}: mask mode {im.mode}, expected a palette (P) or grey (L) PNG of class indices")
                mask = np.asarray(im.resize((size, size), Image.NEAREST), dtype=np.int64)
        except DataMissingError:
            raise
        except Exception as err:  # noqa: BLE001 - a damaged PNG can make PIL raise anything, not only OSError
            raise DataMissingError(f"{path}: cannot read ({first_line(err, with_type=True)})") from None
        bad = (mask >= len(VOC_CLASSES)) & (mask != VOC_BORDER)
        if bad.any():
            raise DataMissingError(f"{path}: label {int(mask[bad][0])} is neither a class 0..{len(VOC_CLASSES) - 1} nor {VOC_BORDER}")
        mask[mask == VOC_BORDER] = IGNORE_INDEX
        masks[k] = mask

    with ThreadPoolExecutor(threads()) as pool:
        list(pool.map(one, range(len(ids))))
    return ImageSet(images, torch.from_numpy(masks), list(VOC_CLASSES))


@DATASETS.register("voc2012_seg")
def load_voc2012_seg(cfg: "DataConfig") -> tuple[ImageSet, ImageSet]:
    """Pascal VOC 2012 segmentation: 1464 train / 1449 val (the test split), 21 classes, resized to data.image_size."""
    loc = locate_voc2012_seg(cfg)
    if loc.found is None:
        raise missing_error("Pascal VOC 2012 (VOCdevkit/VOC2012 with SegmentationClass)", loc)
    return _read_voc_split(loc.found, "train", cfg.image_size), _read_voc_split(loc.found, "val", cfg.image_size)
