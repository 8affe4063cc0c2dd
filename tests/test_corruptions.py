import pytest
import torch

from grporm.data import ImageSet
from grporm.data.corruptions import CORRUPTIONS, SEVERITIES, corrupt


@pytest.fixture
def images():
    g = torch.Generator().manual_seed(0)
    x = torch.zeros(6, 1, 28, 28, dtype=torch.uint8)
    x[:, :, 8:20, 10:18] = torch.randint(120, 255, (6, 1, 12, 8), generator=g, dtype=torch.uint8)
    return ImageSet(x, torch.arange(6) % 3, ["a", "b", "c"])


def distance(a, b):
    return (a.images.float() - b.images.float()).abs().mean().item()


@pytest.mark.parametrize("name", sorted(CORRUPTIONS))
def test_corruptions_are_deterministic_and_grow_with_severity(images, name):
    first = corrupt(images, name, 3, seed=1)
    again = corrupt(images, name, 3, seed=1)
    assert torch.equal(first.images, again.images)
    assert first.images.dtype == torch.uint8 and first.images.shape == images.images.shape
    assert torch.equal(first.labels, images.labels)
    gaps = [distance(corrupt(images, name, s, seed=1), images) for s in SEVERITIES]
    assert gaps[0] > 0
    assert gaps[-1] > gaps[0], gaps


def test_seed_changes_random_corruptions_only(images):
    assert not torch.equal(corrupt(images, "gaussian_noise", 2, 0).images, corrupt(images, "gaussian_noise", 2, 1).images)
    assert torch.equal(corrupt(images, "contrast", 2, 0).images, corrupt(images, "contrast", 2, 1).images)


def test_unknown_corruption_and_bad_severity(images):
    from grporm.errors import ConfigError

    with pytest.raises(ConfigError, match="unknown corruption"):
        corrupt(images, "fog", 1)
    with pytest.raises(ValueError, match="severity"):
        corrupt(images, "contrast", 6)


def test_brightness_and_contrast_by_hand():
    x = ImageSet(torch.tensor([[[[0, 255]]]], dtype=torch.uint8), torch.tensor([0]), ["a"])
    assert corrupt(x, "brightness", 1).images.flatten().tolist() == [26, 255]
    assert corrupt(x, "contrast", 1).images.flatten().tolist() == [76, 178]  # 76.5 and 178.5 round half to even
