"""grporm.training.methods: a method is one registry entry, and every place that asks what a method means reads it."""
from __future__ import annotations

import pytest
import torch

from grporm.analysis.records import method_label, method_rank
from grporm.config import RunConfig
from grporm.errors import ConfigError
from grporm.objectives import build_objective
from grporm.plan.experiment import build_experiment
from grporm.training.build import build
from grporm.training.methods import _ORDER, METHODS, Method, method, method_names, register
from grporm.training.train import divergence_fix


def test_the_shipped_methods_in_table_order():
    assert method_names() == ("pretrained", "linear_probe", "ce", "grpo_rm")
    assert [method_label(m) for m in method_names()] == ["Pretrained", "Linear probe", "CE", "GRPO-RM"]
    assert not method("pretrained").trains and not method("pretrained").has_head
    assert method("linear_probe").objective == "ce" and method("linear_probe").frozen_backbone
    assert build_objective(RunConfig(method="linear_probe")).name == "ce"
    assert method_label("not_registered") == "not_registered" and method_rank("not_registered")[0] == 4


def test_unknown_method_names_the_choices():
    with pytest.raises(ConfigError, match="unknown method 'sgd'; choose one of: pretrained, linear_probe, ce, grpo_rm"):
        build_experiment({"method": "sgd"}, "x.yaml")
    with pytest.raises(ConfigError, match="unknown method 'sgd'"):
        method("sgd")


def test_divergence_hint_comes_from_the_entry():
    fix = divergence_fix(RunConfig(method="grpo_rm", grpo_rm={"inner_steps": 2}))
    assert fix.startswith("set grpo_rm.dual_clip=3")
    assert divergence_fix(RunConfig(method="ce")).startswith("lower train.lr")


@pytest.fixture
def new_method():
    """A method added the way a contributor would: one entry."""
    entry = register(Method("ce_frozen_bn", "CE (frozen)", objective="ce", frozen_backbone=True,
                            divergence_hint=lambda run: "try a smaller batch", doc="test entry"))
    yield entry
    METHODS._items.pop(entry.name)
    METHODS._docs.pop(entry.name)
    _ORDER.remove(entry.name)


def test_adding_a_method_is_one_entry(new_method):
    run = RunConfig(method="ce_frozen_bn")  # the config validator accepts it
    assert build_objective(run).name == "ce"  # it trains with its objective
    assert divergence_fix(run).startswith("try a smaller batch")
    assert method_label("ce_frozen_bn") == "CE (frozen)"  # its label in tables
    assert method_rank("ce_frozen_bn") > method_rank("grpo_rm")  # after the shipped ones
    tiny = RunConfig(method="ce_frozen_bn", model={"name": "test_vit", "weights": "none"},
                     data={"name": "digits", "image_size": 16, "train_per_class": 4, "val_per_class": 2, "test_per_class": 2})
    built = build(tiny, torch.device("cpu"))
    trainable = {name for name, p in built.model.named_parameters() if p.requires_grad}
    assert trainable and all(name.startswith("head") for name in trainable)  # its backbone is frozen
