"""Paper-comparable sign-detection metric (Dencker et al. 2020, ``SignEvalFast``; spec §5.1).

Per segment every detection is compared with **all** GT boxes of the segment (any label, "+1"
pixel IoU) and assigned to its best-overlap GT. A detection is a TP iff that GT has the same
label in ``1..num_classes-1`` and IoU > ``iou_thresh``; one TP per GT (highest score). Over the
collection (pooled, not averaged per segment) per-class all-point VOC AP is averaged over the
classes that have GT.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from enum import IntEnum
from typing import Any

import numpy as np
import torch
from torch import Tensor
from torchmetrics import Metric
from torchmetrics.utilities import rank_zero_warn
from torchmetrics.utilities.data import dim_zero_cat

__all__ = [
    "DetectionType",
    "PaperSignMAP",
    "average_precision",
    "box_iou_legacy",
    "classify_detections",
]


class DetectionType(IntEnum):
    """Hoiem-style detection type; codes 0..3 are those of the reference ``det_type`` column.

    The reference marks duplicates as ``det_type == 3`` with ``max_det == False``; here they get
    their own code ``DUPLICATE``.
    """

    LOCALIZATION = 0  # FP: same class as best GT, loc_low < IoU <= iou_thresh
    CONFUSION = 1  # FP: other class (or GT label 0 / >= num_classes), IoU > loc_low
    BACKGROUND = 2  # FP: IoU <= loc_low (or no GT in the segment)
    TP = 3  # true positive (the highest-scoring TP candidate of its GT)
    DUPLICATE = 4  # FP: TP candidate of a GT that already has a higher-scoring TP


def box_iou_legacy(boxes1: Tensor, boxes2: Tensor) -> Tensor:
    """Pairwise IoU [N, M] (float64) with the legacy "+1" pixel convention (w = x2 - x1 + 1)."""
    b1 = boxes1.reshape(-1, 4).to(torch.float64)
    b2 = boxes2.reshape(-1, 4).to(boxes1.device, torch.float64)
    iw = torch.minimum(b1[:, None, 2], b2[None, :, 2]) - torch.maximum(b1[:, None, 0], b2[:, 0])
    ih = torch.minimum(b1[:, None, 3], b2[None, :, 3]) - torch.maximum(b1[:, None, 1], b2[:, 1])
    inter = iw.add_(1.0).clamp_(min=0.0).mul_(ih.add_(1.0).clamp_(min=0.0))
    area1 = (b1[:, 2:] - b1[:, :2] + 1.0).clamp(min=0.0).prod(dim=1)
    area2 = (b2[:, 2:] - b2[:, :2] + 1.0).clamp(min=0.0).prod(dim=1)
    union = area1[:, None] + area2[None, :] - inter
    return torch.where(union > 0, inter / union.clamp(min=1e-12), 0.0)


def _as_1d(value: Tensor, name: str) -> Tensor:
    if not isinstance(value, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(value).__name__}")
    return value.reshape(-1)


def _check_entry(entry: Mapping[str, Tensor], keys: tuple[str, ...], what: str) -> None:
    missing = [k for k in keys if k not in entry]
    if missing:
        raise ValueError(f"{what} dict lacks key(s) {missing}; expected {list(keys)}")
    boxes = entry["boxes"]
    if boxes.numel() and (boxes.ndim != 2 or boxes.shape[-1] != 4):
        raise ValueError(f"{what}['boxes'] must have shape [N, 4], got {tuple(boxes.shape)}")
    n = boxes.reshape(-1, 4).shape[0]
    for key in keys[1:]:
        if entry[key].numel() != n:
            raise ValueError(f"{what}['{key}'] has {entry[key].numel()} entries for {n} boxes")


def _resolve_duplicates(det_type: Tensor, scores: Tensor, best_gt: Tensor, num_gt: int) -> Tensor:
    """Return ``is_tp``: per GT only the highest-scoring TP candidate (first index on ties)."""
    is_tp = torch.zeros_like(det_type, dtype=torch.bool)
    cand = torch.nonzero(det_type == DetectionType.TP).squeeze(1)
    if cand.numel() == 0:
        return is_tp
    order = torch.sort(scores[cand], descending=True, stable=True).indices
    cand = cand[order]
    rank = torch.arange(cand.numel(), device=cand.device)
    first = torch.full((num_gt,), cand.numel(), dtype=torch.long, device=cand.device)
    first = first.scatter_reduce(0, best_gt[cand], rank, reduce="amin")
    is_tp[cand[first[first < cand.numel()]]] = True
    return is_tp


def classify_detections(
    pred: Mapping[str, Tensor],
    target: Mapping[str, Tensor],
    iou_thresh: float = 0.5,
    loc_low: float = 0.2,
    num_classes: int = 240,
) -> dict[str, Tensor]:
    """Classify the detections of ONE segment against its GT (spec §5.1 steps 1-4).

    GT labels outside ``1..num_classes-1`` are FP sinks: a detection whose best-overlap GT has
    such a label is CONFUSION (IoU > ``loc_low``) or BACKGROUND, never a TP.

    Returns (N = #detections, M = #GT):
        ``det_type`` int64 [N] (:class:`DetectionType` codes), ``is_tp`` bool [N],
        ``matched_gt`` int64 [N] (GT index of a TP, else -1), ``best_gt`` int64 [N] (argmax-IoU GT,
        -1 if IoU is 0 or no GT), ``best_iou`` float32 [N], ``gt_detected`` bool [M] (has a TP),
        ``gt_missed`` bool [M] (label in 1..num_classes-1 and no TP).
    """
    _check_entry(pred, ("boxes", "scores", "labels"), "pred")
    _check_entry(target, ("boxes", "labels"), "target")
    boxes = pred["boxes"].reshape(-1, 4)
    device = boxes.device
    scores = _as_1d(pred["scores"], "scores").to(device)
    labels = _as_1d(pred["labels"], "labels").to(device, torch.long)
    gt_boxes = target["boxes"].reshape(-1, 4).to(device)
    gt_labels = _as_1d(target["labels"], "target labels").to(device, torch.long)
    n, m = boxes.shape[0], gt_boxes.shape[0]

    if m > 0:
        best_iou, best_gt = box_iou_legacy(boxes, gt_boxes).max(dim=1)
        matched_label = gt_labels[best_gt]
    else:
        best_iou = torch.zeros(n, dtype=torch.float64, device=device)
        best_gt = torch.zeros(n, dtype=torch.long, device=device)
        matched_label = torch.full((n,), -1, dtype=torch.long, device=device)
    positive = (matched_label >= 1) & (matched_label < num_classes) & (best_iou > 0)
    same = positive & (labels == matched_label)

    det_type = torch.full((n,), int(DetectionType.BACKGROUND), dtype=torch.long, device=device)
    det_type[~same & (best_iou > loc_low)] = int(DetectionType.CONFUSION)
    det_type[same & (best_iou > loc_low)] = int(DetectionType.LOCALIZATION)
    det_type[same & (best_iou > iou_thresh)] = int(DetectionType.TP)
    is_tp = _resolve_duplicates(det_type, scores, best_gt, m)
    det_type[(det_type == DetectionType.TP) & ~is_tp] = int(DetectionType.DUPLICATE)

    gt_detected = torch.zeros(m, dtype=torch.bool, device=device)
    gt_detected[best_gt[is_tp]] = True
    evaluable_gt = (gt_labels >= 1) & (gt_labels < num_classes)
    minus_one = torch.full_like(best_gt, -1)
    return {
        "det_type": det_type,
        "is_tp": is_tp,
        "matched_gt": torch.where(is_tp, best_gt, minus_one),
        "best_gt": torch.where(best_iou > 0, best_gt, minus_one),
        "best_iou": best_iou.to(torch.float32),
        "gt_detected": gt_detected,
        "gt_missed": evaluable_gt & ~gt_detected,
    }


def _pr_curve(tp_sorted: Tensor, num_gt: int) -> tuple[Tensor, Tensor]:
    """Recall and precision (float64) after each detection of a score-sorted TP vector."""
    tp = tp_sorted.to(torch.float64).reshape(-1)
    ctp = torch.cumsum(tp, 0)
    cfp = torch.cumsum(1.0 - tp, 0)
    recall = ctp / float(num_gt)
    precision = ctp / (ctp + cfp).clamp(min=np.finfo(np.float64).eps)
    return recall, precision


def _voc_ap(recall: Tensor, precision: Tensor) -> float:
    """All-point VOC (>= 2010) AP: area under the monotone precision envelope."""
    zero = recall.new_zeros(1)
    mrec = torch.cat([zero, recall, zero + 1.0])
    mpre = torch.cat([zero, precision, zero])
    envelope = torch.flip(torch.cummax(torch.flip(mpre, [0]), 0).values, [0])
    return float(((mrec[1:] - mrec[:-1]) * envelope[1:]).sum())


def average_precision(tp: Tensor, scores: Tensor, num_gt: int) -> float:
    """All-point VOC AP of detections flagged ``tp`` (bool/0-1) ranked by ``scores``.

    Ties keep the given order (stable sort). ``num_gt == 0`` gives nan; no detections give 0.
    """
    tp, scores = tp.reshape(-1), scores.reshape(-1)
    if tp.numel() != scores.numel():
        raise ValueError(f"tp has {tp.numel()} entries but scores has {scores.numel()}")
    if num_gt <= 0:
        return float("nan")
    if int(tp.to(torch.long).sum()) > num_gt:
        raise ValueError(f"{int(tp.sum())} true positives exceed num_gt={num_gt}")
    order = torch.sort(scores, descending=True, stable=True).indices
    return _voc_ap(*_pr_curve(tp.to(torch.bool)[order], num_gt))


def _nanmean(values: list[float]) -> float:
    return float(np.mean(values)) if values else float("nan")


class PaperSignMAP(Metric):
    """Collection-level paper mAP (spec §5.1), pooled over all updated segments.

    ``compute()`` returns fractions in [0, 1]:

    - ``map``: mean AP over classes 1..C-1 with >= 1 GT (AP 0 without detections); nan (with a
      warning) when there is no such GT. Detections of classes without GT are ignored.
    - ``global_ap``: class-agnostic AP of all detections with label 1..C-1 (those of classes
      without GT count as FP), n = #GT with label 1..C-1; nan without GT.
    - ``map_align``: mean AP over classes with >= 1 GT and >= 1 detection (nan if none).
    - ``num_classes_evaluated``, ``num_gt`` (labels 1..C-1), ``num_gt_ignored`` (outside 0..C-1),
      ``num_det``, ``total_tp``, ``total_fp`` (non-TP of classes present in GT), ``total_fp_all``
      (all non-TP), ``fp_localization`` / ``fp_confusion`` / ``fp_background`` / ``fp_duplicate``
      (split of ``total_fp_all``), ``precision`` = tp / (tp + total_fp) (0 without such
      detections), ``recall`` = tp / num_gt (nan without GT).
    - ``per_class``: {label: {"ap", "num_gt", "num_det", "tp", "fp"}} for classes 1..C-1 with GT
      or detections (``ap`` nan where ``num_gt == 0``);
      ``pd.DataFrame.from_dict(r["per_class"], orient="index")``.
    - ``pr_curves``: {label: {"recall", "precision"}} numpy arrays (raw, per ranked detection)
      for the evaluated classes; ``global_pr``: the same for ``global_ap``.
    """

    is_differentiable = False
    higher_is_better = True
    full_state_update = False

    def __init__(
        self, num_classes: int = 240, iou_thresh: float = 0.5, loc_low: float = 0.2, **kwargs: Any
    ) -> None:
        super().__init__(**kwargs)
        if num_classes < 2:
            raise ValueError(f"num_classes must be >= 2 (background + 1 class), got {num_classes}")
        if not 0.0 <= loc_low <= iou_thresh < 1.0:
            raise ValueError(f"need 0 <= loc_low <= iou_thresh < 1, got {loc_low}, {iou_thresh}")
        self.num_classes = num_classes
        self.iou_thresh = iou_thresh
        self.loc_low = loc_low
        self.add_state("det_labels", default=[], dist_reduce_fx="cat")
        self.add_state("det_scores", default=[], dist_reduce_fx="cat")
        self.add_state("det_types", default=[], dist_reduce_fx="cat")
        self.add_state(
            "gt_counts", default=torch.zeros(num_classes, dtype=torch.long), dist_reduce_fx="sum"
        )
        self.add_state(
            "num_gt_ignored", default=torch.zeros((), dtype=torch.long), dist_reduce_fx="sum"
        )

    def update(
        self, preds: Sequence[Mapping[str, Tensor]], targets: Sequence[Mapping[str, Tensor]]
    ) -> None:
        """Classify each (prediction, target) segment pair and accumulate the results."""
        if len(preds) != len(targets):
            raise ValueError(f"got {len(preds)} predictions but {len(targets)} targets")
        labels, scores, types = [], [], []
        for pred, target in zip(preds, targets, strict=True):
            result = classify_detections(
                pred, target, self.iou_thresh, self.loc_low, self.num_classes
            )
            labels.append(pred["labels"].reshape(-1).to(self.device, torch.long))
            scores.append(pred["scores"].reshape(-1).to(self.device, torch.float32))
            types.append(result["det_type"].to(self.device, torch.int8))
            gt_labels = target["labels"].reshape(-1).to(self.device, torch.long)
            in_range = (gt_labels >= 0) & (gt_labels < self.num_classes)
            self.gt_counts += torch.bincount(gt_labels[in_range], minlength=self.num_classes)
            self.num_gt_ignored += (~in_range).sum()
        if preds:
            self.det_labels.append(torch.cat(labels).detach())
            self.det_scores.append(torch.cat(scores).detach())
            self.det_types.append(torch.cat(types).detach())

    def _gathered(self) -> tuple[Tensor, Tensor, Tensor]:
        if isinstance(self.det_labels, list) and not self.det_labels:
            empty = torch.zeros(0)
            return empty.long(), empty.float(), empty.to(torch.int8)
        states = (self.det_labels, self.det_scores, self.det_types)
        labels, scores, types = (dim_zero_cat(s).cpu() for s in states)
        return labels.long(), scores.float(), types

    def compute(self) -> dict[str, Any]:
        """Pool all accumulated detections and return the metric dict (see class docstring)."""
        labels, scores, types = self._gathered()
        gt_counts = self.gt_counts.cpu()
        c = self.num_classes
        is_tp = types == DetectionType.TP
        valid = (labels >= 1) & (labels < c)
        order = torch.sort(scores, descending=True, stable=True).indices
        labels, types, is_tp, valid = labels[order], types[order], is_tp[order], valid[order]

        per_class, pr_curves = self._per_class(labels[valid], is_tp[valid], gt_counts)
        evaluated = [v["ap"] for v in per_class.values() if v["num_gt"] > 0]
        aligned = [v["ap"] for v in per_class.values() if v["num_gt"] > 0 and v["num_det"] > 0]
        num_gt = int(gt_counts[1:].sum())
        if num_gt == 0:
            rank_zero_warn(
                "PaperSignMAP: no GT box with label 1..num_classes-1 was seen; map, global_ap and "
                "recall are nan.",
                UserWarning,
            )
        g_recall, g_precision = _pr_curve(is_tp[valid], max(num_gt, 1))
        global_ap = _voc_ap(g_recall, g_precision) if num_gt > 0 else float("nan")

        has_gt = torch.zeros(c + 1, dtype=torch.bool)
        has_gt[:c] = gt_counts > 0
        present = valid & has_gt[labels.clamp(0, c)]
        total_tp = int(is_tp.sum())
        total_fp = int((present & ~is_tp).sum())
        result: dict[str, Any] = {
            "map": _nanmean(evaluated) if num_gt > 0 else float("nan"),
            "global_ap": global_ap,
            "map_align": _nanmean(aligned),
            "num_classes_evaluated": len(evaluated),
            "num_gt": num_gt,
            "num_gt_ignored": int(self.num_gt_ignored),
            "num_det": int(labels.numel()),
            "total_tp": total_tp,
            "total_fp": total_fp,
            "total_fp_all": int((~is_tp).sum()),
            "precision": total_tp / (total_tp + total_fp) if total_tp + total_fp else 0.0,
            "recall": total_tp / num_gt if num_gt else float("nan"),
        }
        for kind in ("LOCALIZATION", "CONFUSION", "BACKGROUND", "DUPLICATE"):
            result[f"fp_{kind.lower()}"] = int((types == DetectionType[kind]).sum())
        result["per_class"] = per_class
        result["pr_curves"] = pr_curves
        result["global_pr"] = {"recall": g_recall.numpy(), "precision": g_precision.numpy()}
        return result

    def _per_class(
        self, labels: Tensor, is_tp: Tensor, gt_counts: Tensor
    ) -> tuple[dict[int, dict[str, Any]], dict[int, dict[str, np.ndarray]]]:
        """Per-class stats from score-sorted detections with labels in 1..C-1."""
        grouped = torch.sort(labels, stable=True).indices  # keeps the score order per class
        det_counts = torch.bincount(labels, minlength=self.num_classes)
        chunks = torch.split(is_tp[grouped], det_counts.tolist())
        per_class: dict[int, dict[str, Any]] = {}
        pr_curves: dict[int, dict[str, np.ndarray]] = {}
        for cls in range(1, self.num_classes):
            n_gt, n_det = int(gt_counts[cls]), int(det_counts[cls])
            if n_gt == 0 and n_det == 0:
                continue
            tp = int(chunks[cls].sum())
            ap = float("nan")
            if n_gt > 0:
                recall, precision = _pr_curve(chunks[cls], n_gt)
                ap = _voc_ap(recall, precision)
                pr_curves[cls] = {"recall": recall.numpy(), "precision": precision.numpy()}
            per_class[cls] = {
                "ap": ap,
                "num_gt": n_gt,
                "num_det": n_det,
                "tp": tp,
                "fp": n_det - tp,
            }
        return per_class, pr_curves
