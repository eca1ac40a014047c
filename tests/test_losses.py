"""Loss values on hand-made tensors; deep supervision reaches every side head."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from okrainsight.losses import LossConfig, SegmentationLoss, dice_loss, pixel_weights

torch.set_num_threads(1)

BIG = 20.0  # logit of a confident prediction


def test_dice_loss_values() -> None:
    target = torch.zeros(1, 1, 2, 2)
    target[0, 0, 0, :] = 1.0  # 2 okra pixels
    perfect = (target * 2 - 1) * BIG
    assert dice_loss(perfect, target).item() == pytest.approx(0.0, abs=1e-6)
    # prediction 0.5 everywhere: inter = 1, sum(p) = 2, sum(t) = 2 -> 1 - (2 + 1) / (4 + 1)
    assert dice_loss(torch.zeros(1, 1, 2, 2), target).item() == pytest.approx(1 - 3 / 5)
    # all wrong
    assert dice_loss(-perfect, target).item() == pytest.approx(1 - 1 / 5, abs=1e-6)


def test_bce_plus_dice_matches_hand_computation() -> None:
    logits = torch.tensor([[[[0.0, 2.0], [-1.0, 3.0]]]])
    target = torch.tensor([[[[1.0, 1.0], [0.0, 0.0]]]])
    loss, parts = SegmentationLoss(LossConfig(soft_weight=0))(logits, target)
    bce = (
        sum(
            -(t * math.log(1 / (1 + math.exp(-z))) + (1 - t) * math.log(1 - 1 / (1 + math.exp(-z))))
            for z, t in ((0.0, 1), (2.0, 1), (-1.0, 0), (3.0, 0))
        )
        / 4
    )
    p = [1 / (1 + math.exp(-z)) for z in (0.0, 2.0, -1.0, 3.0)]
    dl = 1 - (2 * (p[0] + p[1]) + 1) / (sum(p) + 2 + 1)
    assert parts["bce"].item() == pytest.approx(bce, rel=1e-5)
    assert parts["dice"].item() == pytest.approx(dl, rel=1e-5)
    assert loss.item() == pytest.approx(bce + dl, rel=1e-5)


def test_distillation_term_uses_only_samples_with_soft_maps() -> None:
    logits = torch.zeros(2, 1, 2, 2)
    target = torch.zeros(2, 1, 2, 2)
    soft = torch.full((2, 1, 2, 2), 0.25)
    crit = SegmentationLoss(LossConfig(bce_weight=0, dice_weight=0, soft_weight=2.0))
    # BCE(sigmoid(0)=0.5 against 0.25) = -(0.25 ln 0.5 + 0.75 ln 0.5) = ln 2
    loss, parts = crit(logits, target, soft, torch.tensor([1.0, 0.0]))
    assert parts["soft"].item() == pytest.approx(math.log(2), rel=1e-5)
    assert loss.item() == pytest.approx(2 * math.log(2), rel=1e-5)
    # no sample with a soft map: no distillation term at all
    loss0, parts0 = crit(logits, target, soft, torch.zeros(2))
    assert loss0.item() == 0.0 and parts0["soft"].item() == 0.0
    # the soft term pulls the logits towards the teacher: gradient sign
    z = torch.zeros(1, 1, 1, 1, requires_grad=True)
    crit(z, torch.zeros(1, 1, 1, 1), torch.full((1, 1, 1, 1), 0.9), torch.ones(1))[0].backward()
    assert z.grad is not None and z.grad.item() < 0


def test_hard_negative_weights() -> None:
    target = torch.zeros(2, 1, 2, 2)
    target[0, 0, 0, 0] = 1.0  # image 0 has okra, image 1 is a negative
    logits = torch.full((2, 1, 2, 2), -5.0)
    logits[0, 0, 1, 1] = 3.0  # a false positive in image 0
    w = pixel_weights(logits, target, negative_image_weight=3.0, false_positive_weight=5.0)
    assert torch.equal(w[1], torch.full((1, 2, 2), 3.0))
    assert w[0, 0, 1, 1] == 5.0 and w[0, 0, 0, 0] == 1.0 and w[0, 0, 0, 1] == 1.0
    plain = SegmentationLoss(LossConfig(dice_weight=0, soft_weight=0))
    heavy = SegmentationLoss(LossConfig(dice_weight=0, soft_weight=0, false_positive_weight=5.0))
    # the false positive dominates the error, so up-weighting it raises the (weighted mean) BCE
    assert heavy(logits, target)[0] > plain(logits, target)[0]


class SideNet(nn.Module):
    """A fused head plus two side heads, like U-2-Net's forward_train."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 4, 3, padding=1)
        self.side1 = nn.Conv2d(4, 1, 1)
        self.side2 = nn.Conv2d(4, 1, 3, padding=1)
        self.fuse = nn.Conv2d(2, 1, 1)

    def forward_train(self, x: torch.Tensor) -> list[torch.Tensor]:
        f = torch.relu(self.stem(x))
        s1, s2 = self.side1(f), self.side2(f)
        return [self.fuse(torch.cat([s1, s2], 1)), s1, s2]


def test_deep_supervision_sums_every_side_output() -> None:
    torch.manual_seed(0)
    net = SideNet()
    x = torch.randn(2, 3, 8, 8)
    target = (torch.rand(2, 1, 8, 8) > 0.5).float()
    crit = SegmentationLoss(LossConfig(soft_weight=0))
    outs = net.forward_train(x)
    total, parts = crit(outs, target)
    expected = sum(crit(o, target)[0] for o in outs)
    assert total.item() == pytest.approx(expected.item(), rel=1e-6)
    assert parts["total"].item() == pytest.approx(total.item())
    # not the notebook's bug: scoring the fused output three times gives another value
    assert total.item() != pytest.approx(3 * crit(outs[0], target)[0].item(), rel=1e-4)

    # each side head gets the gradient of its own loss term, not just the part through the fuse layer
    net.zero_grad()
    total.backward()
    g_total = net.side1.weight.grad.clone()
    net.zero_grad()
    crit(net.forward_train(x)[0], target)[0].backward()
    g_fused_only = net.side1.weight.grad.clone()
    assert g_total.abs().sum() > 0
    assert not torch.allclose(g_total, g_fused_only)
    net.zero_grad()
    crit(net.forward_train(x)[1], target)[0].backward()
    assert torch.allclose(g_total, g_fused_only + net.side1.weight.grad, atol=1e-6)


def test_single_logits_equal_a_list_of_one() -> None:
    logits = torch.randn(1, 1, 4, 4)
    target = (torch.rand(1, 1, 4, 4) > 0.5).float()
    crit = SegmentationLoss()
    assert crit(logits, target)[0].item() == pytest.approx(crit([logits], target)[0].item())
    assert F.binary_cross_entropy_with_logits(logits, target).item() == pytest.approx(
        crit(logits, target)[1]["bce"].item(), rel=1e-6
    )
    with pytest.raises(ValueError):
        crit(torch.zeros(1, 1, 4, 4), torch.zeros(1, 1, 4, 5))
