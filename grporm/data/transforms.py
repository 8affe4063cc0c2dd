"""uint8 images -> normalised float model input, with optional flip / shift augmentation.

Augmentation runs before normalisation so the zero padding of a shift is black, which is the
background of the (Fashion-)MNIST-style images used here; after normalisation it would not be.
Everything is vectorised over the batch and driven by an explicit `torch.Generator`.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, NamedTuple, Sequence

import torch
import torch.nn.functional as F

if TYPE_CHECKING:
    from grporm.config import AugmentConfig


def _to_float(images: torch.Tensor) -> torch.Tensor:
    if images.dtype != torch.uint8 or images.ndim != 4 or images.shape[1] not in (1, 3):
        raise ValueError(f"expected uint8 (B, C, H, W) with C 1 or 3, got {images.dtype} {tuple(images.shape)}")
    return images.float().div_(255.0)


def _resize(x: torch.Tensor, size: int) -> torch.Tensor:
    if x.shape[-2:] == (size, size):
        return x
    # antialias matters when shrinking (e.g. 28 -> 16); upsampling is plain bilinear.
    return F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False, antialias=True)


def _normalise(x: torch.Tensor, mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    if len(mean) != 3 or len(std) != 3:
        raise ValueError(f"mean and std need 3 values each, got {tuple(mean)} and {tuple(std)}")
    m = torch.tensor(mean, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
    s = torch.tensor(std, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
    return (x.expand(-1, 3, -1, -1) - m) / s  # grey -> 3 channels by broadcasting, no copy first


def flip_and_shift(x: torch.Tensor, hflip: bool, max_shift: int, generator: torch.Generator | None) -> torch.Tensor:
    """Per image: mirror left-right with probability 1/2, then translate by an integer (dy, dx) in
    [-max_shift, max_shift], filling the uncovered border with 0. x is float (B, C, S, S)."""
    b, _, h, w = x.shape
    if hflip:
        flip = torch.rand(b, generator=generator).to(x.device) < 0.5
        x = torch.where(flip.view(b, 1, 1, 1), x.flip(-1), x)
    if max_shift > 0:
        m = max_shift
        dy, dx = torch.randint(-m, m + 1, (2, b), generator=generator).to(x.device)
        padded = F.pad(x, (m, m, m, m))
        # out[i, j] = x[i - dy, j - dx], i.e. padded[i - dy + m, j - dx + m]: one gather for the batch.
        rows = (m - dy).view(b, 1) + torch.arange(h, device=x.device).view(1, h)  # (B, H)
        cols = (m - dx).view(b, 1) + torch.arange(w, device=x.device).view(1, w)  # (B, W)
        batch = torch.arange(b, device=x.device).view(b, 1, 1)
        x = padded.permute(0, 2, 3, 1)[batch, rows.view(b, h, 1), cols.view(b, 1, w)].permute(0, 3, 1, 2)
    return x


def preprocess_batch(
    images: torch.Tensor,
    image_size: int,
    mean: Sequence[float],
    std: Sequence[float],
    augment_cfg: "AugmentConfig | None" = None,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """uint8 (B, C, H, W) -> float32 (B, 3, S, S): scale to [0, 1], resize, optionally augment, normalise."""
    x = _resize(_to_float(images), image_size)  # resize before 3-channel expansion: 3x less work for grey
    if augment_cfg is not None:
        x = flip_and_shift(x, augment_cfg.hflip, int(round(augment_cfg.shift * image_size)), generator)
    return _normalise(x, mean, std).contiguous()


class InputSpec(NamedTuple):
    """The input a backbone expects: square images of `image_size` pixels, pixels scaled to [0, 1] and then
    normalised per channel with `mean` and `std` (a tuple, so `size, mean, std = model.input_spec` unpacks)."""
    image_size: int
    mean: Sequence[float]
    std: Sequence[float]

    def preprocess(self, images: torch.Tensor, augment_cfg: "AugmentConfig | None" = None,
                   generator: torch.Generator | None = None) -> torch.Tensor:
        """`preprocess_batch` of `images` for this input."""
        return preprocess_batch(images, self.image_size, self.mean, self.std, augment_cfg, generator)
