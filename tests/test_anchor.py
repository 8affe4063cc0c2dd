"""The suite's anchor (docs/method.md, 'Readings of the objective'): GRPO-RM with the reward
`uniformity_all`, the full group, no advantage scaling and one inner step has exactly cross-entropy's
logit gradient divided by G, so under Adam it reproduces a CE run of the same seed.

Not bit for bit, and the tolerance below is measured, not chosen: Adam divides m by sqrt(v) + eps, and
a gradient 1/G times smaller meets an eps G times larger in relative terms; and the GRPO gradient is
CE's / G only up to rounding (the group mean of 1[o = y] - pi_old(o) is 0 up to float error).
Parameters whose true gradient is ~0 (the key bias of attention: softmax ignores it) then take
Adam-normalised steps of pure rounding noise in both runs, and those differ. Measured on this tiny run
(test_vit, 15 steps, lr 1e-3, gradient clipping off): mean absolute weight difference 7.2e-7, largest
5.2e-4 (a qkv weight), 1.4e-4 with Adam's eps divided by G; head, validation and SR accuracy identical,
ECE within 2e-6. The control, GRPO-RM's default rewards and scaling, differs by 4.4e-4 on average
(600 times more) and 9.7e-3 at most.
Gradient clipping is off for both: clipping at the same norm would cut CE's gradient but not the G
times smaller one.
"""
import torch

from tiny_runs import checkpoint, invoke, record, write_experiment

ANCHOR = {"rewards": {"uniformity_all": 1.0}, "advantage_scale": "none", "group": "full", "inner_steps": 1}
MEAN_TOL = 1e-5  # mean absolute weight difference, measured 7.2e-7; the control's is 4.4e-4
MAX_TOL = 2e-3  # largest weight difference, measured 5.2e-4
ECE_TOL = 1e-4  # measured 2e-6


def final(folder, method):
    run_id = f"digits-test_vit-{method}-s0"
    weights = torch.load(checkpoint(folder, run_id, name="model.pt"), weights_only=True)["model"]
    return weights, record(folder, run_id)["metrics"]


def differences(a: dict, b: dict) -> tuple[float, float]:
    """(mean, max) absolute difference over every weight."""
    diff = torch.cat([(a[k].float() - b[k].float()).flatten() for k in a]).abs()
    return diff.mean().item(), diff.max().item()


def test_uniformity_all_grpo_rm_reproduces_ce_of_the_same_seed(tmp_path):
    anchor, control = tmp_path / "anchor", tmp_path / "control"
    anchor.mkdir(), control.mkdir()
    write_experiment(anchor, matrix={"method": ["ce", "grpo_rm"]}, train={"grad_clip": None}, grpo_rm=ANCHOR)
    write_experiment(control, train={"grad_clip": None})  # GRPO-RM with its default rewards and scaling
    for folder in (anchor, control):
        result = invoke(folder)
        assert result.exit_code == 0, result.output

    ce_weights, ce = final(anchor, "ce")
    grpo_weights, grpo = final(anchor, "grpo_rm")
    control_weights, _ = final(control, "grpo_rm")
    mean, largest = differences(ce_weights, grpo_weights)
    assert mean < MEAN_TOL and largest < MAX_TOL
    assert 0 < mean  # two different runs, not one run read twice
    assert differences(ce_weights, control_weights)[0] > 10 * MEAN_TOL  # the tolerance can fail
    for key in ("head_top1", "val_head_top1", "sr_top1"):
        assert grpo[key] == ce[key], key
    assert abs(grpo["ece"] - ce["ece"]) < ECE_TOL
