import math

import pytest
import torch

from grporm.config import GRPOConfig
from grporm.objectives import OBJECTIVES, REWARDS, ce_loss, grpo_rm_loss
from grporm.objectives.grpo_rm import advantages, clipped_surrogate, group_actions


def full_actions(n, c):
    return torch.arange(c).expand(n, c)


def test_accuracy_reward_marks_only_the_true_class():
    old = torch.full((2, 3), 1 / 3)
    r = REWARDS.get("accuracy")(full_actions(2, 3), torch.tensor([1, 2]), old)
    assert torch.equal(r, torch.tensor([[0.0, 1.0, 0.0], [0.0, 0.0, 1.0]]))


def test_uniformity_prob_penalises_wrong_classes_by_their_probability():
    old = torch.tensor([[0.5, 0.3, 0.2]])
    r = REWARDS.get("uniformity_prob")(full_actions(1, 3), torch.tensor([0]), old)
    assert torch.allclose(r, torch.tensor([[0.0, -0.3, -0.2]]))


def test_uniformity_flat_is_zero_when_wrong_mass_is_even_and_signed_otherwise():
    even = torch.tensor([[0.6, 0.2, 0.2]])
    r = REWARDS.get("uniformity_flat")(full_actions(1, 3), torch.tensor([0]), even)
    assert torch.allclose(r, torch.zeros(1, 3), atol=1e-7)
    skewed = torch.tensor([[0.6, 0.3, 0.1]])
    r = REWARDS.get("uniformity_flat")(full_actions(1, 3), torch.tensor([0]), skewed)
    assert torch.allclose(r, torch.tensor([[0.0, -0.1, 0.1]]), atol=1e-6)


def test_rewards_follow_sampled_actions():
    old = torch.tensor([[0.5, 0.3, 0.2]])
    actions = torch.tensor([[2, 2, 0, 1]])
    r = REWARDS.get("uniformity_prob")(actions, torch.tensor([0]), old)
    assert torch.allclose(r, torch.tensor([[-0.2, -0.2, 0.0, -0.3]]))


def test_advantage_scales():
    r = torch.tensor([[1.0, 0.0, 0.0, 0.0], [2.0, 2.0, 0.0, 0.0]])
    group = advantages(r, "group", 0.0)
    assert torch.allclose(group.mean(1), torch.zeros(2), atol=1e-6)
    assert torch.allclose(group.std(1, unbiased=False), torch.ones(2))
    none = advantages(r, "none", 1e-4)
    assert torch.allclose(none, r - r.mean(1, keepdim=True))
    batch = advantages(r, "batch", 0.0)
    assert torch.allclose(batch, none / r.std(unbiased=False))


def test_gradient_identity_on_policy_full_group():
    """docs/method.md, 'The GRPO-RM objective': with mu = 1, beta = 0, tau = 1 and the full group,
    dL/dz_b = -A_b / (G * B)."""
    torch.manual_seed(0)
    b, c = 5, 7
    logits = torch.randn(b, c, requires_grad=True)
    targets = torch.randint(0, c, (b,))
    loss, _ = grpo_rm_loss(logits, targets)
    loss.backward()
    probs = logits.detach().softmax(1)
    reward = REWARDS.get("accuracy")(full_actions(b, c), targets, probs) + REWARDS.get("uniformity_prob")(
        full_actions(b, c), targets, probs
    )
    adv = advantages(reward, "group", 1e-4)
    assert torch.allclose(logits.grad, -adv / (c * b), atol=1e-7)
    assert torch.allclose(adv.sum(1), torch.zeros(b), atol=1e-5)


def test_on_policy_ratio_is_one_and_clip_never_fires():
    logits = torch.randn(8, 10)
    _, stats = grpo_rm_loss(logits, torch.randint(0, 10, (8,)))
    assert stats["clip_frac"] == 0.0
    assert stats["ratio_max"] == pytest.approx(1.0)


def test_clip_takes_over_outside_the_trust_region_and_stops_the_gradient():
    adv = torch.tensor([[1.0, -1.0, 1.0, -1.0]])
    old = torch.zeros(1, 4)
    new = torch.log(torch.tensor([[1.5, 0.5, 1.1, 0.9]])).requires_grad_()
    obj, ratio, active = clipped_surrogate(new, old, adv, 0.2, 0.2)
    assert active.tolist() == [[True, True, False, False]]
    assert torch.allclose(obj, torch.tensor([[1.2, -0.8, 1.1, -0.9]]))
    obj.sum().backward()
    assert new.grad[0, 0] == 0 and new.grad[0, 1] == 0
    assert new.grad[0, 2] != 0 and new.grad[0, 3] != 0


def test_inner_steps_move_off_policy_and_clip_bounds_the_ratio():
    """Several optimiser steps on one rollout: the clip fires, and further steps cannot push
    the clipped outputs' ratios on (their gradient is zero)."""
    torch.manual_seed(0)
    logits = torch.randn(16, 10, requires_grad=True)
    targets = torch.randint(0, 10, (16,))
    old = logits.detach().clone()
    opt = torch.optim.SGD([logits], lr=50.0)
    fracs = []
    for _ in range(4):
        loss, stats = grpo_rm_loss(logits, targets, cfg=GRPOConfig(clip_eps=0.2), old_logits=old)
        opt.zero_grad()
        loss.backward()
        opt.step()
        fracs.append(stats["clip_frac"])
    assert fracs[0] == 0.0 and fracs[-1] > 0.0
    # the clipped outputs contribute no gradient, so the ratio cannot be pushed further by them
    log_probs = logits.detach().log_softmax(1).requires_grad_()
    probs = old.softmax(1)
    reward = REWARDS.get("accuracy")(full_actions(16, 10), targets, probs) + REWARDS.get("uniformity_prob")(
        full_actions(16, 10), targets, probs
    )
    adv = advantages(reward, "group", 1e-4)
    obj, ratio, active = clipped_surrogate(log_probs, old.log_softmax(1), adv, 0.2, 0.2)
    obj.sum().backward()
    assert active.any()
    assert (log_probs.grad[active] == 0).all()
    assert ((ratio[active] > 1.2) | (ratio[active] < 0.8)).all()


def test_clip_eps_high_is_asymmetric():
    adv = torch.tensor([[1.0]])
    new = torch.log(torch.tensor([[1.25]]))
    _, _, active_sym = clipped_surrogate(new, torch.zeros(1, 1), adv, 0.2, 0.2)
    _, _, active_high = clipped_surrogate(new, torch.zeros(1, 1), adv, 0.2, 0.28)
    assert active_sym.item() and not active_high.item()


def test_sampled_group_draws_from_the_old_policy():
    old = torch.tensor([[0.0, 1.0, 0.0]]).expand(4, 3)
    actions = group_actions(old, "sampled", 6, torch.Generator().manual_seed(0))
    assert actions.shape == (4, 6) and (actions == 1).all()
    loss, stats = grpo_rm_loss(torch.randn(4, 3, requires_grad=True), torch.tensor([0, 1, 2, 0]),
                               cfg=GRPOConfig(group="sampled", group_size=4), generator=torch.Generator().manual_seed(1))
    assert torch.isfinite(loss)


def test_kl_term_only_with_beta_and_zero_at_the_reference():
    logits = torch.randn(4, 5)
    targets = torch.randint(0, 5, (4,))
    base, _ = grpo_rm_loss(logits, targets)
    same, stats = grpo_rm_loss(logits, targets, cfg=GRPOConfig(beta=0.5), ref_logits=logits)
    assert stats["kl"] == pytest.approx(0.0, abs=1e-6) and same.item() == pytest.approx(base.item(), abs=1e-6)
    moved, stats = grpo_rm_loss(logits, targets, cfg=GRPOConfig(beta=0.5), ref_logits=torch.zeros(4, 5))
    assert stats["kl"] > 0 and moved.item() > base.item()
    with pytest.raises(ValueError):
        grpo_rm_loss(logits, targets, cfg=GRPOConfig(beta=0.5))


def test_temperature_sharpens_the_policy():
    logits = torch.randn(4, 5)
    targets = torch.randint(0, 5, (4,))
    _, hot = grpo_rm_loss(logits, targets, cfg=GRPOConfig(temperature=5.0))
    _, cold = grpo_rm_loss(logits, targets, cfg=GRPOConfig(temperature=0.2))
    assert hot["entropy"] > cold["entropy"]


def test_per_pixel_objectives_match_flattened_queries_and_skip_ignored():
    torch.manual_seed(0)
    logits = torch.randn(2, 4, 3, 3)
    targets = torch.randint(0, 4, (2, 3, 3))
    targets[0, 0, 0] = -100
    flat = logits.permute(0, 2, 3, 1).reshape(-1, 4)
    keep = targets.reshape(-1) != -100
    for fn in (grpo_rm_loss, ce_loss):
        pixel, _ = fn(logits, targets)
        rows, _ = fn(flat[keep], targets.reshape(-1)[keep])
        assert pixel.item() == pytest.approx(rows.item(), rel=1e-6)


def test_ce_matches_torch_and_logs_policy_stats():
    logits = torch.randn(6, 4)
    targets = torch.randint(0, 4, (6,))
    loss, stats = ce_loss(logits, targets)
    assert loss.item() == pytest.approx(torch.nn.functional.cross_entropy(logits, targets).item(), rel=1e-6)
    assert set(stats) >= {"loss", "entropy", "pi_y", "acc"}


def test_grpo_stats_have_every_logged_key():
    """The statistics every step logs (docs/method.md, 'Clipped surrogate')."""
    _, stats = grpo_rm_loss(torch.randn(3, 4), torch.tensor([0, 1, 2]))
    assert set(stats) >= {"reward_mean", "reward_std", "adv_min", "adv_max", "clip_frac", "entropy", "pi_y", "acc"}


def test_registry_lists_both_objectives():
    assert list(OBJECTIVES) == ["ce", "grpo_rm"]
    assert set(REWARDS) == {"accuracy", "uniformity_prob", "uniformity_flat", "uniformity_all"}


def test_dual_clip_bounds_negative_advantages_and_keeps_the_gradient_finite():
    adv = torch.tensor([[-1.0, -1.0, 1.0, 1.0]])
    old = torch.zeros(1, 4)
    # ratios: 200 (overflowing regime), 2, 200, 1.1
    new = torch.log(torch.tensor([[200.0, 2.0, 200.0, 1.1]])).requires_grad_()
    plain, _, plain_active = clipped_surrogate(new, old, adv, 0.2, 0.2)
    dual, ratio, active = clipped_surrogate(new, old, adv, 0.2, 0.2, dual_clip=3.0)
    assert plain[0, 0].item() == pytest.approx(-200.0)  # the default objective: unbounded below
    assert torch.allclose(dual, torch.tensor([[-3.0, -2.0, 1.2, 1.1]]))  # c*A, then unchanged
    assert ratio[0, 0].item() == pytest.approx(3.0)
    assert active.tolist() == [[True, False, True, False]] and not plain_active[0, 0]
    dual.sum().backward()
    assert torch.isfinite(new.grad).all()
    assert new.grad[0, 0] == 0 and new.grad[0, 2] == 0 and new.grad[0, 1] != 0
    # an overflowing ratio: without the cap exp() is inf and the gradient NaN
    huge = torch.tensor([[100.0]], requires_grad=True)
    obj, _, _ = clipped_surrogate(huge, torch.zeros(1, 1), torch.tensor([[-1.0]]), 0.2, 0.2, dual_clip=3.0)
    obj.sum().backward()
    assert obj.item() == pytest.approx(-3.0) and huge.grad.item() == 0.0


def test_dual_clip_must_sit_above_the_clip():
    with pytest.raises(ValueError, match="dual_clip must be > 1 \\+ clip_eps"):
        GRPOConfig(dual_clip=1.1)
    assert GRPOConfig(dual_clip=3.0).dual_clip == 3.0


def test_every_grpo_option_reaches_the_loss_through_its_config():
    """The loss reads every option of its config (inner_steps is the training loop's), and a run's
    objective is the loss under the run's own grpo_rm section."""
    import inspect

    from grporm.config import RunConfig
    from grporm.objectives import build_objective
    from grporm.objectives import grpo_rm as module

    source = inspect.getsource(module.grpo_rm_loss)
    assert {f for f in GRPOConfig.model_fields if f"cfg.{f}" not in source} == {"inner_steps"}
    run = RunConfig(method="grpo_rm", grpo_rm={"inner_steps": 2, "dual_clip": 3.0})
    objective = build_objective(run)
    assert objective.fn.keywords["cfg"] is run.grpo_rm and objective.inner_steps == 2


# -- readings of the objective (docs/method.md, 'Readings of the objective') ---------------------


def on_policy_grad(b=6, c=5, seed=0, **options):
    torch.manual_seed(seed)
    logits = torch.randn(b, c, requires_grad=True)
    targets = torch.randint(0, c, (b,))
    loss, stats = grpo_rm_loss(logits, targets, cfg=GRPOConfig(**options))
    loss.backward()
    return logits.detach(), targets, logits.grad, stats


def test_expected_group_accuracy_reward_no_scale_is_pi_y_times_ce_gradient():
    """dL/dz_b = pi_y (pi - e_y) / B."""
    logits, targets, grad, _ = on_policy_grad(group="expected", rewards={"accuracy": 1.0}, advantage_scale="none")
    pi = logits.softmax(1)
    pi_y = pi.gather(1, targets[:, None])
    ce_grad = (pi - torch.nn.functional.one_hot(targets, 5)) / len(targets)
    assert torch.allclose(grad, pi_y * ce_grad, atol=1e-7)


def test_expected_group_accuracy_reward_group_scale_true_class_component():
    """True-class component -sqrt(pi_y (1 - pi_y)) / B, up to std_eps (exact with std_eps -> 0)."""
    for std_eps, tol in ((1e-12, 1e-6), (1e-4, 1e-4)):
        logits, targets, grad, _ = on_policy_grad(group="expected", rewards={"accuracy": 1.0}, std_eps=std_eps)
        pi_y = logits.softmax(1).gather(1, targets[:, None]).squeeze(1)
        expected = -torch.sqrt(pi_y * (1 - pi_y)) / len(targets)
        assert torch.allclose(grad.gather(1, targets[:, None]).squeeze(1), expected, atol=tol)
    assert not torch.allclose(grad.gather(1, targets[:, None]).squeeze(1), expected, atol=1e-9)  # std_eps shows


def test_expected_group_is_the_large_group_limit_of_the_sampled_group():
    """Off-policy (ratios != 1, some clipped): the expected loss is what sampled GRPO tends to."""
    torch.manual_seed(0)
    logits, old = torch.randn(64, 6), torch.randn(64, 6)
    targets = torch.randint(0, 6, (64,))
    for scale in ("group", "none", "batch"):
        expected, stats = grpo_rm_loss(logits, targets, cfg=GRPOConfig(group="expected", advantage_scale=scale), old_logits=old)
        sampled, _ = grpo_rm_loss(logits, targets, cfg=GRPOConfig(group="sampled", group_size=20_000, advantage_scale=scale),
                                  old_logits=old, generator=torch.Generator().manual_seed(0))
        assert expected.item() == pytest.approx(sampled.item(), abs=3e-3), scale
    assert 0 < stats["clip_frac"] < 1
    # a different reading: the equally weighted full group is not this limit
    full, _ = grpo_rm_loss(logits, targets, old_logits=old)
    assert abs(full.item() - expected.item()) > 1e-2


def test_solved_threshold_zeroes_solved_queries_and_leaves_the_others():
    torch.manual_seed(1)
    logits = torch.randn(12, 4) * 3
    targets = torch.randint(0, 4, (12,))
    pi_y = logits.softmax(1).gather(1, targets[:, None]).squeeze(1)
    ordered = pi_y.sort().values
    tau = float(ordered[5:7].mean())  # between two queries' pi(y), far from rounding
    solved = pi_y >= tau
    assert solved.any() and (~solved).any()
    for group in ("full", "sampled", "expected"):
        grads = []
        for threshold in (None, tau):
            z = logits.clone().requires_grad_()
            loss, stats = grpo_rm_loss(z, targets, cfg=GRPOConfig(group=group, solved_threshold=threshold),
                                       generator=torch.Generator().manual_seed(0))
            loss.backward()
            grads.append(z.grad)
        assert (grads[1][solved] == 0).all(), group
        assert torch.equal(grads[1][~solved], grads[0][~solved]), group
        assert (grads[0][solved] != 0).any(), group  # the test can fail: they had a gradient before
        if group == "sampled":  # plus the unsolved queries whose draws all earned the same reward
            assert stats["zero_adv_frac"] >= solved.float().mean().item()
        else:
            assert stats["zero_adv_frac"] == pytest.approx(solved.float().mean().item())


def test_zero_adv_frac_counts_degenerate_sampled_groups():
    certain = torch.tensor([[20.0, -20.0, -20.0], [-20.0, 20.0, -20.0]])  # every draw is class 0, then 1
    _, stats = grpo_rm_loss(certain, torch.tensor([0, 2]), cfg=GRPOConfig(group="sampled", group_size=4, rewards={"accuracy": 1.0}),
                            generator=torch.Generator().manual_seed(0))
    assert stats["zero_adv_frac"] == 1.0
    _, stats = grpo_rm_loss(certain, torch.tensor([0, 2]), cfg=GRPOConfig(rewards={"accuracy": 1.0}))
    assert stats["zero_adv_frac"] == 0.0  # the full group always holds the true class


def test_uniformity_all_reward_and_its_ce_anchor_identity():
    old = torch.tensor([[0.5, 0.3, 0.2]])
    r = REWARDS.get("uniformity_all")(full_actions(1, 3), torch.tensor([0]), old)
    assert torch.allclose(r, torch.tensor([[0.5, -0.3, -0.2]]))
    logits, targets, grad, _ = on_policy_grad(b=7, c=9, rewards={"uniformity_all": 1.0}, advantage_scale="none")
    z = logits.clone().requires_grad_()
    torch.nn.functional.cross_entropy(z, targets).backward()
    assert torch.allclose(grad, z.grad / 9, atol=1e-8, rtol=1e-6)


def test_feature_uniformity_term():
    from grporm.objectives.common import feature_uniformity_loss

    orthogonal = torch.eye(3)  # every pair at squared distance 2
    assert feature_uniformity_loss(orthogonal, t=2.0).item() == pytest.approx(-4.0, abs=1e-6)
    assert feature_uniformity_loss(5 * orthogonal, t=1.0).item() == pytest.approx(-2.0, abs=1e-6)  # scale-free
    assert feature_uniformity_loss(torch.ones(4, 3)).item() == pytest.approx(0.0, abs=1e-6)  # collapsed: the max
    pair = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0]])  # two identical, one orthogonal: mean of 1, e^-4, e^-4
    assert feature_uniformity_loss(pair).item() == pytest.approx(math.log((1 + 2 * math.exp(-4)) / 3), abs=1e-6)
    with pytest.raises(ValueError, match="at least 2"):
        feature_uniformity_loss(torch.ones(1, 3))


def test_feature_uniformity_enters_the_loss_only_when_on_and_needs_features():
    torch.manual_seed(0)
    logits, targets, features = torch.randn(5, 4), torch.randint(0, 4, (5,)), torch.randn(5, 8, requires_grad=True)
    base, _ = grpo_rm_loss(logits, targets)
    loss, stats = grpo_rm_loss(logits, targets, cfg=GRPOConfig(feature_uniformity=0.5), features=features)
    assert loss.item() == pytest.approx(base.item() + 0.5 * stats["feature_uniformity"], abs=1e-6)
    loss.backward()
    assert features.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="features"):
        grpo_rm_loss(logits, targets, cfg=GRPOConfig(feature_uniformity=0.5))


def test_misspelt_loss_options_are_refused():
    logits, targets = torch.randn(3, 4), torch.tensor([0, 1, 2])
    with pytest.raises(TypeError, match="bogus"):
        grpo_rm_loss(logits, targets, bogus=1)
    with pytest.raises(TypeError, match="solved_treshold"):
        grpo_rm_loss(logits, targets, solved_treshold=0.9)
    with pytest.raises(ValueError, match="solved_treshold"):  # pydantic's ValidationError is a ValueError
        GRPOConfig(solved_treshold=0.9)
    with pytest.raises(TypeError, match="bogus"):
        ce_loss(logits, targets, bogus=1)


def test_ce_accepts_exactly_what_the_training_loop_passes():
    """The keywords `grporm.training.train._optimise` passes every objective (plus ignore_index); a new one
    there must be added here and to ce_loss on purpose."""
    import inspect

    keywords = {n for n, p in inspect.signature(ce_loss).parameters.items() if p.kind is p.KEYWORD_ONLY}
    assert keywords == {"old_logits", "ref_logits", "generator", "ignore_index"}
    loss, stats = ce_loss(torch.randn(3, 4), torch.tensor([0, 1, 2]), old_logits=None, ref_logits=None,
                          generator=torch.Generator())
    assert stats["zero_adv_frac"] == 0.0


def test_expected_group_and_new_options_reach_the_loss_from_the_config():
    from grporm.config import RunConfig
    from grporm.objectives import build_objective

    objective = build_objective(RunConfig(method="grpo_rm", grpo_rm={
        "group": "expected", "solved_threshold": 0.9, "feature_uniformity": 0.1}))
    assert objective.fn.keywords["cfg"].group == "expected" and objective.needs_features
    assert objective.fn.keywords["cfg"].solved_threshold == 0.9
    assert not build_objective(RunConfig(method="grpo_rm")).needs_features
    with pytest.raises(ValueError):
        GRPOConfig(solved_threshold=1.5)
