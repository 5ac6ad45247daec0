"""Detection losses: the reference SSD loss with hard-negative mining, and a focal loss.

Targets: ``cls_target[N, A]`` int64 with 0 = background, -1 = ignored, c > 0 = class c;
``loc_target[N, A, 4]`` only has to be finite at positive anchors.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor
from torchvision.ops import sigmoid_focal_loss


def _loc_loss_sum(loc_pred: Tensor, loc_target: Tensor, pos: Tensor) -> Tensor:
    # indexing (not masking by multiplication) keeps -inf/NaN targets of non-positives out
    return F.smooth_l1_loss(loc_pred[pos], loc_target[pos], beta=1.0, reduction="sum")


def hard_negative_mask(ce: Tensor, pos: Tensor, candidates: Tensor, ratio: int = 3) -> Tensor:
    """Per image, the ``ratio * #pos`` candidates with the largest ``ce`` (``[N, A]`` bool)."""
    score = ce.detach().masked_fill(~candidates, float("-inf"))
    order = score.argsort(dim=1, descending=True)
    rank = order.argsort(dim=1)
    num_neg = ratio * pos.sum(dim=1, keepdim=True)
    return candidates & (rank < num_neg)


def ssd_loss(
    loc_pred: Tensor,
    cls_logits: Tensor,
    loc_target: Tensor,
    cls_target: Tensor,
    neg_pos_ratio: int = 3,
) -> dict[str, Tensor]:
    """Reference ``SSDLoss``: summed smooth-L1 + softmax CE on positives and hard negatives.

    Hard negatives are chosen per image among non-positive, non-ignored anchors (top
    ``neg_pos_ratio * #pos`` by CE), so an image without positives adds no class loss. Both sums
    are divided by the batch's positive count (or 1 when there are none). Returns ``loss``,
    ``loc_loss``, ``cls_loss`` (normalised, ``loss = loc_loss + cls_loss``) and ``num_pos``.
    """
    pos = cls_target > 0
    num_pos = pos.sum()
    denom = num_pos.clamp(min=1).to(loc_pred.dtype)
    loc_sum = _loc_loss_sum(loc_pred, loc_target, pos)
    num_classes = cls_logits.shape[-1]
    ce = F.cross_entropy(
        cls_logits.reshape(-1, num_classes), cls_target.clamp(min=0).reshape(-1), reduction="none"
    ).view_as(cls_target)
    neg = hard_negative_mask(ce, pos, cls_target == 0, neg_pos_ratio)
    cls_sum = ce[pos | neg].sum()
    loc_loss, cls_loss = loc_sum / denom, cls_sum / denom
    return {
        "loss": loc_loss + cls_loss,
        "loc_loss": loc_loss,
        "cls_loss": cls_loss,
        "num_pos": num_pos,
    }


def focal_loss(
    loc_pred: Tensor,
    cls_logits: Tensor,
    loc_target: Tensor,
    cls_target: Tensor,
    alpha: float = 0.25,
    gamma: float = 2.0,
) -> dict[str, Tensor]:
    """Sigmoid focal loss for a head with C-1 foreground columns (column c-1 = class c).

    Background anchors have all-zero targets, ignored anchors (-1) are excluded; the focal sum
    and the summed smooth-L1 on positives are each divided by max(1, #positives).
    """
    pos = cls_target > 0
    valid = cls_target >= 0
    num_pos = pos.sum()
    denom = num_pos.clamp(min=1).to(loc_pred.dtype)
    onehot = F.one_hot(cls_target.clamp(min=0), cls_logits.shape[-1] + 1)[..., 1:]
    cls_sum = sigmoid_focal_loss(
        cls_logits[valid],
        onehot[valid].to(cls_logits.dtype),
        alpha=alpha,
        gamma=gamma,
        reduction="sum",
    )
    loc_loss = _loc_loss_sum(loc_pred, loc_target, pos) / denom
    cls_loss = cls_sum / denom
    return {
        "loss": loc_loss + cls_loss,
        "loc_loss": loc_loss,
        "cls_loss": cls_loss,
        "num_pos": num_pos,
    }
