"""Deterministic image corruptions for the out-of-distribution protocol (docs/method.md,
'Out of distribution: corruptions and transfer').

Each corruption maps float images in [0, 1], (N, C, H, W), to corrupted ones at severity 1..5,
drawing any randomness from the given generator, so given images, a corruption, a severity and
eval.ood.seed always give the same pixels (which test images are corrupted is a data draw of the run's
split seed: grporm/evaluate/protocols.py).
Strengths follow ImageNet-C's spirit (Hendrycks & Dietterich 2019), scaled to the image size
where they are in pixels; the exact values are our choice and live in the tables below.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from grporm.data.sources import ImageSet
from grporm.process import seeding
from grporm.registry import Registry

CORRUPTIONS: Registry = Registry("corruption")
SEVERITIES = (1, 2, 3, 4, 5)


def _level(table: tuple[float, ...], severity: int) -> float:
    if severity not in SEVERITIES:
        raise ValueError(f"severity must be 1..5, got {severity}")
    return table[severity - 1]


def _gaussian_kernel(sigma: float) -> torch.Tensor:
    radius = max(1, math.ceil(3 * sigma))
    grid = torch.arange(-radius, radius + 1, dtype=torch.float32)
    kernel = torch.exp(-0.5 * (grid / sigma) ** 2)
    return kernel / kernel.sum()


def _blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """Separable Gaussian blur per channel, reflecting at the border."""
    kernel = _gaussian_kernel(sigma)
    n, c, h, w = x.shape
    radius = kernel.numel() // 2
    flat = x.reshape(n * c, 1, h, w)
    flat = F.conv2d(F.pad(flat, (radius, radius, 0, 0), mode="reflect" if radius < w else "replicate"),
                    kernel.view(1, 1, 1, -1))
    flat = F.conv2d(F.pad(flat, (0, 0, radius, radius), mode="reflect" if radius < h else "replicate"),
                    kernel.view(1, 1, -1, 1))
    return flat.reshape(n, c, h, w)


def _warp(x: torch.Tensor, grid: torch.Tensor) -> torch.Tensor:
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


@CORRUPTIONS.register("gaussian_noise")
def gaussian_noise(x: torch.Tensor, severity: int, generator: torch.Generator) -> torch.Tensor:
    """Additive Gaussian noise, std 0.08..0.38 of the pixel range."""
    std = _level((0.08, 0.12, 0.18, 0.26, 0.38), severity)
    return (x + std * torch.randn(x.shape, generator=generator)).clamp(0, 1)


@CORRUPTIONS.register("gaussian_blur")
def gaussian_blur(x: torch.Tensor, severity: int, generator: torch.Generator) -> torch.Tensor:
    """Gaussian blur, sigma (1..6) * size / 56 pixels: 0.5..3 px on a 28 px image."""
    # ImageNet-C's sigmas are for 224 px; a 28 px item needs 4x that share of its size to blur as much.
    sigma = _level((1.0, 2.0, 3.0, 4.0, 6.0), severity) * x.shape[-1] / 56
    return _blur(x, max(sigma, 0.3))


@CORRUPTIONS.register("contrast")
def contrast(x: torch.Tensor, severity: int, generator: torch.Generator) -> torch.Tensor:
    """Pull every pixel towards the image mean, keeping 0.4..0.05 of the contrast."""
    keep = _level((0.4, 0.3, 0.2, 0.1, 0.05), severity)
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    return (x - mean) * keep + mean


@CORRUPTIONS.register("brightness")
def brightness(x: torch.Tensor, severity: int, generator: torch.Generator) -> torch.Tensor:
    """Add 0.1..0.5 to every pixel."""
    return (x + _level((0.1, 0.2, 0.3, 0.4, 0.5), severity)).clamp(0, 1)


@CORRUPTIONS.register("rotation")
def rotation(x: torch.Tensor, severity: int, generator: torch.Generator) -> torch.Tensor:
    """Rotate each image by 10..60 degrees, direction drawn per image."""
    degrees = _level((10.0, 20.0, 30.0, 45.0, 60.0), severity)
    sign = torch.randint(0, 2, (x.shape[0],), generator=generator).float() * 2 - 1
    angle = torch.deg2rad(sign * degrees)
    cos, sin = torch.cos(angle), torch.sin(angle)
    zero = torch.zeros_like(cos)
    theta = torch.stack([torch.stack([cos, -sin, zero], 1), torch.stack([sin, cos, zero], 1)], 1)
    return _warp(x, F.affine_grid(theta, list(x.shape), align_corners=False))


@CORRUPTIONS.register("elastic")
def elastic(x: torch.Tensor, severity: int, generator: torch.Generator) -> torch.Tensor:
    """Elastic deformation: a smooth random displacement field (Simard et al. 2003)."""
    alpha = _level((0.04, 0.06, 0.08, 0.10, 0.12), severity)  # displacement, fraction of the image
    n, _, h, w = x.shape
    field = torch.rand((n, 2, h, w), generator=generator) * 2 - 1
    field = _blur(field, sigma=max(h, w) / 8)
    field = field / field.abs().amax(dim=(1, 2, 3), keepdim=True).clamp_min(1e-8) * alpha * 2
    theta = torch.eye(2, 3).expand(n, 2, 3)
    base = F.affine_grid(theta, list(x.shape), align_corners=False)
    return _warp(x, base + field.permute(0, 2, 3, 1))


def corrupt(images: ImageSet, name: str, severity: int, seed: int = 0) -> ImageSet:
    """The same image set, corrupted; a given (name, severity, seed) always gives the same pixels,
    whatever else is registered (grporm/process/seeding.py, "corruption")."""
    fn = CORRUPTIONS.get(name)
    generator = seeding.generator(seed, "corruption", name, severity)
    x = fn(images.images.float() / 255.0, severity, generator)
    corrupted = (x.clamp(0, 1) * 255.0).round().to(torch.uint8)
    return ImageSet(corrupted, images.labels, list(images.classes))
