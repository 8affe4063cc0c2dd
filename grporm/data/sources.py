"""Image data sets: the `ImageSet` they load into, the registries of loaders and locators, and the
readers the loaders share.

Every entry of `DATASETS` is a function `load(cfg: DataConfig) -> (train, test)` returning the full
official train and test splits as `ImageSet`s; each data-set family registers its loader and its
locator in a module of its own under grporm/data/ (grporm/data/__init__.py imports them all).
Nothing downloads unless `cfg.download` is true.

Where a data set that no package ships is looked for: `data.root` if set, else
`$GRPORM_DATA/<name>`, else `~/.cache/grporm/<name>` (`data_root`); a missing one raises a one-line
`DataMissingError` naming the folders searched and how to get the data (`missing_error`).
"""
from __future__ import annotations

import gzip
import io
import os
import sys
import threading
import warnings
import zlib
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Iterable, Sequence

import numpy as np
import torch

from grporm.errors import DataMissingError, first_line
from grporm.records.inputs import expand_home
from grporm.registry import Registry
from grporm.tracking.notices import reading
from grporm.training.labels import IGNORE_INDEX  # noqa: F401 - re-exported for the data sets

if TYPE_CHECKING:  # annotations only
    from grporm.config import DataConfig


# A mask pixel with this label counts in no loss and no metric (VOC's object borders, say).


@dataclass
class ImageSet:
    """Images as uint8 (N, C, H, W) with C in {1, 3}, int64 labels (N,) or masks (N, H, W), and the class names.

    `own_val`, on a loader's training split only: the indices of the images the source itself sets aside
    for validation (an image folder's val/), used as the validation split instead of a carve
    (grporm.data.splits.split_indices); a subset drops it."""

    images: torch.Tensor
    labels: torch.Tensor
    classes: list[str]
    own_val: torch.Tensor | None = None

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


# (source, target) -> how the target's test split is relabelled into the source's classes
# (cross-data-set transfer, eval.transfer).
TRANSFER_ADAPTERS: dict[tuple[str, str], Callable[[ImageSet], ImageSet]] = {}

DIGIT_CLASSES = [str(d) for d in range(10)]  # mnist5k and digits
CACHE_DIR = Path("~/.cache/grporm")

# ---------------------------------------------------------------- shared helpers


def data_root(cfg: "DataConfig", name: str) -> Path:
    """`data.root`, else `$GRPORM_DATA/<name>`, else `~/.cache/grporm/<name>`."""
    if cfg.root is not None:
        return expand_home(cfg.root)
    env = os.environ.get("GRPORM_DATA")
    return expand_home(env if env else CACHE_DIR) / name


def locate(candidates: Sequence[Path], has_all: Callable[[Path], bool], hint: str, fetch: bool = False) -> Location:
    found = next((c for c in candidates if has_all(c)), None)
    return Location(tuple(candidates), found, hint, fetch)


def files_in(names: Iterable[str]) -> Callable[[Path], bool]:
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


def class_names(path: Path, default: Sequence[str]) -> list[str]:
    """Class names, one per line (blank lines dropped); the known list when the file is absent."""
    if not path.is_file():
        return list(default)
    names = [line.strip() for line in path.read_text().splitlines() if line.strip()]
    if len(names) != len(default):
        raise DataMissingError(f"{path}: {len(names)} class names, expected {len(default)}")
    return names


def checked_labels(labels: np.ndarray, num_classes: int, path: Path) -> torch.Tensor:
    if labels.size and (labels.min() < 0 or labels.max() >= num_classes):
        raise DataMissingError(f"{path}: labels outside 0..{num_classes - 1} (found {int(labels.min())}..{int(labels.max())})")
    return torch.from_numpy(labels.astype(np.int64))


def threads() -> int:
    return max(1, min(8, os.cpu_count() or 1))


# ---------------------------------------------------------------- IDX files ((Fashion-)MNIST)

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


# ---------------------------------------------------------------- image files
# One decoder for every image file the suite reads (`to_rgb`): each PIL mode is mapped to 8-bit RGB
# as a viewer shows it, or refused in one line naming the file. PIL's own `convert("RGB")` clips
# 16-bit and 32-bit images to white and drops transparency onto whatever colour hides under it.
BACKGROUND = (255, 255, 255)  # transparent pixels are shown on white, as a page or browser shows them
_ICC_TRANSFORMS: dict[bytes, object] = {}
_SAID: set[str] = set()
_ICC_LOCK = threading.Lock()


class ImageRefused(ValueError):
    """An image whose pixels cannot be mapped to 8-bit RGB faithfully; the message says why."""


def _scaled(values: np.ndarray, path: Path, mode: str) -> np.ndarray:
    """16-bit, 32-bit integer and float pixels as 0..255, each by its type's range:
    16-bit (and 32-bit integers within 0..65535, how PIL reads 16-bit PGM and TIFF files) / 257;
    floats in 0..1 (the usual convention) x 255, floats in 0..255 as they are; anything else refused."""
    values = values.astype(np.float64)
    if not np.isfinite(values).all():
        raise ImageRefused(f"{mode} image holds NaN or infinite pixel values")
    low, high = (float(values.min()), float(values.max())) if values.size else (0.0, 0.0)
    if mode == "F":
        if low < 0 or high > 255:
            raise ImageRefused(f"float pixel values from {low:g} to {high:g}, neither 0..1 nor 0..255")
        scale = 255.0 if high <= 1.0 else 1.0
    else:
        if low < 0 or high > 65535:
            raise ImageRefused(f"{mode} pixel values from {low:g} to {high:g}, beyond 16 bits (0..65535)")
        scale = 255.0 / 65535.0
    return np.clip(np.rint(values * scale), 0, 255).astype(np.uint8)


def _icc_to_srgb(profile: bytes, mode: str):
    """A cached transform from an embedded ICC profile to sRGB (CMYK images: PIL's formula ignores it)."""
    from PIL import ImageCms

    with _ICC_LOCK:
        if profile not in _ICC_TRANSFORMS:
            source = ImageCms.ImageCmsProfile(io.BytesIO(profile))
            _ICC_TRANSFORMS[profile] = ImageCms.buildTransform(source, ImageCms.createProfile("sRGB"), mode, "RGB")
        return _ICC_TRANSFORMS[profile]


def to_rgb(im, path: Path):
    """`im` (any PIL mode) as an 8-bit RGB image, oriented by its EXIF tag; ImageRefused when it cannot be."""
    from PIL import Image, ImageCms, ImageOps

    if _orientation(im) != 1:  # a phone's portrait photo is stored sideways with a tag saying so
        im = ImageOps.exif_transpose(im)
    mode = im.mode
    if mode in ("RGB", "L", "1", "YCbCr", "HSV", "RGBX"):
        return im.convert("RGB")
    if mode in ("P", "PA"):
        im = im.convert("RGBA")  # a palette may carry transparency
        mode = "RGBA"
    if mode in ("RGBA", "LA", "RGBa", "La"):
        if mode in ("RGBa", "La"):  # premultiplied alpha: PIL unpremultiplies going to RGBA
            im = im.convert("RGBA")
        rgba = im.convert("RGBA")
        canvas = Image.new("RGBA", rgba.size, BACKGROUND + (255,))
        return Image.alpha_composite(canvas, rgba).convert("RGB")
    if mode.startswith("I;16") or mode in ("I", "F"):
        return Image.fromarray(_scaled(np.asarray(im), path, mode), "L").convert("RGB")
    if mode == "CMYK":
        profile = im.info.get("icc_profile")
        if profile:
            try:
                return ImageCms.applyTransform(im, _icc_to_srgb(profile, "CMYK"))
            except (ImageCms.PyCMSError, OSError, ValueError):
                pass  # a damaged profile: PIL's formula below
        return im.convert("RGB")
    if mode == "LAB":  # PIL's convert("RGB") reads L*a*b* as if it were RGB
        lab_to_srgb = ImageCms.buildTransform(ImageCms.createProfile("LAB"), ImageCms.createProfile("sRGB"), "LAB", "RGB")
        return ImageCms.applyTransform(im, lab_to_srgb)
    raise ImageRefused(f"image mode {mode} is not supported")


def _orientation(im) -> int:
    """The EXIF orientation tag (1 = as stored), read from the header."""
    try:
        return int(im.getexif().get(0x0112, 1))
    except Exception:  # noqa: BLE001 - a damaged EXIF block: as stored
        return 1


def _oriented_size(im) -> tuple[int, int]:
    """(width, height) as shown, after the EXIF orientation tag (no decoding)."""
    return im.size[::-1] if _orientation(im) in (5, 6, 7, 8) else im.size


def _open(path: Path):
    """PIL's image of `path` (header read); any failure -> DataMissingError naming the file."""
    from PIL import Image

    try:
        return Image.open(path)
    except Image.DecompressionBombError as err:
        raise DataMissingError(f"{path}: refused, {first_line(err)}; resize the image or remove it") from None
    except Exception as err:  # noqa: BLE001 - a hostile file can make PIL's parsers raise anything (struct.error...)
        raise DataMissingError(f"{path}: cannot read the image ({first_line(err, with_type=True)})") from None


def image_sizes(paths: list[Path]) -> set[tuple[int, int]]:
    """The sizes (as shown) of the images; a file PIL cannot open or a decompression bomb (above twice
    PIL's MAX_IMAGE_PIXELS) is refused naming it, images above MAX_IMAGE_PIXELS are one warning line."""
    from PIL import Image

    def size(path: Path) -> tuple[int, int]:
        with reading(path), _open(path) as im:  # reads the header only
            return _oriented_size(im)

    with warnings.catch_warnings():  # said below naming the files, not as PIL's two lines without them
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        with ThreadPoolExecutor(threads()) as pool:
            sizes = list(pool.map(size, paths))
    limit = Image.MAX_IMAGE_PIXELS
    large = [(p, w * h) for p, (w, h) in zip(paths, sizes) if limit and w * h > limit]
    if large:
        path, pixels = large[0]
        line = (f"warning: {len(large)} image(s) above {limit / 1e6:.0f} megapixels, e.g. {path} ({pixels / 1e6:.0f} "
                "megapixels): decoded anyway, slowly and with much memory; resize them beforehand")
        if line not in _SAID:  # a data set is loaded more than once per process (checks, each run)
            _SAID.add(line)
            print(line, file=sys.stderr)
    return set(sizes)


def decode_images(paths: list[Path], size: tuple[int, int] | None) -> torch.Tensor:
    """Decode files to uint8 RGB (N, 3, H, W) with `to_rgb`; resize each to `size` (w, h) bilinear when given."""
    from PIL import Image

    if size is None:
        with _open(paths[0]) as first:
            size_hw = _oriented_size(first)[::-1]
    else:
        size_hw = size[::-1]
    out = np.empty((len(paths), size_hw[0], size_hw[1], 3), dtype=np.uint8)

    def one(i: int) -> None:
        try:
            with reading(paths[i]), _open(paths[i]) as im:
                im = to_rgb(im, paths[i])
                if im.size != size_hw[::-1]:
                    im = im.resize(size_hw[::-1], Image.BILINEAR)
                out[i] = np.asarray(im)
        except DataMissingError:
            raise
        except ImageRefused as err:
            raise DataMissingError(f"{paths[i]}: {err}; save it as 8-bit RGB or grayscale") from None
        except Exception as err:  # noqa: BLE001 - a hostile file can make PIL's decoders raise anything
            raise DataMissingError(f"{paths[i]}: cannot decode ({first_line(err, with_type=True)})") from None

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # image_sizes said it
        with ThreadPoolExecutor(threads()) as pool:
            list(pool.map(one, range(len(paths))))
    return torch.from_numpy(out).permute(0, 3, 1, 2).contiguous()
