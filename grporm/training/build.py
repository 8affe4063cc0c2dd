"""What a run (or a tuning trial) trains and evaluates: its data splits and its model, built from the config."""
from __future__ import annotations

import os
from dataclasses import dataclass

import torch

from grporm.config import RunConfig
from grporm.data import InputSpec
from grporm.evaluate.suite import Extractor
from grporm.models import create_backbone, with_pooling
from grporm.process import seeding
from grporm.process.distributed import Dist
from grporm.training.methods import method
from grporm.training.tasks import Task, task_of
from grporm.training.train import Trainer


@dataclass
class Built:
    splits: object  # grporm.data Splits (classification) or segmentation splits
    model: torch.nn.Module
    input_spec: InputSpec  # the backbone's preprocessing
    initial_state: dict  # the weights every learning rate starts from
    task: Task  # how the run is scored (classification or segmentation)

    def reset(self) -> None:
        self.model.load_state_dict(self.initial_state)


def build(cfg: RunConfig, device: torch.device, splits=None) -> Built:
    """Data splits (given, or made from the config), the model on `device` and its initial weights."""
    task = task_of(cfg)
    if splits is None:
        splits = task.splits(cfg, seeding.split_seed(cfg))  # the run's data draws: its own seed unless data.split_seed pins one
    torch.manual_seed(seeding.derive(cfg.seed, "init"))  # same head (and random backbone) for every method of a seed
    backbone = with_pooling(create_backbone(cfg.model.name, cfg.model.weights, cfg.data.image_size), cfg.model.pool)
    model = task.model(backbone, splits.num_classes, cfg, method(cfg.method).frozen_backbone).to(device)
    if cfg.train.channels_last:  # also for runs that only evaluate
        model = model.to(memory_format=torch.channels_last)
    initial_state = {k: v.clone() for k, v in model.state_dict().items()}
    return Built(splits, model, InputSpec(cfg.data.image_size, backbone.mean, backbone.std), initial_state, task)


@dataclass
class SetUp:
    """What a run and a tuning trial both set up before training: the built model and data, the
    extractor that evaluates the model and the trainer that trains it (None for a method that does not train)."""
    built: Built
    extractor: Extractor
    trainer: Trainer | None


def set_up(cfg: RunConfig, device: torch.device, dist: Dist, *, splits=None, desc: str) -> SetUp:
    """The threads, then `build` (on `splits` if given), its extractor and its trainer (`desc` names it in the progress lines)."""
    set_threads(cfg, dist)
    built = build(cfg, device, splits)
    extractor = Extractor.for_run(built.model, built.input_spec, cfg, device, dist)
    trainer = Trainer.of(built, cfg, device, dist, desc) if method(cfg.method).trains else None
    return SetUp(built, extractor, trainer)


def set_threads(run: RunConfig, dist: Dist) -> None:
    # Under torchrun the processes of one machine share its cores.
    torch.set_num_threads(run.train.threads or max(1, (os.cpu_count() or 1) // dist.local_world_size))
