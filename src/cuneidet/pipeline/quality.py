"""How good generated labels are: precision and recall of generated boxes against the truth.

A generated box is correct when it overlaps a not yet matched truth box of the same class with
IoU ≥ 0.5 (greedy, best IoU first; "+1 pixel" IoU as everywhere in the paper's code). The truth
is the real boxes of annotated views (train_full views used as weak data) or the forge's hidden
boxes of its visible signs. Only views with truth count, in both numerator and denominator.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import pandas as pd

from cuneidet.data.csdd import CSDD
from cuneidet.data.views import annotated_segments
from cuneidet.pipeline.views import WeakView, row_view_keys, to_scaled

IOU = 0.5


@dataclass(frozen=True)
class ViewTruth:
    """Truth boxes (scaled segment px) and labels of one view."""

    boxes: np.ndarray
    labels: np.ndarray


def box_iou_plus_one(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU matrix (len(a), len(b)) with the reference's "+1 pixel" areas."""
    a = np.asarray(a, np.float64).reshape(-1, 4)
    b = np.asarray(b, np.float64).reshape(-1, 4)
    w = np.minimum(a[:, None, 2], b[None, :, 2]) - np.maximum(a[:, None, 0], b[None, :, 0]) + 1
    h = np.minimum(a[:, None, 3], b[None, :, 3]) - np.maximum(a[:, None, 1], b[None, :, 1]) + 1
    inter = np.clip(w, 0, None) * np.clip(h, 0, None)
    area_a = (a[:, 2] - a[:, 0] + 1) * (a[:, 3] - a[:, 1] + 1)
    area_b = (b[:, 2] - b[:, 0] + 1) * (b[:, 3] - b[:, 1] + 1)
    union = area_a[:, None] + area_b[None, :] - inter
    return np.where(union > 0, inter / np.where(union > 0, union, 1), 0.0)


def count_correct(boxes: np.ndarray, labels: np.ndarray, truth: ViewTruth, iou: float = IOU) -> int:
    """Generated boxes matched one-to-one to same-class truth boxes with IoU ≥ ``iou``."""
    if len(boxes) == 0 or len(truth.labels) == 0:
        return 0
    overlap = box_iou_plus_one(boxes, truth.boxes)
    overlap[np.asarray(labels)[:, None] != truth.labels[None, :]] = 0.0
    pairs = np.argwhere(overlap >= iou)
    order = np.argsort(-overlap[pairs[:, 0], pairs[:, 1]], kind="stable")
    used_box, used_truth, correct = set(), set(), 0
    for i, j in pairs[order]:
        if i not in used_box and j not in used_truth:
            used_box.add(int(i))
            used_truth.add(int(j))
            correct += 1
    return correct


def precision_recall(
    rows: pd.DataFrame, views: Mapping[str, WeakView], truths: Mapping[str, ViewTruth]
) -> dict[str, float | int]:
    """Precision and recall of generated ``rows`` (global px, paper columns) on views with
    truth; recall counts every truth box of those views."""
    correct = generated = total = 0
    groups = dict(tuple(rows.groupby(row_view_keys(rows)))) if len(rows) else {}
    for key, truth in truths.items():
        if key not in views:
            continue
        total += len(truth.labels)
        mine = groups.get(key)
        if mine is None:
            continue
        scaled = to_scaled(mine[["x1", "y1", "x2", "y2"]].to_numpy(), views[key].segment)
        correct += count_correct(scaled, mine["train_label"].to_numpy(), truth)
        generated += len(mine)
    return {
        "precision": correct / generated if generated else float("nan"),
        "recall": correct / total if total else float("nan"),
        "correct": correct,
        "boxes": generated,
        "truth_boxes": total,
    }


def real_truth(csdd: CSDD, box_sets: list[str], views: Mapping[str, WeakView]) -> dict:
    """Truth of the weak views that have real annotated boxes (visible labels 1..239)."""
    truths = {}
    for segment in annotated_segments(csdd, box_sets) if box_sets else []:
        if segment.key in views:
            keep = (segment.labels > 0) & (segment.labels < 240)
            truths[segment.key] = ViewTruth(segment.scaled_boxes()[keep], segment.labels[keep])
    return truths


def forge_truth(frame: pd.DataFrame, views: Mapping[str, WeakView]) -> dict[str, ViewTruth]:
    """Truth of forged views from ``Forge.truth()`` rows (visible signs with labels 1..239)."""
    from cuneidet.data.tables import parse_bbox_column

    keep = (frame["status"] > 0) & (frame["train_label"] > 0) & (frame["train_label"] < 240)
    frame = frame[keep]
    truths = {}
    for (collection, segm_idx), group in frame.groupby(["collection", "segm_idx"]):
        key = f"{collection}/{segm_idx}"
        if key not in views:
            continue
        boxes = parse_bbox_column(group["relative_bbox"], "forge truth", "relative_bbox")
        scale = views[key].segment.scale
        truths[key] = ViewTruth(boxes * scale, group["train_label"].to_numpy(np.int64))
    return truths


__all__ = [
    "ViewTruth",
    "box_iou_plus_one",
    "count_correct",
    "forge_truth",
    "precision_recall",
    "real_truth",
]
