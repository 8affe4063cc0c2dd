"""Objectives by name (docs/method.md, 'The GRPO-RM objective' and 'Baseline and reference rows'). The training
loop is the same for every method; only the loss differs."""
from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Callable

from grporm.objectives.ce import ce_loss
from grporm.objectives.grpo_rm import grpo_rm_loss
from grporm.objectives.rewards import REWARDS
from grporm.registry import Registry

__all__ = ["OBJECTIVES", "REWARDS", "Objective", "build_objective", "ce_loss", "grpo_rm_loss"]


@dataclass(frozen=True)
class Objective:
    """A loss `fn(logits, targets, old_logits=, ref_logits=, generator=) -> (loss, stats)`, plus
    `features=` (the batch's backbone features) when `needs_features`.

    inner_steps: optimiser steps that reuse one rollout (pi_old); needs_reference: keep a frozen
    copy of the starting model for a KL term; needs_features: a feature term (feature uniformity).
    """

    name: str
    fn: Callable
    inner_steps: int = 1
    needs_reference: bool = False
    needs_features: bool = False


OBJECTIVES: Registry[Callable[..., Objective]] = Registry("objective")


@OBJECTIVES.register("ce")
def _build_ce(run) -> Objective:
    """Cross-entropy on the head's logits (the baseline). Feature uniformity is a GRPO-RM option only:
    CE has no options section, and its anchor comparison needs plain CE."""
    return Objective("ce", ce_loss)


@OBJECTIVES.register("grpo_rm")
def _build_grpo_rm(run) -> Objective:
    """GRPO-RM: group = output set, accuracy + uniformity reward, clipped surrogate, no KL by default."""
    return Objective(
        "grpo_rm",
        functools.partial(grpo_rm_loss, cfg=run.grpo_rm),
        inner_steps=run.grpo_rm.inner_steps,
        needs_reference=run.grpo_rm.beta > 0,
        needs_features=run.grpo_rm.feature_uniformity > 0,
    )


def build_objective(run) -> Objective:
    """The loss the run's method trains with (its grporm.training.methods entry: linear probing trains its head with CE)."""
    from grporm.training.methods import method  # lazily: the method registry is looked up per run

    name = method(run.method).objective
    if name is None:
        raise ValueError(f"method {run.method!r} does not train")
    return OBJECTIVES.get(name)(run)
