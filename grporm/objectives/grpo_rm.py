"""The GRPO-RM objective for classification, line by line as SPEC section 2.

For each query q (an image, or a pixel in segmentation) with true class y and logits z:
  policy     pi_theta(o|q) = softmax(z / tau)_o
  group      O = {0..C-1} (full, G = C) or G draws from pi_old (sampled)
  reward     r_i = sum_k w_k * reward_k(o_i)
  advantage  A_i = (r_i - mean_G r) / (std_G r + eps)            (advantage_scale = group)
  ratio      rho_i = exp(log pi_theta(o_i|q) - log pi_old(o_i|q))
  loss       L = -(1/G) sum_i min(rho_i A_i, clip(rho_i, 1-eps_lo, 1+eps_hi) A_i), mean over queries
             + beta * KL(pi_theta || pi_ref)                         (only when beta > 0)

Not in SPEC (off by default): `dual_clip` c bounds the objective of a negative advantage below
by c * A_i (dual-clip PPO, Ye et al. 2020). Without it, inner_steps > 1 let the ratio of a
negative-advantage output grow until exp() overflows (see experiments/ablations/inner_steps.yaml).
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from grporm.objectives.common import flatten_queries, policy_stats
from grporm.objectives.rewards import total_reward

DEFAULT_REWARDS = {"accuracy": 1.0, "uniformity_prob": 1.0}


def group_actions(
    old_probs: torch.Tensor, group: str, group_size: int, generator: torch.Generator | None
) -> torch.Tensor:
    """The group of outputs for every query: the whole output set, or draws from pi_old."""
    n, num_classes = old_probs.shape
    if group == "full":
        return torch.arange(num_classes, device=old_probs.device).expand(n, num_classes)
    if group == "sampled":
        return torch.multinomial(old_probs, group_size, replacement=True, generator=generator)
    raise ValueError(f"unknown group {group!r}")


def advantages(rewards: torch.Tensor, scale: str, eps: float) -> torch.Tensor:
    """Group-centred rewards, divided by the group's std, the batch's std, or nothing (Dr. GRPO)."""
    centred = rewards - rewards.mean(dim=1, keepdim=True)
    if scale == "group":
        return centred / (rewards.std(dim=1, unbiased=False, keepdim=True) + eps)
    if scale == "batch":
        return centred / (rewards.std(unbiased=False) + eps)
    if scale == "none":
        return centred
    raise ValueError(f"unknown advantage_scale {scale!r}")


def clipped_surrogate(
    log_probs: torch.Tensor, old_log_probs: torch.Tensor, adv: torch.Tensor, eps_low: float, eps_high: float,
    dual_clip: float | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """PPO's clipped objective per output; returns (objective, ratio, where a clip took over).

    `dual_clip` c (> 1 + eps_high): capping the ratio at c is the dual-clip objective
    max(min(rho A, clip(rho) A), c A) for A < 0, and leaves A > 0 unchanged (clipped at 1 + eps
    already); the cap also keeps exp() finite, so no inf * 0 reaches the gradient."""
    log_ratio = log_probs - old_log_probs
    if dual_clip is not None:
        dual_active = (log_ratio > math.log(dual_clip)) & (adv < 0)
        log_ratio = log_ratio.clamp(max=math.log(dual_clip))
    ratio = torch.exp(log_ratio)
    unclipped = ratio * adv
    clipped = ratio.clamp(1.0 - eps_low, 1.0 + eps_high) * adv
    clip_active = clipped < unclipped
    if dual_clip is not None:
        clip_active |= dual_active
    return torch.minimum(unclipped, clipped), ratio, clip_active


def kl_to_reference(log_probs: torch.Tensor, ref_log_probs: torch.Tensor) -> torch.Tensor:
    """KL(pi_theta || pi_ref) per query, exact over the whole output set."""
    return (log_probs.exp() * (log_probs - ref_log_probs)).sum(dim=1)


def grpo_rm_loss(
    logits: torch.Tensor,
    targets: torch.Tensor,
    old_logits: torch.Tensor | None = None,
    *,
    rewards: dict[str, float] | None = None,
    temperature: float = 1.0,
    group: str = "full",
    group_size: int = 16,
    advantage_scale: str = "group",
    clip_eps: float = 0.2,
    clip_eps_high: float | None = None,
    dual_clip: float | None = None,
    beta: float = 0.0,
    ref_logits: torch.Tensor | None = None,
    std_eps: float = 1e-4,
    generator: torch.Generator | None = None,
    ignore_index: int = -100,
    **_: object,
) -> tuple[torch.Tensor, dict[str, float]]:
    """GRPO-RM loss and its step statistics. `old_logits=None` means on-policy (ratio = 1)."""
    if old_logits is None:
        old_logits = logits.detach()
    logits, targets, old_logits, ref_logits = flatten_queries(
        logits, targets, old_logits.detach(), ref_logits, ignore_index=ignore_index
    )
    log_policy = F.log_softmax(logits.float() / temperature, dim=1)
    old_log_policy = F.log_softmax(old_logits.float() / temperature, dim=1)
    old_probs = old_log_policy.exp()

    actions = group_actions(old_probs, group, group_size, generator)
    reward = total_reward(rewards or DEFAULT_REWARDS, actions, targets, old_probs)
    adv = advantages(reward, advantage_scale, std_eps)
    objective, ratio, clip_active = clipped_surrogate(
        log_policy.gather(1, actions),
        old_log_policy.gather(1, actions),
        adv,
        clip_eps,
        clip_eps if clip_eps_high is None else clip_eps_high,
        dual_clip,
    )
    loss = -objective.mean(dim=1).mean()
    kl = None
    if beta > 0:
        if ref_logits is None:
            raise ValueError("beta > 0 needs ref_logits from the reference model")
        kl = kl_to_reference(log_policy, F.log_softmax(ref_logits.float() / temperature, dim=1)).mean()
        loss = loss + beta * kl

    stats = {
        "loss": loss.item(),
        "reward_mean": reward.mean().item(),
        "reward_std": reward.std(dim=1, unbiased=False).mean().item(),
        "adv_min": adv.min().item(),
        "adv_max": adv.max().item(),
        "clip_frac": clip_active.float().mean().item(),
        "ratio_max": ratio.max().item(),
        **policy_stats(log_policy.detach(), targets),
    }
    if kl is not None:
        stats["kl"] = kl.item()
    return loss, stats
