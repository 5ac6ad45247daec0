"""SSD loss with hard-negative mining (§1.6) and the focal loss."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torchvision.ops import sigmoid_focal_loss

from cuneidet.models.losses import focal_loss, ssd_loss

INF = float("inf")


def _hand_case() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Image 0: 1 positive, 4 negatives, 1 ignored; image 1: no positive, big negative losses."""
    cls_logits = torch.tensor(
        [
            [
                [0.0, 0.0, 0.0],  # positive (class 1): CE = log 3
                [0.0, 1.0, 0.0],  # negative: CE = log(2 + e)
                [0.0, 2.0, 0.0],  # negative: CE = log(2 + e^2)
                [0.0, 3.0, 0.0],  # negative: CE = log(2 + e^3)
                [0.0, 10.0, 0.0],  # ignored, would be the hardest negative
                [0.0, 0.0, 0.0],  # negative: CE = log 3, 4th hardest -> not mined
            ],
            [[0.0, 5.0, 0.0]] * 6,
        ]
    )
    cls_target = torch.tensor([[1, 0, 0, 0, -1, 0], [0, 0, 0, 0, 0, 0]])
    loc_pred = torch.zeros(2, 6, 4)
    loc_pred[0, 0] = torch.tensor([0.5, 2.0, 0.0, 0.0])  # smooth-L1: 0.125 + 1.5
    loc_pred[0, 1:] = 7.0  # non-positives: not in the loc loss
    loc_pred[1] = 3.0
    loc_target = torch.full((2, 6, 4), -INF)  # non-positive targets may be -inf (log 0)
    loc_target[0, 0] = 0.0
    return loc_pred, cls_logits, loc_target, cls_target


def test_ssd_loss_hand_computed() -> None:
    loc_pred, cls_logits, loc_target, cls_target = _hand_case()
    out = ssd_loss(loc_pred, cls_logits, loc_target, cls_target)
    e = math.e
    expected_cls = math.log(3) + math.log(2 + e) + math.log(2 + e**2) + math.log(2 + e**3)
    assert out["num_pos"].item() == 1
    assert out["loc_loss"].item() == pytest.approx(1.625, abs=1e-6)
    assert out["cls_loss"].item() == pytest.approx(expected_cls, abs=1e-5)
    assert out["loss"].item() == pytest.approx(1.625 + expected_cls, abs=1e-5)


def test_ssd_loss_divides_by_batch_positives_and_mines_per_image() -> None:
    loc_pred, cls_logits, loc_target, cls_target = _hand_case()
    single = ssd_loss(loc_pred[:1], cls_logits[:1], loc_target[:1], cls_target[:1])
    doubled = ssd_loss(
        torch.cat([loc_pred[:1]] * 2),
        torch.cat([cls_logits[:1]] * 2),
        torch.cat([loc_target[:1]] * 2),
        torch.cat([cls_target[:1]] * 2),
    )
    assert doubled["num_pos"].item() == 2
    assert doubled["loss"].item() == pytest.approx(single["loss"].item(), abs=1e-5)


def test_ssd_loss_negative_count_is_three_per_positive() -> None:
    num_anchors = 20
    cls_logits = torch.zeros(1, num_anchors, 2)
    cls_logits[0, :, 1] = torch.arange(num_anchors, dtype=torch.float32) / 10  # distinct CE
    cls_target = torch.zeros(1, num_anchors, dtype=torch.int64)
    cls_target[0, :2] = 1  # 2 positives -> 6 negatives
    loc = torch.zeros(1, num_anchors, 4)
    out = ssd_loss(loc, cls_logits, loc, cls_target)
    ce = F.cross_entropy(cls_logits[0], cls_target[0], reduction="none")
    hardest_negatives = ce[2:].sort(descending=True).values[:6].sum()
    assert out["cls_loss"].item() == pytest.approx((ce[:2].sum() + hardest_negatives).item() / 2)


def test_ssd_loss_without_positives_is_zero_and_backpropagates() -> None:
    cls_logits = torch.randn(2, 8, 4, requires_grad=True)
    loc = torch.randn(2, 8, 4, requires_grad=True)
    out = ssd_loss(loc, cls_logits, torch.zeros(2, 8, 4), torch.zeros(2, 8, dtype=torch.int64))
    assert out["loss"].item() == 0.0 and out["num_pos"].item() == 0
    out["loss"].backward()
    assert cls_logits.grad is not None and torch.all(cls_logits.grad == 0)


def _reference_ssd_loss(loc_p, cls_p, loc_t, cls_t) -> torch.Tensor:
    """Port of the reference's sort-based SSDLoss (ignored losses zeroed, then mined)."""
    pos = cls_t > 0
    num_pos = pos.sum().item()
    loc_loss = F.smooth_l1_loss(loc_p[pos], loc_t[pos], reduction="sum")
    ce = F.cross_entropy(
        cls_p.reshape(-1, cls_p.shape[-1]), cls_t.clamp(min=0).view(-1), reduction="none"
    ).view(cls_t.shape)
    ce[cls_t < 0] = 0
    _, idx = (ce * (pos.float() - 1)).sort(1)
    _, rank = idx.sort(1)
    neg = rank < 3 * pos.sum(1)[:, None]
    return (loc_loss + ce[pos | neg].sum()) / max(num_pos, 1)


def test_ssd_loss_matches_reference_algorithm() -> None:
    torch.manual_seed(0)
    n, a, c = 4, 200, 7
    cls_target = torch.randint(-1, c, (n, a))
    cls_target[cls_target > 0] *= (torch.rand(n, a) < 0.1)[cls_target > 0].long()  # few pos
    cls_target[3] = cls_target[3].clamp(max=0)  # an image without positives
    loc_pred, loc_target, cls_logits = (
        torch.randn(n, a, 4),
        torch.randn(n, a, 4),
        torch.randn(n, a, c),
    )
    ours = ssd_loss(loc_pred, cls_logits, loc_target, cls_target)["loss"]
    expected = _reference_ssd_loss(loc_pred, cls_logits, loc_target, cls_target)
    assert ours.item() == pytest.approx(expected.item(), rel=1e-5)


def test_focal_loss_ignores_minus_one_and_maps_columns() -> None:
    torch.manual_seed(0)
    cls_logits = torch.randn(1, 5, 3)  # C = 4 classes incl. background
    cls_target = torch.tensor([[2, 0, -1, 3, 0]])
    loc_pred, loc_target = torch.randn(1, 5, 4), torch.randn(1, 5, 4)
    out = focal_loss(loc_pred, cls_logits, loc_target, cls_target)
    onehot = torch.zeros(5, 3)
    onehot[0, 1] = 1.0  # class 2 -> column 1
    onehot[3, 2] = 1.0
    keep = torch.tensor([0, 1, 3, 4])
    expected_cls = sigmoid_focal_loss(cls_logits[0, keep], onehot[keep], reduction="sum") / 2
    expected_loc = F.smooth_l1_loss(loc_pred[0, [0, 3]], loc_target[0, [0, 3]], reduction="sum") / 2
    assert out["cls_loss"].item() == pytest.approx(expected_cls.item(), rel=1e-5)
    assert out["loc_loss"].item() == pytest.approx(expected_loc.item(), rel=1e-5)
    changed = cls_logits.clone()
    changed[0, 2] = 50.0  # the ignored anchor's logits do not matter
    assert focal_loss(loc_pred, changed, loc_target, cls_target)["loss"].item() == pytest.approx(
        out["loss"].item()
    )


def test_focal_loss_without_positives_normalises_by_one() -> None:
    cls_logits = torch.zeros(1, 3, 2)
    out = focal_loss(
        torch.zeros(1, 3, 4), cls_logits, torch.zeros(1, 3, 4), torch.zeros(1, 3).long()
    )
    expected = sigmoid_focal_loss(cls_logits[0], torch.zeros(3, 2), reduction="sum")
    assert out["num_pos"].item() == 0
    assert out["loss"].item() == pytest.approx(expected.item())
