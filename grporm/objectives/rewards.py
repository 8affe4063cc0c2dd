"""Rewards of GRPO-RM, one small pure function each (docs/method.md, 'The GRPO-RM objective' for
`accuracy`, `uniformity_prob`, `uniformity_flat`; 'Readings of the objective' for `uniformity_all`).

Every reward maps the group's outputs to a reward per output:
    actions (N, G) long   -- the output set sampled or enumerated for each query
    targets (N,)   long   -- the true class
    old_probs (N, C)      -- pi_old(. | q), detached
    -> rewards (N, G) float
The formulas are reconstructions: the paper names "accuracy + uniformity" but does not print them.
"""
from __future__ import annotations

import torch

from grporm.registry import Registry

REWARDS: Registry = Registry("reward")


def _is_correct(actions: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    return actions == targets[:, None]


@REWARDS.register("accuracy")
def accuracy_reward(actions: torch.Tensor, targets: torch.Tensor, old_probs: torch.Tensor) -> torch.Tensor:
    """1 for the true class, 0 for any other."""
    return _is_correct(actions, targets).to(old_probs.dtype)


@REWARDS.register("uniformity_prob")
def uniformity_prob_reward(actions: torch.Tensor, targets: torch.Tensor, old_probs: torch.Tensor) -> torch.Tensor:
    """A wrong class is penalised by the probability it draws: -pi_old(o); the true class gets 0."""
    drawn = old_probs.gather(1, actions)
    return torch.where(_is_correct(actions, targets), torch.zeros_like(drawn), -drawn)


@REWARDS.register("uniformity_flat")
def uniformity_flat_reward(actions: torch.Tensor, targets: torch.Tensor, old_probs: torch.Tensor) -> torch.Tensor:
    """A wrong class is penalised by its excess over an even share of the wrong-class mass."""
    num_classes = old_probs.shape[1]
    drawn = old_probs.gather(1, actions)
    even_share = (1.0 - old_probs.gather(1, targets[:, None])) / (num_classes - 1)
    return torch.where(_is_correct(actions, targets), torch.zeros_like(drawn), -(drawn - even_share))


@REWARDS.register("uniformity_all")
def uniformity_all_reward(actions: torch.Tensor, targets: torch.Tensor, old_probs: torch.Tensor) -> torch.Tensor:
    """1[o = y] - pi_old(o) for every output, the true class included: with the full group and no
    advantage scaling its group mean is 0 and the advantage is e_y - pi_old, so GRPO-RM's gradient is
    exactly cross-entropy's divided by G (the suite's CE anchor)."""
    return _is_correct(actions, targets).to(old_probs.dtype) - old_probs.gather(1, actions)


def total_reward(
    weights: dict[str, float], actions: torch.Tensor, targets: torch.Tensor, old_probs: torch.Tensor
) -> torch.Tensor:
    """r_i = sum over named rewards of weight * reward (w_acc * r_acc + w_uni * r_uni by default)."""
    return sum(w * REWARDS.get(name)(actions, targets, old_probs) for name, w in weights.items())
