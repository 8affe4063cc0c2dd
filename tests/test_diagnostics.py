"""The training diagnostics (grporm.objectives.diagnostics), one pure function each, and the loop
logging them under the same names for CE and GRPO-RM on logged steps only."""
import pytest
import torch
from torch import nn

from grporm.objectives import ce_loss, grpo_rm_loss
from grporm.objectives.diagnostics import feature_norm, head_weight_norm, logit_gap, miscls_grad_share, training_diagnostics

DIAGNOSTICS = {"logit_gap", "head_weight_norm", "feature_norm", "miscls_grad_share", "zero_adv_frac"}


def test_logit_gap_is_the_mean_range_per_query_and_skips_ignored_pixels():
    logits = torch.tensor([[1.0, 3.0, -1.0], [0.0, 0.0, 2.0]])
    assert logit_gap(logits, torch.tensor([0, 1])) == pytest.approx((4.0 + 2.0) / 2)
    pixels = logits.T.reshape(1, 3, 2, 1)  # (B, C, H, W): the two rows above as two pixels
    assert logit_gap(pixels, torch.tensor([[[0], [-100]]])) == pytest.approx(4.0)


def test_head_weight_norm_is_frobenius():
    head = nn.Linear(2, 2)
    with torch.no_grad():
        head.weight.copy_(torch.tensor([[3.0, 0.0], [0.0, 4.0]]))
    assert head_weight_norm(head) == pytest.approx(5.0)
    conv = nn.Conv2d(2, 2, 1)
    with torch.no_grad():
        conv.weight.fill_(1.0)
    assert head_weight_norm(conv) == pytest.approx(2.0)


def test_feature_norm_is_the_mean_l2_norm():
    assert feature_norm(torch.tensor([[3.0, 4.0], [0.0, 1.0]])) == pytest.approx(3.0)


def test_miscls_grad_share_weights_queries_by_their_gradient_norm():
    logits = torch.tensor([[2.0, 0.0], [0.0, 2.0], [2.0, 0.0]])
    targets = torch.tensor([0, 0, 1])  # right, wrong, wrong
    grad = torch.tensor([[3.0, 4.0], [0.0, 1.0], [0.0, 4.0]])  # norms 5, 1, 4
    assert miscls_grad_share(grad, logits, targets) == pytest.approx(0.5)
    assert miscls_grad_share(torch.zeros(3, 2), logits, targets) == 0.0
    pixels = logits.T.reshape(1, 2, 3, 1)
    assert miscls_grad_share(grad.T.reshape(1, 2, 3, 1), pixels, torch.tensor([[[0], [0], [-100]]])) == pytest.approx(1 / 6)


def test_training_diagnostics_leave_the_step_gradient_unchanged():
    torch.manual_seed(0)
    model = nn.Linear(4, 3)
    x, targets = torch.randn(6, 4), torch.randint(0, 3, (6,))
    grads = []
    for diagnose in (False, True):
        model.zero_grad()
        logits = model(x)
        loss, _ = grpo_rm_loss(logits, targets)
        if diagnose:
            stats = training_diagnostics(loss, logits, x, targets, model)
        loss.backward()
        grads.append(model.weight.grad.clone())
    assert torch.equal(grads[0], grads[1])
    assert set(stats) == DIAGNOSTICS - {"zero_adv_frac"}
    assert 0.0 <= stats["miscls_grad_share"] <= 1.0


def test_full_group_pushes_every_image_alike_ce_mostly_the_wrong_ones():
    """Why the diagnostics exist: with the full group a confidently right image gets as much logit
    gradient as a wrong one; CE's gradient sits on the misclassified ones."""
    logits = torch.tensor([[8.0, 0.0, 0.0], [0.0, 8.0, 0.0]], requires_grad=True)
    targets = torch.tensor([0, 0])
    shares = {}
    for name, fn in (("ce", ce_loss), ("grpo_rm", grpo_rm_loss)):
        loss, _ = fn(logits, targets)
        (grad,) = torch.autograd.grad(loss, logits)
        shares[name] = miscls_grad_share(grad, logits, targets)
    assert shares["ce"] > 0.99 and shares["grpo_rm"] == pytest.approx(0.5, abs=1e-3)


@pytest.mark.parametrize("method", ["ce", "grpo_rm"])
def test_fit_logs_the_diagnostics_on_logged_steps_only(tmp_path, monkeypatch, method):
    from test_end_to_end import tiny_setup

    import grporm.training.train as train
    from grporm.data import InputSpec
    from grporm.objectives import build_objective

    calls = []
    original = train.training_diagnostics
    monkeypatch.setattr(train, "training_diagnostics", lambda *a: calls.append(1) or original(*a))
    model, data, run = tiny_setup(tmp_path)  # 3 epochs of 3 steps
    run = run.model_copy(update={"method": method, "train": run.train.model_copy(update={"log_every": 4})})
    result = train.Trainer(model, build_objective(run), data, run, InputSpec(16, (0.5,) * 3, (0.5,) * 3),
                           torch.device("cpu")).fit(1e-2)
    assert [row["step"] for row in result.steps] == [0, 2, 4, 5, 8]  # every 4th and each epoch's last
    assert len(calls) == len(result.steps)
    for row in result.steps:
        assert DIAGNOSTICS <= set(row)
    if method == "ce":
        assert all(row["zero_adv_frac"] == 0.0 for row in result.steps)


def test_segmentation_diagnostics_per_pixel_with_pooled_features():
    from grporm.models.segmentation import Segmenter

    class Backbone(nn.Module):  # the one timm method Segmenter uses, on a 4-channel stride-1 map
        feature_info = [{"num_chs": 4}]

        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(3, 4, 3, padding=1)

        def forward_intermediates(self, x, indices, intermediates_only):
            return [self.conv(x)]

    torch.manual_seed(0)
    model = Segmenter(Backbone(), 3, 0)
    x, masks = torch.randn(2, 3, 6, 6), torch.randint(0, 3, (2, 6, 6))
    masks[0, :2] = -100
    features, logits = model(x, with_features=True)
    assert features.shape == (2, 4) and torch.equal(logits, model(x))
    for fn in (ce_loss, grpo_rm_loss):
        loss, stats = fn(logits, masks)
        diagnostics = training_diagnostics(loss, logits, features, masks, model.head)
        assert diagnostics["logit_gap"] == pytest.approx(logit_gap(logits, masks))
        assert 0 < diagnostics["miscls_grad_share"] < 1 and diagnostics["feature_norm"] > 0
        assert "zero_adv_frac" in stats
