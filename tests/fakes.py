"""Synthetic data sets in the real on-disk formats of the paper-scale loaders (grporm/data/cifar.py, stl10.py, tiny_imagenet.py, voc.py):
CIFAR-10/100 binary, STL-10 binary, the Tiny-ImageNet tree with its val annotations, the VOC 2012
tree. The loader tests check single bytes of these files; the paper toy runs train on them. One home
for every generator, so a format is written one way only.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

CIFAR10_NAMES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
STL10_NAMES = ["airplane", "bird", "car", "cat", "deer", "dog", "horse", "monkey", "ship", "truck"]


def cifar_record(labels: list[int], seed: int) -> tuple[bytes, np.ndarray]:
    """One binary record: label byte(s), then R, G, B planes of a random 32x32 image."""
    image = np.random.default_rng(seed).integers(0, 256, (3, 32, 32), dtype=np.uint8)
    return bytes(labels) + image.tobytes(), image


def fake_cifar10(root: Path, per_batch: int = 2) -> dict:
    """Five training batches and a test batch of `per_batch` records each, labels cycling 0..9
    across batches (per_batch=20: 10 training and 2 test images per class)."""
    folder = root / "cifar-10-batches-bin"
    folder.mkdir(parents=True)
    known = {}
    for b, name in enumerate([f"data_batch_{i}.bin" for i in range(1, 6)] + ["test_batch.bin"]):
        data = b""
        for j in range(per_batch):
            label = (b * per_batch + j) % 10
            record, image = cifar_record([label], seed=100 * b + j)
            data += record
            known[(name, j)] = (label, image)
        (folder / name).write_bytes(data)
    (folder / "batches.meta.txt").write_text("\n".join(CIFAR10_NAMES) + "\n\n")
    return known


def fake_cifar100(root: Path, train: list[int] = (42, 99, 0), test: list[int] = (7,)) -> dict:
    """train.bin / test.bin with these fine labels (coarse = fine % 20)."""
    folder = root / "cifar-100-binary"
    folder.mkdir(parents=True)
    known = {}
    for name, fine in (("train.bin", train), ("test.bin", test)):
        data = b""
        for j, f in enumerate(fine):
            record, image = cifar_record([f % 20, f], seed=j)  # coarse first, then fine
            data += record
            known[(name, j)] = (f, image)
        (folder / name).write_bytes(data)
    (folder / "fine_label_names.txt").write_text("\n".join(f"fine{i}" for i in range(100)) + "\n")
    return known


def fake_stl10(root: Path, train: list[int] = (3, 4, 8), test: list[int] = (10, 1)) -> np.ndarray:
    """Labels as stored (1..10); by default train 3 images labelled 3, 4, 8 (car, cat, monkey),
    test 2 labelled 10, 1. Returns the training images (N, 3, 96, 96) as they should read back."""
    folder = root / "stl10_binary"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for split, labels in (("train", list(train)), ("test", list(test))):
        images = rng.integers(0, 256, (len(labels), 3, 96, 96), dtype=np.uint8)
        if split == "train":
            images[0, 0, 10, 20] = 250  # row 10, column 20 of the red plane
            images[0, 0, 20, 10] = 3
            train_images = images
        # The official files store each plane column-major: plane.T in row-major order.
        (folder / f"{split}_X.bin").write_bytes(images.transpose(0, 1, 3, 2).tobytes())
        (folder / f"{split}_y.bin").write_bytes(bytes(labels))
    (folder / "class_names.txt").write_text("\n".join(STL10_NAMES) + "\n")
    return train_images


def png(path: Path, array: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)


def fake_tiny_imagenet(root: Path, wnids: list[str], train_per_class: int, val_per_class: int, size: int = 64) -> Path:
    """The official tree: train/<wnid>/images/<wnid>_<i>.JPEG, and the flat val/images/ labelled by
    val/val_annotations.txt (tab-separated: file, wnid, box)."""
    folder = root / "tiny-imagenet-200"
    rng = np.random.default_rng(0)
    for wnid in wnids:
        for i in range(train_per_class):
            image = Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8))
            path = folder / "train" / wnid / "images" / f"{wnid}_{i}.JPEG"
            path.parent.mkdir(parents=True, exist_ok=True)
            image.save(path, format="JPEG")
    lines = []
    for k in range(val_per_class * len(wnids)):
        wnid = wnids[k % len(wnids)]
        path = folder / "val" / "images" / f"val_{k}.JPEG"
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)).save(path, format="JPEG")
        lines.append(f"val_{k}.JPEG\t{wnid}\t0\t0\t{size - 1}\t{size - 1}")
    (folder / "val" / "val_annotations.txt").write_text("\n".join(lines) + "\n")
    return folder


VOC_PERSON = 15


def fake_voc(root: Path, train: list[str], val: list[str], height: int = 20, width: int = 24) -> Path:
    """VOCdevkit/VOC2012 with JPEG images and palette (P) masks: background on the left, class 15
    (person) on the right, the border label 255 on the top row; the k-th image is grey 40*k."""
    voc = root / "VOCdevkit" / "VOC2012"
    (voc / "ImageSets" / "Segmentation").mkdir(parents=True)
    (voc / "JPEGImages").mkdir()
    (voc / "SegmentationClass").mkdir()
    palette = [0] * 768
    palette[VOC_PERSON * 3: VOC_PERSON * 3 + 3] = [192, 128, 128]
    for k, name in enumerate([*train, *val]):
        image = np.full((height, width, 3), (40 * k) % 256, np.uint8)
        Image.fromarray(image).save(voc / "JPEGImages" / f"{name}.jpg")
        mask = np.zeros((height, width), np.uint8)
        mask[:, width // 2:] = VOC_PERSON
        mask[0, :] = 255  # the VOC border label
        m = Image.fromarray(mask, mode="P")
        m.putpalette(palette)
        m.save(voc / "SegmentationClass" / f"{name}.png")
    (voc / "ImageSets" / "Segmentation" / "train.txt").write_text("".join(f"{n}\n" for n in train))
    (voc / "ImageSets" / "Segmentation" / "val.txt").write_text("".join(f"{n}\n" for n in val))
    return voc
