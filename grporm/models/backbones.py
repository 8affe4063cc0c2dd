"""Representation backbones: any timm model, pooled to (B, D) features.

``create_backbone(name, weights)`` with ``weights`` one of

* ``none``      random initialisation;
* ``packaged``  ImageNet weights shipped in a pip package (see ``packaged.py``), offline;
* ``hub``       ``timm.create_model(name, pretrained=True)`` (needs network);
* anything else: a path to a PyTorch checkpoint file (a state dict, possibly nested
  under ``state_dict`` or ``model``; timm's ``checkpoint_filter_fn`` for the model is
  applied, e.g. to resample ViT position embeddings).
"""
from __future__ import annotations

import dataclasses
import os
import re
import sys
import warnings
from dataclasses import dataclass
from typing import Any, Mapping

import torch
from torch import nn

from grporm.errors import ConfigError, GrpormError, WeightsError, first_line
from grporm.models.packaged import PACKAGED_WEIGHTS
from grporm.records.inputs import expand_home
from grporm.tracking.notices import reading

WEIGHTS_FIX = ("give model.weights a checkpoint of model.name's architecture (a state dict saved with torch.save), "
               "or packaged / hub / none")

@dataclass
class Backbone:
    """A feature extractor: ``module(images (B,3,H,W) float) -> (B, feature_dim)``.

    Images are expected normalised with ``mean``/``std`` (per RGB channel, after
    scaling pixels to [0, 1]).  The module is returned in eval mode.
    """

    module: nn.Module
    feature_dim: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    name: str
    weights: str


def unknown_backbone(name: object) -> str | None:
    """Why `name` is no backbone (not a timm model name), with the closest names (packaged ones first),
    as data set names get them; None for a timm model."""
    import difflib

    import timm

    if isinstance(name, str) and timm.is_model(name):
        return None
    text = str(name)
    close = difflib.get_close_matches(text, list(PACKAGED_WEIGHTS), n=1, cutoff=0.75) if len(text) <= 80 else []
    close = close or (difflib.get_close_matches(text, timm.list_models(), n=3) if len(text) <= 80 else [])
    stem = re.match(r"[A-Za-z]*", text).group(0) or text
    suggestion = f" (did you mean {' or '.join(map(repr, close))}?)" if close else ""
    return (f"unknown backbone {text!r}{suggestion}: not a timm model name; see `grporm list backbones` or "
            f"python -c \"import timm; print(timm.list_models('*{stem}*'))\"")


def without_weights_fix(name: str) -> str:
    """What to use instead of weights it cannot get: packaged only for a model that has them."""
    arch = name.split(".", 1)[0]
    return ("use weights: packaged, none or a checkpoint path" if arch in PACKAGED_WEIGHTS
            else f"use weights: none or a checkpoint path ({name} has no packaged weights)")


def _arch_and_cfg(name: str):
    from timm.models import get_arch_name, get_pretrained_cfg

    problem = unknown_backbone(name)
    if problem is not None:
        raise ConfigError(problem)
    return get_arch_name(name), get_pretrained_cfg(name)


def _classifier_names(model: nn.Module, cfg: Any) -> tuple[str, ...]:
    model_cfg = getattr(model, "pretrained_cfg", None)
    names = model_cfg.get("classifier") if isinstance(model_cfg, Mapping) else None
    if names is None and cfg is not None:
        names = cfg.classifier
    if not names:
        return ()
    return (names,) if isinstance(names, str) else tuple(names)


def _drop_classifier(state: Mapping[str, torch.Tensor], model: nn.Module, cfg: Any) -> dict:
    """Remove classifier tensors the (num_classes=0) model has no place for."""
    own = model.state_dict().keys()
    prefixes = tuple(c + "." for c in _classifier_names(model, cfg))
    return {k: v for k, v in state.items() if not (k.startswith(prefixes) and k not in own)}


def _feature_dim(model: nn.Module) -> int:
    dim = getattr(model, "head_hidden_size", None) or getattr(model, "num_features", None)
    if not dim:
        raise ConfigError(f"cannot tell the feature size of timm model {type(model).__name__}")
    return int(dim)


def _create(name: str, cfg: Any, image_size: int | None, pretrained: bool = False) -> nn.Module:
    import timm

    kwargs: dict[str, Any] = {"num_classes": 0}
    # CNNs accept any input size; only fixed-size models (ViTs, MLP-Mixers, ...) take img_size.
    if image_size is not None and cfg is not None and getattr(cfg, "fixed_input_size", False):
        kwargs["img_size"] = int(image_size)
    try:
        return timm.create_model(name, pretrained=pretrained, **kwargs)
    except TypeError as exc:
        if "img_size" in str(exc):
            raise ConfigError(
                f"backbone {name!r} has a fixed input size and does not accept image_size={image_size}"
            ) from None
        raise


# --------------------------------------------------------------------------- checkpoints


# Prefixes a whole state dict may carry around a backbone's keys: DataParallel / DDP, torch.compile,
# and the suite's own pooling wrapper (ClsMeanFeatures of model.pool: cls+mean).
WRAPPER_PREFIXES = ("module.", "_orig_mod.", "vit.")
# The suite's own checkpoints (a finished run's model.pt, a training checkpoint's "model"): a
# BackboneWithHead, the backbone's tensors under `backbone.` beside the fine-tuned `head.`.
SUITE_BACKBONE, SUITE_HEAD = "backbone.", "head."
_said: set[str] = set()


def _strip_wrappers(state: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], str]:
    """The backbone's tensors without the prefixes of wrappers, and what was taken (for the user)."""
    taken = ""
    names = list(state)
    if any(k.startswith(SUITE_BACKBONE) for k in names) and all(k.startswith((SUITE_BACKBONE, SUITE_HEAD)) for k in names):
        head = sum(k.startswith(SUITE_HEAD) for k in names)
        state = {k[len(SUITE_BACKBONE):]: v for k, v in state.items() if k.startswith(SUITE_BACKBONE)}
        taken = f"the backbone of a grporm model (its head of {head} tensor(s) left out)"
    for prefix in WRAPPER_PREFIXES:
        if all(k.startswith(prefix) for k in state):
            state = {k[len(prefix):]: v for k, v in state.items()}
    return state, taken


def _unwrap_state_dict(obj: Any, path: str) -> tuple[dict[str, torch.Tensor], str]:
    """The state dict of a checkpoint file (possibly nested under `state_dict` or `model`), and what
    of it was taken, for `_say_loaded`."""
    for key in ("state_dict", "model"):
        if isinstance(obj, Mapping) and isinstance(obj.get(key), Mapping):
            obj = obj[key]
            break
    if not isinstance(obj, Mapping) or not obj:
        raise WeightsError(f"{path} is not a PyTorch checkpoint with a state dict; {WEIGHTS_FIX}")
    state = {k: v for k, v in obj.items() if isinstance(v, torch.Tensor)}
    if not state or not all(isinstance(k, str) for k in state):
        raise WeightsError(f"{path} is not a PyTorch checkpoint with a state dict; {WEIGHTS_FIX}")
    return _strip_wrappers(state)


def check_finite(state: Mapping[str, torch.Tensor], source: str) -> None:
    """Weights are judged by their values too: a NaN or infinite tensor (a diverged training saved,
    a damaged file) would train to chance or fail later with the wrong diagnosis."""
    bad = [k for k, v in state.items() if v.is_floating_point() and not bool(torch.isfinite(v).all())]
    if bad:
        raise WeightsError(f"{source}: {len(bad)} of its {len(state)} tensors hold NaN or infinite values (e.g. "
                           f"{bad[0]!r}); the weights are damaged (a diverged training?); give model.weights a "
                           "checkpoint with finite values")


def _say_loaded(path: str, name: str, loaded: int, total: int, taken: str) -> None:
    """One line per weights file and backbone per process: what was loaded from where."""
    line = (f"weights: {path}: loaded {loaded} of the {total} tensors of backbone {name!r}"
            + (f", {taken}" if taken else ""))
    if line not in _said:
        _said.add(line)
        print(line, file=sys.stderr)


def read_state_dict(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Read a state dict from a ``.pth``/``.pt``/``.ckpt`` or ``.safetensors`` file."""
    return _read_checkpoint(path)[0]


def _read_checkpoint(path: str | os.PathLike) -> tuple[dict[str, torch.Tensor], str]:
    """The state dict of a weights file and what of the file was taken (see `_strip_wrappers`)."""
    p = expand_home(path)
    if not p.exists():
        raise WeightsError(
            f"weights file not found: {str(path)!r} (weights must be none, packaged, hub or a checkpoint path)"
        )
    if not p.is_file():
        raise WeightsError(f"weights path {str(path)!r} is not a file")
    if p.suffix == ".safetensors":
        try:
            from safetensors.torch import load_file

            with reading(p):
                obj = load_file(str(p), device="cpu")
        except Exception as exc:  # noqa: BLE001
            raise WeightsError(f"{p} is not a readable safetensors file ({first_line(exc, with_type=True)})") from exc
    else:
        try:
            with reading(p):  # a warning of torch.load names this file
                obj = torch.load(p, map_location="cpu", weights_only=True)
        except Exception as exc:  # noqa: BLE001 - pickle, zip, EOF, unsafe-global errors
            raise WeightsError(
                f"{p} is not a PyTorch checkpoint (torch.load weights_only failed: {first_line(exc, with_type=True)}); "
                f"{WEIGHTS_FIX}"
            ) from exc
    return _unwrap_state_dict(obj, str(p))


def _checkpoint_filter(name: str, model: nn.Module):
    """timm's ``checkpoint_filter_fn`` for this model, if its module defines one."""
    from timm.models import model_entrypoint

    modules = []
    try:
        modules.append(model_entrypoint(name).__module__)
    except Exception:  # noqa: BLE001
        pass
    modules.append(type(model).__module__)
    for mod_name in modules:
        fn = getattr(sys.modules.get(mod_name), "checkpoint_filter_fn", None)
        if callable(fn):
            return fn
    return None


def _load_checkpoint(model: nn.Module, name: str, cfg: Any, path: str) -> None:
    state, taken = _read_checkpoint(path)
    fn = _checkpoint_filter(name, model)
    if fn is not None:
        try:
            with reading(path):
                state = fn(state, model)
        except Exception as exc:  # noqa: BLE001
            raise WeightsError(
                f"{path}: timm's checkpoint filter for {name!r} failed ({first_line(exc, with_type=True)}); "
                "is it a checkpoint of this architecture?"
            ) from exc
    state = _drop_classifier(state, model, cfg)
    own = model.state_dict()
    for key, value in state.items():
        if key in own and tuple(value.shape) != tuple(own[key].shape):
            raise WeightsError(
                f"{path}: {key!r} has shape {tuple(value.shape)} but backbone {name!r} "
                f"expects {tuple(own[key].shape)}"
            )
    check_finite({k: v for k, v in state.items() if k in own}, path)
    with reading(path):
        result = model.load_state_dict(state, strict=False)
    missing = [k for k in result.missing_keys if not k.endswith("num_batches_tracked")]
    if missing:
        shown = ", ".join(missing[:3]) + (", ..." if len(missing) > 3 else "")
        raise WeightsError(
            f"{path} lacks {len(missing)} of the {len(own)} tensors of backbone {name!r} "
            f"(e.g. {shown}); is it a checkpoint of this architecture?"
        )
    if result.unexpected_keys:
        warnings.warn(
            f"{path}: ignored {len(result.unexpected_keys)} tensors not in backbone {name!r} "
            f"(e.g. {result.unexpected_keys[0]})",
            stacklevel=3,
        )
    _say_loaded(path, name, len(state) - len(result.unexpected_keys), len(own), taken)


# --------------------------------------------------------------------------- factory


class ClsMeanFeatures(nn.Module):
    """ViT feature: the CLS token concatenated with the mean patch token (DINO's linear-eval variant)."""

    def __init__(self, vit: nn.Module):
        super().__init__()
        self.vit = vit
        self.feature_info = getattr(vit, "feature_info", None)

    def forward_intermediates(self, *args, **kwargs):
        return self.vit.forward_intermediates(*args, **kwargs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        tokens = self.vit.forward_features(x)
        return torch.cat([tokens[:, 0], tokens[:, self.vit.num_prefix_tokens:].mean(dim=1)], dim=1)


def with_pooling(backbone: Backbone, pool: str) -> Backbone:
    """`default` keeps timm's pooled feature (CNN: global average; ViT: CLS); `cls+mean` for ViTs."""
    if pool == "default":
        return backbone
    if not hasattr(backbone.module, "num_prefix_tokens"):
        raise ConfigError(f"model.pool: {pool!r} needs a ViT backbone, {backbone.name!r} has no tokens")
    return dataclasses.replace(backbone, module=ClsMeanFeatures(backbone.module), feature_dim=2 * backbone.feature_dim)


def create_backbone(name: str, weights: str = "packaged", image_size: int | None = None) -> Backbone:
    """Create timm model ``name`` without classifier, pooled to (B, D), in eval mode.

    ``weights``: ``none`` | ``packaged`` | ``hub`` | path to a checkpoint file.
    ``image_size`` is passed as ``img_size`` to models with a fixed input size (ViTs);
    convolutional models ignore it.
    """
    import timm

    weights = "none" if weights is None else str(weights)
    arch, cfg = _arch_and_cfg(name)
    mean_std = None

    if weights == "packaged":
        if arch not in PACKAGED_WEIGHTS:
            raise ConfigError(
                f"no packaged weights for backbone {name!r}; packaged: "
                f"{', '.join(PACKAGED_WEIGHTS)} (or use weights: none, hub or a checkpoint path)"
            )
        entry = PACKAGED_WEIGHTS.get(arch)
        state = entry()  # raises WeightsError before building the model if the package is missing
        model = _create(name, cfg, image_size)
        state = _drop_classifier(state, model, cfg)
        check_finite(state, f"packaged weights {entry.package}:{entry.relpath}")
        try:
            model.load_state_dict(state, strict=True)
        except RuntimeError as exc:
            raise WeightsError(
                f"packaged weights {entry.package!r} do not fit backbone {name!r} ({first_line(exc, with_type=True)})"
            ) from exc
        mean_std = (tuple(entry.mean), tuple(entry.std))
    elif weights == "hub":
        try:
            model = _create(name, cfg, image_size, pretrained=True)
        except GrpormError:
            raise
        except Exception as exc:  # noqa: BLE001 - network, HF hub, missing-file errors vary widely
            raise WeightsError(
                f"could not download pretrained weights for {name!r} ({first_line(exc, with_type=True)}) (offline?); "
                f"{without_weights_fix(name)}"
            ) from exc
    elif weights == "none":
        model = _create(name, cfg, image_size)
    else:
        path = expand_home(weights)
        if not path.exists():  # fail before building a possibly large model
            read_state_dict(path)
        model = _create(name, cfg, image_size)
        _load_checkpoint(model, name, cfg, weights)

    if mean_std is None:
        data_cfg = timm.data.resolve_data_config({}, model=model)
        mean_std = (tuple(float(x) for x in data_cfg["mean"]), tuple(float(x) for x in data_cfg["std"]))
    mean, std = mean_std
    if len(mean) != 3 or len(std) != 3:
        raise ConfigError(f"backbone {name!r} is not an RGB model (mean {mean})")

    model.eval()
    return Backbone(
        module=model,
        feature_dim=_feature_dim(model),
        mean=mean,  # type: ignore[arg-type]
        std=std,  # type: ignore[arg-type]
        name=name,
        weights=weights,
    )
