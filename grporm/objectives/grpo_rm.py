"""The GRPO-RM objective for classification; reads next to docs/method.md, 'The GRPO-RM objective'
(the default) and 'Readings of the objective' (the options below).

For each query q (an image, or a pixel in segmentation) with true class y and logits z:
  policy     pi_theta(o|q) = softmax(z / tau)_o
  group      O = {0..C-1} (full, G = C), G draws from pi_old (sampled), or the output set weighted by
             pi_old (expected: with advantage_scale none, the sampled group's expectation divided by
             1 - 1/G when no clip acts; with the group's std, its large-G limit only; docs/method.md,
             'Expected group')
  reward     r_o = sum_k w_k * reward_k(o)
  advantage  A_o = (r_o - mean r) / (std r + std_eps)   (advantage_scale = group; mean and std over the
             group, under pi_old for `expected`), or the batch's std, or no division (none)
  solved     with `solved_threshold` tau: A = 0 for every output of a query with pi_old(y) >= tau
  ratio      rho_o = exp(log pi_theta(o|q) - log pi_old(o|q))
  loss       L = -(1/G) sum_o min(rho_o A_o, clip(rho_o, 1-eps_lo, 1+eps_hi) A_o), mean over queries
             (`expected`: the weights 1/G become pi_old(o))
             + beta * KL(pi_theta || pi_ref)                          (only when beta > 0)
             + lambda * log mean_{i != j} exp(-t ||f_i - f_j||^2)     (only when feature_uniformity > 0)

`dual_clip` c (off by default) bounds the objective of a negative advantage below by c * A_i
(dual-clip PPO, Ye et al. 2020): with inner_steps > 1 the ratio of a negative-advantage output
otherwise grows until exp() overflows (docs/method.md, 'Dual clip (not in the paper)').
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from grporm.config import GRPOConfig
from grporm.objectives.common import feature_uniformity_loss, flatten_queries, policy_stats
from grporm.objectives.rewards import total_reward
from grporm.training.labels import IGNORE_INDEX

GROUPS = ("full", "sampled", "expected")


def group_actions(
    old_probs: torch.Tensor, group: str, group_size: int, generator: torch.Generator | None
) -> torch.Tensor:
    """The group of outputs for every query: the whole output set (full, expected), or draws from pi_old."""
    n, num_classes = old_probs.shape
    if group in ("full", "expected"):
        return torch.arange(num_classes, device=old_probs.device).expand(n, num_classes)
    if group == "sampled":
        return torch.multinomial(old_probs, group_size, replacement=True, generator=generator)
    raise ValueError(f"unknown group {group!r}; one of {', '.join(GROUPS)}")


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


def expected_advantages(
    rewards: torch.Tensor, weights: torch.Tensor, scale: str, eps: float
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Advantages of the output set with each output weighted by pi_old (`weights`, rows sum to 1):
    centred by r_bar = sum_o w_o r_o and divided by sigma = sqrt(sum_o w_o (r_o - r_bar)^2) (group),
    by the batch's sigma (batch: the pooled std of every query's reward under pi_old around the
    batch's mean, i.e. what a sampled batch's std tends to), or not at all (none).
    Returns (advantages, r_bar, sigma) with r_bar and sigma per query."""
    mean = (weights * rewards).sum(dim=1, keepdim=True)
    centred = rewards - mean
    sigma = (weights * centred.square()).sum(dim=1, keepdim=True).sqrt()
    if scale == "group":
        return centred / (sigma + eps), mean, sigma
    if scale == "batch":
        pooled = (weights * (rewards - mean.mean()).square()).sum(dim=1).mean().sqrt()
        return centred / (pooled + eps), mean, sigma
    if scale == "none":
        return centred, mean, sigma
    raise ValueError(f"unknown advantage_scale {scale!r}")


def solved_queries(old_probs: torch.Tensor, targets: torch.Tensor, threshold: float | None) -> torch.Tensor:
    """(N,) bool: queries the old policy already solves, pi_old(y) >= threshold (none when off)."""
    if threshold is None:
        return torch.zeros_like(targets, dtype=torch.bool)
    return old_probs.gather(1, targets[:, None]).squeeze(1) >= threshold


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
    cfg: GRPOConfig | None = None,
    ref_logits: torch.Tensor | None = None,
    features: torch.Tensor | None = None,
    generator: torch.Generator | None = None,
    ignore_index: int = IGNORE_INDEX,
) -> tuple[torch.Tensor, dict[str, float]]:
    """GRPO-RM loss and its step statistics under the run's `cfg` (the `grpo_rm:` section; None = its
    defaults, so that a direct call and a default run agree). `old_logits=None` means on-policy (ratio = 1).

    `features` (B, D): the batch's backbone features, needed only when cfg.feature_uniformity > 0.
    An unknown keyword raises TypeError, an unknown option a validation error: a misspelt option must
    not be dropped silently. (inner_steps, the steps per rollout, is the training loop's option.)"""
    cfg = GRPOConfig() if cfg is None else cfg
    if old_logits is None:
        old_logits = logits.detach()
    logits, targets, old_logits, ref_logits = flatten_queries(
        logits, targets, old_logits.detach(), ref_logits, ignore_index=ignore_index
    )
    log_policy = F.log_softmax(logits.float() / cfg.temperature, dim=1)
    old_log_policy = F.log_softmax(old_logits.float() / cfg.temperature, dim=1)
    old_probs = old_log_policy.exp()

    actions = group_actions(old_probs, cfg.group, cfg.group_size, generator)
    reward = total_reward(cfg.rewards, actions, targets, old_probs)
    if cfg.group == "expected":
        adv, reward_mean, reward_std = expected_advantages(reward, old_probs, cfg.advantage_scale, cfg.std_eps)
        degenerate = reward_std.squeeze(1) == 0
    else:
        adv = advantages(reward, cfg.advantage_scale, cfg.std_eps)
        reward_mean, reward_std = reward, reward.std(dim=1, unbiased=False)
        degenerate = reward.amax(dim=1) == reward.amin(dim=1)
    zero_adv = degenerate
    if cfg.solved_threshold is not None:
        solved = solved_queries(old_probs, targets, cfg.solved_threshold)
        adv = adv.masked_fill(solved[:, None], 0.0)
        zero_adv = zero_adv | solved
    objective, ratio, clip_active = clipped_surrogate(
        log_policy.gather(1, actions),
        old_log_policy.gather(1, actions),
        adv,
        cfg.clip_eps,
        cfg.clip_eps if cfg.clip_eps_high is None else cfg.clip_eps_high,
        cfg.dual_clip,
    )
    if cfg.group == "expected":
        loss = -(old_probs * objective).sum(dim=1).mean()
        clip_frac = (old_probs * clip_active).sum(dim=1).mean()  # the sampled group's clip fraction, expected
    else:
        loss = -objective.mean(dim=1).mean()
        clip_frac = clip_active.float().mean()
    kl = uniformity = None
    if cfg.beta > 0:
        if ref_logits is None:
            raise ValueError("beta > 0 needs ref_logits from the reference model")
        kl = kl_to_reference(log_policy, F.log_softmax(ref_logits.float() / cfg.temperature, dim=1)).mean()
        loss = loss + cfg.beta * kl
    if cfg.feature_uniformity > 0:
        if features is None:
            raise ValueError("feature_uniformity > 0 needs the batch's backbone features (features=)")
        uniformity = feature_uniformity_loss(features, cfg.feature_uniformity_t)
        loss = loss + cfg.feature_uniformity * uniformity

    stats = {
        "loss": loss.item(),
        "reward_mean": reward_mean.mean().item(),
        "reward_std": reward_std.mean().item(),
        "adv_min": adv.min().item(),
        "adv_max": adv.max().item(),
        "clip_frac": clip_frac.item(),
        "ratio_max": ratio.max().item(),
        "zero_adv_frac": zero_adv.float().mean().item(),
        **policy_stats(log_policy.detach(), targets),
    }
    if kl is not None:
        stats["kl"] = kl.item()
    if uniformity is not None:
        stats["feature_uniformity"] = uniformity.item()
    return loss, stats
