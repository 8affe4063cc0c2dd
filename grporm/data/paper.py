"""Paper-scale data sets, read from local files: CIFAR-10/100, STL-10, Tiny-ImageNet, any
ImageFolder tree, and Pascal VOC 2012 segmentation.

Nothing here ships in a package: the user puts the files on disk, or sets
`data.download: true` where torchvision can fetch them (CIFAR, STL-10; needs network). A missing
data set raises a one-line `DataMissingError` naming the folders searched and how to get the data.

Where a data set is looked for: `data.root` if set, else `$GRPORM_DATA/<name>`, else
`~/.cache/grporm/<name>` (`data_root`); inside it, the loader tries the sub-folder the official
archive extracts to, then the root itself. Each loader registers a locator in `LOCATORS` that
`grporm data check` uses, so that path logic exists once.

Layouts (the official archives, extracted into the root):

* `cifar10`:  `cifar-10-batches-bin/{data_batch_1..5,test_batch}.bin` (+ `batches.meta.txt`),
  records of 1 label byte + 3072 pixel bytes (R, G, B planes, row-major 32x32). Read with numpy:
  no pickle. With `data.download: true` and no binary files, torchvision fetches the *python*
  version into the root and only then is it read through torchvision.
* `cifar100`: `cifar-100-binary/{train,test}.bin` (+ `fine_label_names.txt`), records of 2 label
  bytes (coarse, fine) + 3072 pixel bytes; the 100 fine labels are used.
* `stl10`: `stl10_binary/{train,test}_{X,y}.bin` (+ `class_names.txt`): uint8 images 3x96x96, each
  plane stored column-major (MATLAB order, transposed here), labels 1..10 mapped to 0..9. The
  100000 unlabelled images are not used. `data.download: true` lets torchvision fetch the same
  binary archive (2.6 GB).
* `tiny_imagenet`: `tiny-imagenet-200/{train,val}/<wnid>/...` (ImageFolder layout; the official
  `train/<wnid>/images/*.JPEG` works as is). The official `val/` (flat `val/images/` plus
  `val_annotations.txt`) is read through the annotation file; otherwise it must be rearranged
  into `val/<wnid>/` class folders. 200 classes, 64x64; test = val (the official test split has
  no labels).
* `imagefolder`: any `root/train/<class>/*` and `root/val/<class>/*` (or `root/test/<class>/*`).
* `voc2012_seg`: torchvision's layout, `VOCdevkit/VOC2012/{JPEGImages,SegmentationClass,
  ImageSets/Segmentation/{train,val}.txt}`, read with PIL (no torchvision download). Images are
  resized to `data.image_size` square (bilinear), masks with nearest neighbour; 21 classes with
  background; the border label 255 becomes -100 (ignored). train = train.txt (1464 images),
  test = val.txt (1449 images).

Image folders are decoded with PIL to RGB and kept at their native size when every image of both
splits has the same size (Tiny-ImageNet: 64x64); otherwise every image is resized (bilinear) to
`data.image_size` square at load time, the size the model sees anyway.

`STL10_CIFAR10_SHARED` maps the 9 STL-10 classes that CIFAR-10 also has onto CIFAR-10's label
indices for the CIFAR-10 -> STL-10 transfer protocol (`stl10_as_cifar10` applies it).
"""
from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Iterable, Sequence

import numpy as np
import torch

from grporm.data.sources import DATASETS, IGNORE_INDEX, LOCATORS, ImageSet, Location
from grporm.errors import DataMissingError, first_line

if TYPE_CHECKING:
    from grporm.config import DataConfig

CACHE_DIR = Path("~/.cache/grporm")


# ---------------------------------------------------------------- shared helpers


def data_root(cfg: "DataConfig", name: str) -> Path:
    """`data.root`, else `$GRPORM_DATA/<name>`, else `~/.cache/grporm/<name>`."""
    if cfg.root is not None:
        return Path(cfg.root).expanduser()
    env = os.environ.get("GRPORM_DATA")
    return (Path(env).expanduser() if env else CACHE_DIR.expanduser()) / name


def _locate(candidates: Sequence[Path], has_all: Callable[[Path], bool], hint: str, fetch: bool = False) -> Location:
    found = next((c for c in candidates if has_all(c)), None)
    return Location(tuple(candidates), found, hint, fetch)


def _files_in(names: Iterable[str]) -> Callable[[Path], bool]:
    names = tuple(names)
    return lambda folder: all((folder / n).is_file() for n in names)


def missing_error(title: str, loc: Location, extra: str = "") -> DataMissingError:
    """The one-line error of a data set that is not on disk."""
    searched = ", ".join(str(p) for p in loc.where)
    return DataMissingError(f"{title} not found (searched {searched}); get it: {loc.hint}{extra}")


def read_records(path: Path, record_bytes: int) -> np.ndarray:
    """A file of fixed-size records -> uint8 array (N, record_bytes); a bad size -> DataMissingError."""
    try:
        raw = np.fromfile(path, dtype=np.uint8)
    except OSError as err:
        raise DataMissingError(f"{path}: cannot read ({err}); fetch the data set again") from None
    if raw.size == 0 or raw.size % record_bytes:
        raise DataMissingError(f"{path}: {raw.size} bytes is not a whole number of {record_bytes}-byte records "
                               "(truncated, or not the binary version); fetch the data set again")
    return raw.reshape(-1, record_bytes)


def _names(path: Path, default: Sequence[str]) -> list[str]:
    """Class names, one per line (blank lines dropped); the known list when the file is absent."""
    if not path.is_file():
        return list(default)
    names = [line.strip() for line in path.read_text().splitlines() if line.strip()]
    if len(names) != len(default):
        raise DataMissingError(f"{path}: {len(names)} class names, expected {len(default)}")
    return names


def _checked_labels(labels: np.ndarray, num_classes: int, path: Path) -> torch.Tensor:
    if labels.size and (labels.min() < 0 or labels.max() >= num_classes):
        raise DataMissingError(f"{path}: labels outside 0..{num_classes - 1} (found {int(labels.min())}..{int(labels.max())})")
    return torch.from_numpy(labels.astype(np.int64))


def _threads() -> int:
    return max(1, min(8, os.cpu_count() or 1))


# ---------------------------------------------------------------- CIFAR-10 / CIFAR-100 (binary version)

CIFAR10_CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
CIFAR10_DIR = "cifar-10-batches-bin"
CIFAR10_TRAIN = [f"data_batch_{i}.bin" for i in range(1, 6)]
CIFAR10_TEST = "test_batch.bin"
CIFAR100_DIR = "cifar-100-binary"
CIFAR_PIXELS = 3 * 32 * 32


def _cifar100_classes() -> list[str]:
    return [f"class_{i}" for i in range(100)]  # only used when fine_label_names.txt is absent


@LOCATORS.register("cifar10")
def locate_cifar10(cfg: "DataConfig") -> Location:
    root = data_root(cfg, "cifar10")
    hint = (f"extract https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz into {root} "
            "(or set data.root=DIR), or set data.download=true (torchvision, needs network)")
    return _locate([root / CIFAR10_DIR, root], _files_in([*CIFAR10_TRAIN, CIFAR10_TEST]), hint, cfg.download)


@LOCATORS.register("cifar100")
def locate_cifar100(cfg: "DataConfig") -> Location:
    root = data_root(cfg, "cifar100")
    hint = (f"extract https://www.cs.toronto.edu/~kriz/cifar-100-binary.tar.gz into {root} "
            "(or set data.root=DIR), or set data.download=true (torchvision, needs network)")
    return _locate([root / CIFAR100_DIR, root], _files_in(["train.bin", "test.bin"]), hint, cfg.download)


def _read_cifar(path: Path, label_bytes: int, label_index: int, classes: list[str]) -> ImageSet:
    records = read_records(path, label_bytes + CIFAR_PIXELS)
    images = records[:, label_bytes:].reshape(-1, 3, 32, 32)  # R, G, B planes, each row-major
    labels = _checked_labels(records[:, label_index], len(classes), path)
    return ImageSet(torch.from_numpy(images.copy()), labels, list(classes))


def _concat(parts: list[ImageSet]) -> ImageSet:
    return ImageSet(torch.cat([p.images for p in parts]), torch.cat([p.labels for p in parts]), list(parts[0].classes))


def _torchvision_cifar(kind: str, root: Path) -> tuple[ImageSet, ImageSet]:
    """Fetch the python version with torchvision (it unpickles it) -- only with data.download=true."""
    try:
        import torchvision.datasets as tvd
    except ImportError:
        raise DataMissingError("data.download=true needs torchvision: pip install torchvision") from None
    out = []
    for train in (True, False):
        try:
            ds = getattr(tvd, kind)(root=str(root), train=train, download=True)
        except Exception as err:  # network errors come in many types; one line
            raise DataMissingError(f"downloading {kind} into {root} failed: {first_line(err)}") from None
        images = torch.from_numpy(np.ascontiguousarray(ds.data.transpose(0, 3, 1, 2)))  # (N, 32, 32, 3) -> NCHW
        out.append(ImageSet(images, torch.as_tensor(ds.targets, dtype=torch.int64), list(ds.classes)))
    return out[0], out[1]


@DATASETS.register("cifar10")
def load_cifar10(cfg: "DataConfig") -> tuple[ImageSet, ImageSet]:
    """CIFAR-10: 50000 train / 10000 test, 32x32 RGB, 10 classes (official binary version)."""
    loc = locate_cifar10(cfg)
    if loc.found is None:
        if cfg.download:
            return _torchvision_cifar("CIFAR10", data_root(cfg, "cifar10"))
        raise missing_error(f"CIFAR-10 binary files ({CIFAR10_DIR}/data_batch_1..5.bin, test_batch.bin)", loc)
    classes = _names(loc.found / "batches.meta.txt", CIFAR10_CLASSES)
    train = _concat([_read_cifar(loc.found / f, 1, 0, classes) for f in CIFAR10_TRAIN])
    return train, _read_cifar(loc.found / CIFAR10_TEST, 1, 0, classes)


@DATASETS.register("cifar100")
def load_cifar100(cfg: "DataConfig") -> tuple[ImageSet, ImageSet]:
    """CIFAR-100: 50000 train / 10000 test, 32x32 RGB, 100 fine classes (official binary version)."""
    loc = locate_cifar100(cfg)
    if loc.found is None:
        if cfg.download:
            return _torchvision_cifar("CIFAR100", data_root(cfg, "cifar100"))
        raise missing_error(f"CIFAR-100 binary files ({CIFAR100_DIR}/train.bin, test.bin)", loc)
    classes = _names(loc.found / "fine_label_names.txt", _cifar100_classes())
    # Each record: coarse label byte, fine label byte, then the pixels.
    return (_read_cifar(loc.found / "train.bin", 2, 1, classes), _read_cifar(loc.found / "test.bin", 2, 1, classes))


# ---------------------------------------------------------------- STL-10 (binary version)

STL10_CLASSES = ["airplane", "bird", "car", "cat", "deer", "dog", "horse", "monkey", "ship", "truck"]
STL10_DIR = "stl10_binary"
STL10_FILES = ["train_X.bin", "train_y.bin", "test_X.bin", "test_y.bin"]
STL10_SIZE = 96

#: STL-10 label -> CIFAR-10 label for the 9 classes both have (car = automobile). STL-10's
#: 'monkey' (7) has no CIFAR-10 counterpart and CIFAR-10's 'frog' (6) none in STL-10, so the
#: CIFAR-10 -> STL-10 transfer test drops the monkeys and relabels the rest onto CIFAR-10's
#: indices: a model trained on CIFAR-10 then scores STL-10 images in its own label space.
STL10_CIFAR10_SHARED: dict[int, int] = {0: 0, 1: 2, 2: 1, 3: 3, 4: 4, 5: 5, 6: 7, 8: 8, 9: 9}


# (source, target) -> how the target's test split is relabelled into the source's classes.
TRANSFER_ADAPTERS: dict[tuple[str, str], "Callable[[ImageSet], ImageSet]"] = {}


def stl10_as_cifar10(stl: ImageSet) -> ImageSet:
    """STL-10 images of the 9 shared classes, labelled with CIFAR-10 indices and class names."""
    lookup = torch.full((len(STL10_CLASSES),), -1, dtype=torch.int64)
    for s, c in STL10_CIFAR10_SHARED.items():
        lookup[s] = c
    mapped = lookup[stl.labels]
    keep = (mapped >= 0).nonzero().squeeze(1)
    return ImageSet(stl.images[keep], mapped[keep], list(CIFAR10_CLASSES))


TRANSFER_ADAPTERS[("cifar10", "stl10")] = stl10_as_cifar10


@LOCATORS.register("stl10")
def locate_stl10(cfg: "DataConfig") -> Location:
    root = data_root(cfg, "stl10")
    hint = (f"extract https://ai.stanford.edu/~acoates/stl10/stl10_binary.tar.gz into {root} "
            "(or set data.root=DIR), or set data.download=true (torchvision, needs network)")
    return _locate([root / STL10_DIR, root], _files_in(STL10_FILES), hint, cfg.download)


def _read_stl(folder: Path, split: str, classes: list[str]) -> ImageSet:
    x_path, y_path = folder / f"{split}_X.bin", folder / f"{split}_y.bin"
    raw = read_records(x_path, 3 * STL10_SIZE * STL10_SIZE)
    # Each channel plane is stored column-major: reading it row-major gives (C, W, H); swap back.
    images = raw.reshape(-1, 3, STL10_SIZE, STL10_SIZE).transpose(0, 1, 3, 2)
    labels = read_records(y_path, 1)[:, 0].astype(np.int64) - 1  # 1..10 -> 0..9
    if len(labels) != len(images):
        raise DataMissingError(f"{x_path}: {len(images)} images but {y_path.name} has {len(labels)} labels")
    return ImageSet(torch.from_numpy(np.ascontiguousarray(images)), _checked_labels(labels, len(classes), y_path), classes)


@DATASETS.register("stl10")
def load_stl10(cfg: "DataConfig") -> tuple[ImageSet, ImageSet]:
    """STL-10: 5000 train / 8000 test, 96x96 RGB, 10 classes (official binary version; unlabelled split unused)."""
    loc = locate_stl10(cfg)
    if loc.found is None and cfg.download:
        root = data_root(cfg, "stl10")
        try:
            from torchvision.datasets import STL10
        except ImportError:
            raise DataMissingError("data.download=true needs torchvision: pip install torchvision") from None
        try:
            STL10(root=str(root), split="test", download=True)  # fetches and extracts the whole binary archive
        except Exception as err:
            raise DataMissingError(f"downloading STL-10 into {root} failed: {first_line(err)}") from None
        loc = locate_stl10(cfg)
    if loc.found is None:
        raise missing_error(f"STL-10 binary files ({STL10_DIR}/{{train,test}}_{{X,y}}.bin)", loc)
    classes = _names(loc.found / "class_names.txt", STL10_CLASSES)
    return _read_stl(loc.found, "train", classes), _read_stl(loc.found, "test", classes)


# ---------------------------------------------------------------- ImageFolder trees (Tiny-ImageNet, any)

IMAGE_EXTENSIONS = {".jpg", ".jpeg", ".png", ".bmp", ".ppm", ".pgm", ".gif", ".tif", ".tiff", ".webp"}
TINY_DIR = "tiny-imagenet-200"
TEST_SPLITS = ("val", "test")


def _has_class_dirs(folder: Path) -> bool:
    return folder.is_dir() and any(d.is_dir() and not d.name.startswith(".") for d in folder.iterdir())


def _tiny_val_annotated(folder: Path) -> bool:
    return (folder / "val" / "val_annotations.txt").is_file() and (folder / "val" / "images").is_dir()


def _is_imagefolder(folder: Path, annotated_val: bool = False) -> bool:
    if not _has_class_dirs(folder / "train"):
        return False
    return any(_has_class_dirs(folder / s) for s in TEST_SPLITS) or (annotated_val and _tiny_val_annotated(folder))


@LOCATORS.register("tiny_imagenet")
def locate_tiny_imagenet(cfg: "DataConfig") -> Location:
    root = data_root(cfg, "tiny_imagenet")
    hint = (f"extract http://cs231n.stanford.edu/tiny-imagenet-200.zip into {root} (or set data.root=DIR) "
            "giving train/<wnid>/ and val/<wnid>/: the official flat val/images/ must be rearranged into "
            "val/<wnid>/ class folders (by val/val_annotations.txt), unless that file stays next to "
            "val/images/, which is then read directly (data.download is not supported)")
    return _locate([root / TINY_DIR, root], lambda f: _is_imagefolder(f, annotated_val=True), hint)


@LOCATORS.register("imagefolder")
def locate_imagefolder(cfg: "DataConfig") -> Location:
    root = data_root(cfg, "imagefolder")
    hint = ("set data.root=DIR to a folder with train/<class>/* and val/<class>/* (or test/<class>/*) "
            "images (data.download is not supported)")
    return _locate([root], _is_imagefolder, hint)


def _list_class_folders(split: Path, classes: list[str] | None) -> tuple[list[str], list[Path], list[int]]:
    """Image files of `split/<class>/**` in a fixed order; class names sorted (or given)."""
    found = sorted(d.name for d in split.iterdir() if d.is_dir() and not d.name.startswith("."))
    if classes is None:
        classes = found
    unknown = sorted(set(found) - set(classes))
    if unknown:
        raise DataMissingError(f"{split}: class folder(s) {', '.join(unknown[:3])} not among the training classes")
    index = {c: i for i, c in enumerate(classes)}
    paths, labels = [], []
    for name in found:
        files = sorted(p for p in (split / name).rglob("*") if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file())
        paths += files
        labels += [index[name]] * len(files)
    if not paths:
        raise DataMissingError(f"{split}: no image files in its class folders")
    return classes, paths, labels


def _list_tiny_val(val: Path, classes: list[str]) -> tuple[list[Path], list[int]]:
    """The official Tiny-ImageNet val split: val/images/*.JPEG labelled by val_annotations.txt."""
    index = {c: i for i, c in enumerate(classes)}
    paths, labels = [], []
    for line in (val / "val_annotations.txt").read_text().splitlines():
        fields = line.split("\t")
        if len(fields) < 2:
            continue
        if fields[1] not in index:
            raise DataMissingError(f"{val / 'val_annotations.txt'}: class {fields[1]!r} has no train/ folder")
        paths.append(val / "images" / fields[0])
        labels.append(index[fields[1]])
    return paths, labels


def _image_sizes(paths: list[Path]) -> set[tuple[int, int]]:
    from PIL import Image

    def size(path: Path) -> tuple[int, int]:
        with Image.open(path) as im:  # reads the header only
            return im.size

    with ThreadPoolExecutor(_threads()) as pool:
        return set(pool.map(size, paths))


def decode_images(paths: list[Path], size: tuple[int, int] | None) -> torch.Tensor:
    """Decode files to uint8 RGB (N, 3, H, W); resize each to `size` (w, h) bilinear when given."""
    from PIL import Image, UnidentifiedImageError

    if size is None:
        with Image.open(paths[0]) as first:
            size_hw = first.size[::-1]
    else:
        size_hw = size[::-1]
    out = np.empty((len(paths), size_hw[0], size_hw[1], 3), dtype=np.uint8)

    def one(i: int) -> None:
        try:
            with Image.open(paths[i]) as im:
                im = im.convert("RGB")
                if im.size != size_hw[::-1]:
                    im = im.resize(size_hw[::-1], Image.BILINEAR)
                out[i] = np.asarray(im)
        except (OSError, UnidentifiedImageError) as err:
            raise DataMissingError(f"{paths[i]}: cannot decode ({first_line(err)})") from None

    with ThreadPoolExecutor(_threads()) as pool:
        list(pool.map(one, range(len(paths))))
    return torch.from_numpy(out).permute(0, 3, 1, 2).contiguous()


def _load_imagefolder(folder: Path, cfg: "DataConfig", annotated_val: bool) -> tuple[ImageSet, ImageSet]:
    classes, train_paths, train_labels = _list_class_folders(folder / "train", None)
    test_split = next((folder / s for s in TEST_SPLITS if _has_class_dirs(folder / s)), None)
    if annotated_val and _tiny_val_annotated(folder):  # the official flat val/images/ (+ annotations)
        test_paths, test_labels = _list_tiny_val(folder / "val", classes)
    elif test_split is not None:
        _, test_paths, test_labels = _list_class_folders(test_split, classes)
    else:
        raise DataMissingError(f"{folder}: no val/<class>/ or test/<class>/ folders")
    # Keep the native size when all images share one (Tiny-ImageNet); else resize to data.image_size.
    sizes = _image_sizes(train_paths + test_paths)
    load_size = None if len(sizes) == 1 else (cfg.image_size, cfg.image_size)
    train = ImageSet(decode_images(train_paths, load_size), torch.tensor(train_labels, dtype=torch.int64), classes)
    test = ImageSet(decode_images(test_paths, load_size), torch.tensor(test_labels, dtype=torch.int64), list(classes))
    return train, test


@DATASETS.register("tiny_imagenet")
def load_tiny_imagenet(cfg: "DataConfig") -> tuple[ImageSet, ImageSet]:
    """Tiny-ImageNet-200: 100000 train / 10000 val (the test split), 64x64 RGB, 200 classes (ImageFolder layout)."""
    loc = locate_tiny_imagenet(cfg)
    if loc.found is None:
        raise missing_error("Tiny-ImageNet (train/<wnid>/, val/<wnid>/)", loc)
    return _load_imagefolder(loc.found, cfg, annotated_val=True)


@DATASETS.register("imagefolder")
def load_imagefolder(cfg: "DataConfig") -> tuple[ImageSet, ImageSet]:
    """Any ImageFolder tree: root/train/<class>/* and root/val/<class>/* (classes sorted by folder name)."""
    loc = locate_imagefolder(cfg)
    if loc.found is None:
        raise missing_error("ImageFolder tree (train/<class>/, val/<class>/)", loc)
    return _load_imagefolder(loc.found, cfg, annotated_val=False)


# ---------------------------------------------------------------- Pascal VOC 2012 segmentation

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
    return _locate([root / "VOCdevkit" / "VOC2012", root / "VOC2012", root], _voc_complete, hint)


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
        except OSError as err:
            raise DataMissingError(f"{path}: cannot read ({first_line(err)})") from None
        bad = (mask >= len(VOC_CLASSES)) & (mask != VOC_BORDER)
        if bad.any():
            raise DataMissingError(f"{path}: label {int(mask[bad][0])} is neither a class 0..{len(VOC_CLASSES) - 1} nor {VOC_BORDER}")
        mask[mask == VOC_BORDER] = IGNORE_INDEX
        masks[k] = mask

    with ThreadPoolExecutor(_threads()) as pool:
        list(pool.map(one, range(len(ids))))
    return ImageSet(images, torch.from_numpy(masks), list(VOC_CLASSES))


@DATASETS.register("voc2012_seg")
def load_voc2012_seg(cfg: "DataConfig") -> tuple[ImageSet, ImageSet]:
    """Pascal VOC 2012 segmentation: 1464 train / 1449 val (the test split), 21 classes, resized to data.image_size."""
    loc = locate_voc2012_seg(cfg)
    if loc.found is None:
        raise missing_error("Pascal VOC 2012 (VOCdevkit/VOC2012 with SegmentationClass)", loc)
    return _read_voc_split(loc.found, "train", cfg.image_size), _read_voc_split(loc.found, "val", cfg.image_size)
