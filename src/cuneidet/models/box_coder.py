"""Box coding, anchor matching and "+1"-convention NMS of the reference detector."""

from __future__ import annotations

import torch
from torch import Tensor
from torchvision.ops import batched_nms, box_iou


def _xyxy_to_cxcywh(boxes: Tensor) -> tuple[Tensor, Tensor]:
    return (boxes[..., :2] + boxes[..., 2:]) / 2, boxes[..., 2:] - boxes[..., :2]


def encode(boxes: Tensor, anchors: Tensor) -> Tensor:
    """Regression targets ``(tx, ty, tw, th)`` of ``boxes`` w.r.t. ``anchors`` (no variances).

    tx = (xc - xa) / wa, ty = (yc - ya) / ha, tw = log(w / wa), th = log(h / ha).
    """
    ctr, wh = _xyxy_to_cxcywh(boxes)
    a_ctr, a_wh = _xyxy_to_cxcywh(anchors)
    return torch.cat([(ctr - a_ctr) / a_wh, torch.log(wh / a_wh)], dim=-1)


def decode(deltas: Tensor, anchors: Tensor) -> Tensor:
    """Inverse of :func:`encode`: xyxy boxes from ``deltas`` and ``anchors``."""
    a_ctr, a_wh = _xyxy_to_cxcywh(anchors)
    ctr = deltas[..., :2] * a_wh + a_ctr
    wh = deltas[..., 2:].exp() * a_wh
    return torch.cat([ctr - wh / 2, ctr + wh / 2], dim=-1)


def anchor_centres(anchors: Tensor) -> Tensor:
    """Integer (x, y) pixel of each anchor centre, truncated like the reference ``.int()``."""
    return ((anchors[:, :2] + anchors[:, 2:]) / 2).long()


def match(
    anchors: Tensor,
    gt_boxes: Tensor,
    gt_labels: Tensor,
    pos_iou: float = 0.5,
    line_map: Tensor | None = None,
    ignore_iou: float = 0.35,
) -> tuple[Tensor, Tensor]:
    """Assign each anchor its max-IoU ground truth (reference ``RetinaBoxCoder.encode``).

    Continuous-area IoU, no forced best-anchor match. ``cls_targets`` is the raw label of the
    matched box when IoU >= ``pos_iou`` (so a label-0 box yields background) and 0 otherwise.
    With a boolean ``line_map[H, W]``, anchors whose integer centre lies on a line and whose max
    IoU < ``ignore_iou`` get -1 (ignored); centres outside the map count as off-line. Labels
    >= num_classes must be dropped by the caller.

    Returns ``matched_boxes[A, 4]`` (the max-IoU box of every anchor, the anchor itself when there
    is no ground truth) and ``cls_targets[A]`` int64.
    """
    num_anchors = anchors.shape[0]
    if gt_boxes.numel() == 0:
        matched = anchors.clone()
        max_iou = anchors.new_zeros(num_anchors)
        cls_targets = torch.zeros(num_anchors, dtype=torch.int64, device=anchors.device)
    else:
        iou = box_iou(anchors, gt_boxes.to(anchors))
        max_iou, idx = iou.max(dim=1)
        matched = gt_boxes.to(anchors)[idx]
        cls_targets = gt_labels.to(device=anchors.device, dtype=torch.int64)[idx]
        cls_targets = torch.where(max_iou >= pos_iou, cls_targets, 0)
    if line_map is not None:
        h, w = line_map.shape[-2:]
        x, y = anchor_centres(anchors).unbind(dim=1)
        inside = (x >= 0) & (x < w) & (y >= 0) & (y < h)  # e.g. centres in batch padding
        lines = line_map.to(anchors.device).bool()
        on_line = inside & lines[y.clamp(0, h - 1), x.clamp(0, w - 1)]
        cls_targets = torch.where(on_line & (max_iou < ignore_iou), -1, cls_targets)
    return matched, cls_targets


def nms_plus_one(boxes: Tensor, scores: Tensor, idxs: Tensor, iou: float) -> Tensor:
    """Per-class greedy NMS with the legacy "+1" pixel convention (w = x2 - x1 + 1).

    The reference NMS (and the paper's evaluation) counts pixels inclusively, which raises the
    IoU of small or adjacent boxes compared with torchvision's continuous convention. Adding 1
    to x2, y2 makes torchvision's continuous IoU equal the "+1" IoU, so ``batched_nms`` gives the
    reference result. A box is suppressed when IoU > ``iou``. Returns kept indices, best first.
    """
    shifted = boxes.clone()
    shifted[:, 2:] += 1
    return batched_nms(shifted, scores, idxs, iou)


def nms_and_caps(
    boxes: Tensor,
    scores: Tensor,
    labels: Tensor,
    nms_thresh: float,
    class_agnostic_nms: float | None = None,
    max_detections: int | None = None,
) -> Tensor:
    """Indices of the detections kept, best first: per-class "+1" NMS at ``nms_thresh``, then
    an optional class-agnostic "+1" NMS and an optional cap (every decoder's last step)."""
    keep = nms_plus_one(boxes, scores, labels, nms_thresh)
    if class_agnostic_nms is not None:
        keep = keep[nms_plus_one(boxes[keep], scores[keep], labels[keep] * 0, class_agnostic_nms)]
    if max_detections is not None:
        keep = keep[:max_detections]
    return keep
