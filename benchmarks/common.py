"""What every benchmark shares: sizes, the machine, timing summaries, synthetic data, the model."""
from __future__ import annotations

import math
import os
import platform
import statistics
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import torch

BACKBONE = "tf_efficientnet_lite0"


@dataclass(frozen=True)
class Sizes:
    """Every size a benchmark uses. `quick()` is the smoke preset, `full()` the `make bench` one."""

    repeats: int = 8
    # 1. step ratio
    batch: int = 64
    image_size: int = 64
    num_classes: int = 10
    steps_per_repeat: int = 1  # steps per A / B block; a repeat is A B B A
    # 2. loop
    loop_images: int = 384
    loop_repeats: int = 5
    # 3. evaluation
    eval_train: int = 6000
    eval_val: int = 1000
    eval_test: int = 10000
    eval_dim: int = 1280
    eval_classes: int = 10
    eval_repeats: int = 3
    sr_max_iter: int = 200
    l2_grid: tuple[float, ...] = (0.0, 1e-4, 1e-3, 1e-2)
    knn_k: int = 20
    # 4. scaling
    scale_batches: tuple[int, ...] = (16, 32, 64, 128)
    scale_repeats: int = 5
    scale_classes: tuple[int, ...] = (10, 100, 1000)
    scale_logit_batch: int = 256
    scale_train_feats: tuple[int, ...] = (1000, 2000, 4000, 8000)
    scale_eval_test: int = 2000
    scale_eval_classes: tuple[int, ...] = (10, 100, 1000)
    scale_eval_class_train: int = 3000
    scale_sr_max_iter: int = 30
    memory_batches: tuple[int, ...] = (32, 64, 128)
    memory_images: int = 128
    memory_eval_images: int = 256
    memory_repeats: int = 2
    memory_subprocess: bool = True  # False: measure in this process (quick smoke runs only)

    @classmethod
    def full(cls) -> "Sizes":
        return cls()

    @classmethod
    def quick(cls) -> "Sizes":
        return cls(
            repeats=2, batch=4, image_size=32, steps_per_repeat=1,
            loop_images=8, loop_repeats=2,
            eval_train=200, eval_val=50, eval_test=200, eval_dim=32, eval_repeats=2, sr_max_iter=10,
            l2_grid=(0.0, 1e-2), knn_k=5,
            scale_batches=(2, 4), scale_repeats=2, scale_classes=(10, 100), scale_logit_batch=16,
            scale_train_feats=(100, 200), scale_eval_test=50, scale_eval_classes=(10, 20),
            scale_eval_class_train=200, scale_sr_max_iter=10,
            memory_batches=(4,), memory_images=8, memory_eval_images=8, memory_repeats=1,
            memory_subprocess=False,
        )

    def as_dict(self) -> dict:
        return asdict(self)


# --------------------------------------------------------------------------- the machine


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def load_average() -> float | None:
    try:
        return os.getloadavg()[0]
    except (OSError, AttributeError):
        return None


def machine(threads: int) -> dict:
    import numpy
    import sklearn
    import timm

    try:
        from threadpoolctl import threadpool_info

        blas = sorted({f"{i.get('internal_api')} ({i.get('num_threads')} threads)" for i in threadpool_info()
                       if i.get("user_api") == "blas"})
    except Exception:  # noqa: BLE001 - informational only
        blas = []
    return {
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "torch_threads": threads,
        "torch": torch.__version__,
        "timm": timm.__version__,
        "sklearn": sklearn.__version__,
        "numpy": numpy.__version__,
        "numpy_blas": blas,
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "cuda": torch.cuda.get_device_name() if torch.cuda.is_available() else None,
        "device": "cpu",
        "load_average_1min_at_start": load_average(),
    }


def set_threads(threads: int) -> None:
    """Same thread count for torch and for the BLAS / OpenMP pools numpy and scikit-learn use."""
    torch.set_num_threads(threads)
    try:
        # Load scikit-learn's native libraries (scipy's OpenBLAS, OpenMP) first: a limit only
        # reaches the pools already loaded.
        import sklearn.linear_model  # noqa: F401
        import sklearn.neighbors  # noqa: F401
        from threadpoolctl import threadpool_limits

        threadpool_limits(limits=threads)
    except ImportError:
        pass


# --------------------------------------------------------------------------- timing


def summary(values: list[float]) -> dict:
    """Median, min and max of repeated measurements (and the raw values)."""
    if not values:
        raise ValueError("no measurements")
    return {
        "median": statistics.median(values),
        "min": min(values),
        "max": max(values),
        "n": len(values),
        "values": list(values),
    }


def timed(fn: Callable[[], object]) -> tuple[float, object]:
    tic = time.perf_counter()
    out = fn()
    return time.perf_counter() - tic, out


def loglog_slope(xs: list[float], ys: list[float]) -> float | None:
    """Least-squares exponent a in y ~ x^a (how a time grows with a size)."""
    points = [(math.log(x), math.log(y)) for x, y in zip(xs, ys) if x > 0 and y > 0]
    if len(points) < 2:
        return None
    mx = sum(p[0] for p in points) / len(points)
    my = sum(p[1] for p in points) / len(points)
    var = sum((p[0] - mx) ** 2 for p in points)
    if var == 0:
        return None
    return sum((p[0] - mx) * (p[1] - my) for p in points) / var


@dataclass
class Section:
    """One benchmark's results plus the load average around it (the cores are shared)."""

    name: str
    data: dict = field(default_factory=dict)

    def __enter__(self) -> "Section":
        self.data["load_average_1min_before"] = load_average()
        self._tic = time.perf_counter()
        return self

    def __exit__(self, *exc) -> None:
        self.data["wall_seconds"] = time.perf_counter() - self._tic
        self.data["load_average_1min_after"] = load_average()


# --------------------------------------------------------------------------- data and model


def synthetic_images(n: int, num_classes: int, size: int = 28, channels: int = 1, seed: int = 0):
    """An in-memory `ImageSet` of random uint8 images (Fashion-MNIST-like shape by default)."""
    from grporm.data import ImageSet

    g = torch.Generator().manual_seed(seed)
    images = torch.randint(0, 256, (n, channels, size, size), dtype=torch.uint8, generator=g)
    labels = torch.arange(n) % num_classes
    labels = labels[torch.randperm(n, generator=g)]
    return ImageSet(images, labels, [f"c{i}" for i in range(num_classes)])


def build_model(num_classes: int, weights: str = "none", seed: int = 0):
    """The suite's own model: `create_backbone` + `Classifier`, exactly as a run builds it."""
    from grporm.models import create_backbone
    from grporm.models.classifier import Classifier

    torch.manual_seed(seed)
    backbone = create_backbone(BACKBONE, weights)
    model = Classifier(backbone.module, backbone.feature_dim, num_classes)
    return model, backbone


def run_config(method: str, batch: int, image_size: int, **train: object):
    """A validated `RunConfig` for `fit` / `build_objective`."""
    from grporm.config import RunConfig

    return RunConfig.model_validate({
        "method": method,
        "data": {"image_size": image_size},
        "model": {"name": BACKBONE, "weights": "none"},
        "train": {"batch_size": batch, "epochs": 1, "device": "cpu", **train},
        "tracking": {"mode": "disabled"},
    })


def gaussian_features(n: int, dim: int, num_classes: int, seed: int, *, centres_seed: int = 1234,
                      latent: int = 32, separation: float = 0.3, noise: float = 1.0):
    """Synthetic 'pooled CNN' features: a Gaussian mixture in a low-dimensional latent space,
    mapped to `dim` non-negative features by a fixed random projection plus isotropic noise.

    `centres_seed` fixes the classes (shared by train, val and test); `seed` draws the samples.
    The defaults give a problem neither trivially separable nor hopeless (~85% top-1 with 10 classes).
    """
    g = torch.Generator().manual_seed(centres_seed)
    centres = torch.randn(num_classes, latent, generator=g) * separation
    projection = torch.randn(latent, dim, generator=g) / math.sqrt(latent)
    g = torch.Generator().manual_seed(seed)
    labels = torch.arange(n) % num_classes
    labels = labels[torch.randperm(n, generator=g)]
    z = centres[labels] + torch.randn(n, latent, generator=g) * 0.5
    feats = torch.nn.functional.softplus(z @ projection + noise * torch.randn(n, dim, generator=g))
    return feats.contiguous(), labels


def time_ms(fn, repeats: int) -> dict:
    """Milliseconds per call of `fn` (after one warm-up call): median, min and max of `repeats`."""
    fn()
    values = []
    for _ in range(repeats):
        tic = time.perf_counter()
        fn()
        values.append((time.perf_counter() - tic) * 1e3)
    return summary(values)
