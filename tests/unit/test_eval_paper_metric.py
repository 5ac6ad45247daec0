"""Hand-computed cases for the paper metric (spec §5.1) and the COCO cross-check."""

from __future__ import annotations

import math
import warnings

import pandas as pd
import pytest
import torch
from torchvision.ops import box_iou

from cuneidet.eval import (
    CocoCrossCheck,
    DetectionType,
    PaperSignMAP,
    average_precision,
    box_iou_legacy,
    classify_detections,
)

T = DetectionType


def pred(boxes: list, scores: list, labels: list) -> dict[str, torch.Tensor]:
    return {
        "boxes": torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4),
        "scores": torch.tensor(scores, dtype=torch.float32),
        "labels": torch.tensor(labels, dtype=torch.int64),
    }


def gt(boxes: list, labels: list) -> dict[str, torch.Tensor]:
    return {
        "boxes": torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4),
        "labels": torch.tensor(labels, dtype=torch.int64),
    }


def box(i: int, dx: float = 0.0) -> list[float]:
    """A 100x100 box on a grid, far from every other grid box."""
    x = 200.0 * i + dx
    return [x, 0.0, x + 99.0, 99.0]


def evaluate(preds: list, targets: list, **kwargs) -> dict:
    metric = PaperSignMAP(**kwargs)
    metric.update(preds, targets)
    return metric.compute()


# --- IoU and per-segment classification ---------------------------------------------------------


def test_plus_one_iou_convention_decides_tp():
    gt_box, det_box = [0.0, 0.0, 3.0, 3.0], [1.0, 0.0, 4.0, 3.0]
    # continuous: inter 2*3 = 6, areas 9 + 9 -> 6 / 12 = 0.5 (not > 0.5)
    assert box_iou(torch.tensor([det_box]), torch.tensor([gt_box])).item() == pytest.approx(0.5)
    # "+1": inter 3*4 = 12, areas 16 + 16 -> 12 / 20 = 0.6 (> 0.5)
    assert box_iou_legacy(torch.tensor([det_box]), torch.tensor([gt_box])).item() == 0.6
    out = classify_detections(pred([det_box], [0.9], [1]), gt([gt_box], [1]))
    assert out["det_type"].tolist() == [T.TP]
    assert evaluate([pred([det_box], [0.9], [1])], [gt([gt_box], [1])])["map"] == 1.0


def test_perfect_detections_give_one():
    targets = [gt([box(0), box(1), box(2)], [1, 2, 2]), gt([box(0)], [7])]
    preds = [
        pred(t["boxes"].tolist(), [0.9] * len(t["labels"]), t["labels"].tolist()) for t in targets
    ]
    r = evaluate(preds, targets)
    assert (r["map"], r["global_ap"], r["map_align"]) == (1.0, 1.0, 1.0)
    assert (r["precision"], r["recall"], r["total_tp"], r["total_fp"]) == (1.0, 1.0, 4, 0)
    assert r["num_classes_evaluated"] == 3


def test_best_overlap_gt_of_other_class_makes_fp():
    # det vs GT1 (label 7): inter 98*100 / union 10200 = 0.961; vs GT0 (label 5): 9200/10800 = 0.85
    target = gt([[0, 0, 99, 99], [10, 0, 109, 99]], [5, 7])
    det = pred([[8, 0, 107, 99]], [0.9], [5])
    out = classify_detections(det, target)
    assert out["det_type"].tolist() == [T.CONFUSION]
    assert out["best_gt"].tolist() == [1] and out["matched_gt"].tolist() == [-1]
    assert out["gt_missed"].tolist() == [True, True]
    r = evaluate([det], [target])
    assert r["per_class"][5]["ap"] == 0.0 and r["map"] == 0.0
    assert r["total_fp"] == 1 and r["fp_confusion"] == 1


def test_duplicates_one_tp_per_gt_highest_score():
    target = gt([box(0)], [3])
    det = pred([box(0), box(0, 2), box(0, 1)], [0.8, 0.9, 0.9], [3, 3, 3])
    out = classify_detections(det, target)
    # highest score wins; on a tie the earlier detection (index 1) wins
    assert out["det_type"].tolist() == [T.DUPLICATE, T.TP, T.DUPLICATE]
    assert out["is_tp"].tolist() == [False, True, False]
    assert out["matched_gt"].tolist() == [-1, 0, -1]
    assert out["gt_detected"].tolist() == [True]
    r = evaluate([det], [target])
    # ranking TP, FP, FP with 1 GT: precision envelope 1 at recall 1 -> AP 1
    assert r["map"] == 1.0 and (r["total_tp"], r["total_fp"], r["fp_duplicate"]) == (1, 2, 2)


def test_hoiem_types_and_no_gt_segment():
    target = gt([box(0)], [2])
    # shifted by 40: "+1" IoU = 60*100 / (2*10000 - 6000) = 0.4286 -> localisation
    # shifted by 80: 20*100 / 18000 = 0.111 -> background (same class, IoU <= 0.2)
    det = pred([box(0, 40), box(0, 40), box(0, 80), box(3)], [0.9, 0.8, 0.7, 0.6], [2, 5, 2, 2])
    out = classify_detections(det, target)
    assert out["det_type"].tolist() == [T.LOCALIZATION, T.CONFUSION, T.BACKGROUND, T.BACKGROUND]
    assert out["best_gt"].tolist() == [0, 0, 0, -1]
    empty = classify_detections(det, gt([], []))
    assert empty["det_type"].tolist() == [T.BACKGROUND] * 4
    assert empty["gt_detected"].numel() == 0
    none = classify_detections(pred([], [], []), target)
    assert none["det_type"].numel() == 0 and none["gt_missed"].tolist() == [True]


# --- AP arithmetic ----------------------------------------------------------------------------


def test_average_precision_hand_case():
    # ranked TP, FP, TP, FP with 3 GT:
    #   recall    1/3, 1/3, 2/3, 2/3 ; precision 1, 1/2, 2/3, 1/2
    #   envelope at recall 1/3 -> 1, at 2/3 -> 2/3  => AP = 1/3 * 1 + 1/3 * 2/3 = 5/9
    tp = torch.tensor([False, True, False, True])
    scores = torch.tensor([0.6, 0.9, 0.8, 0.7])  # given unsorted on purpose
    assert average_precision(tp, scores, 3) == pytest.approx(5 / 9)
    assert average_precision(tp[:0], scores[:0], 3) == 0.0
    assert math.isnan(average_precision(tp, scores, 0))
    with pytest.raises(ValueError):
        average_precision(torch.tensor([True, True]), torch.tensor([0.5, 0.4]), 1)


def test_metric_hand_case_with_missed_gt():
    target = gt([box(0), box(1), box(2)], [1, 1, 1])
    det = pred([box(0), box(4), box(1), box(5)], [0.9, 0.8, 0.7, 0.6], [1, 1, 1, 1])
    r = evaluate([det], [target])
    assert r["map"] == pytest.approx(5 / 9)  # same ranking as the case above
    assert r["recall"] == pytest.approx(2 / 3) and r["precision"] == pytest.approx(0.5)
    curve = r["pr_curves"][1]
    assert curve["recall"].tolist() == pytest.approx([1 / 3, 1 / 3, 2 / 3, 2 / 3])
    assert curve["precision"].tolist() == pytest.approx([1, 1 / 2, 2 / 3, 1 / 2])


def test_global_ap_hand_case():
    # GT: a (class 1), b and c (class 2). Ranked detections:
    #   0.9 class 2 on b (TP), 0.8 class 1 on nothing (FP), 0.7 class 1 on a (TP),
    #   0.6 class 2 on c (TP).
    # global, n = 3: recall 1/3, 1/3, 2/3, 1; precision 1, 1/2, 2/3, 3/4
    #   envelope: 1, 3/4, 3/4, 3/4 -> AP = 1/3 + 1/3 * 3/4 + 1/3 * 3/4 = 5/6
    # class 1 (1 GT): FP then TP -> AP 1/2 ; class 2: two TPs -> AP 1 ; mAP = 3/4
    target = gt([box(0), box(1), box(2)], [1, 2, 2])
    det = pred([box(1), box(5), box(0), box(2)], [0.9, 0.8, 0.7, 0.6], [2, 1, 1, 2])
    r = evaluate([det], [target])
    assert r["global_ap"] == pytest.approx(5 / 6)
    assert r["per_class"][1]["ap"] == pytest.approx(0.5) and r["per_class"][2]["ap"] == 1.0
    assert r["map"] == pytest.approx(0.75)
    assert r["global_pr"]["precision"].tolist() == pytest.approx([1, 1 / 2, 2 / 3, 3 / 4])


def test_class_with_gt_but_no_detection_counts_zero():
    r = evaluate([pred([box(0)], [0.9], [1])], [gt([box(0), box(1)], [1, 2])])
    assert r["per_class"][2] == {"ap": 0.0, "num_gt": 1, "num_det": 0, "tp": 0, "fp": 0}
    assert r["map"] == 0.5 and r["map_align"] == 1.0 and r["num_classes_evaluated"] == 2


def test_detections_of_class_without_gt_only_hit_global_ap():
    target = gt([box(0)], [1])
    # class 9 has no GT anywhere: ignored by mAP, an FP ranked first in global AP.
    # Labels 0 and 240 are outside 1..239 and are ignored by both.
    det = pred([box(0), box(3), box(4), box(5)], [0.5, 0.99, 0.98, 0.97], [1, 9, 0, 240])
    r = evaluate([det], [target])
    assert r["map"] == 1.0 and r["num_classes_evaluated"] == 1
    assert r["global_ap"] == pytest.approx(0.5)  # FP then TP, 1 GT: precision 1/2 at recall 1
    assert math.isnan(r["per_class"][9]["ap"]) and r["per_class"][9]["num_det"] == 1
    assert 0 not in r["per_class"] and 240 not in r["per_class"]
    assert (r["total_tp"], r["total_fp"], r["total_fp_all"], r["precision"]) == (1, 0, 3, 1.0)


def test_gt_label_zero_and_out_of_range_are_fp_sinks():
    # det 0 sits on a label-0 GT; det 1 overlaps the class-4 GT (IoU 0.43) but a label-250 GT
    # better (IoU 1) -> both confusion FPs; det 2 is the only TP.
    target = gt([box(0), box(1), box(1, 40), box(2)], [0, 4, 250, 4])
    det = pred([box(0), box(1, 40), box(2)], [0.9, 0.8, 0.7], [4, 4, 4])
    out = classify_detections(det, target)
    assert out["det_type"].tolist() == [T.CONFUSION, T.CONFUSION, T.TP]
    assert out["gt_missed"].tolist() == [False, True, False, False]
    r = evaluate([det], [target])
    assert r["num_gt"] == 2 and r["num_gt_ignored"] == 1  # label 0 and 250 are no positives
    # class 4: FP, FP, TP with 2 GT -> recall 1/2 at precision 1/3 -> AP 1/6
    assert r["map"] == pytest.approx(1 / 6)
    assert r["recall"] == 0.5


def test_pooling_differs_from_per_segment_average():
    seg_a = (pred([box(0), box(3)], [0.5, 0.9], [1, 1]), gt([box(0)], [1]))  # FP, TP -> AP 1/2
    seg_b = (pred([box(0)], [0.95], [1]), gt([box(0)], [1]))  # TP -> AP 1
    per_segment = [evaluate([p], [t])["map"] for p, t in (seg_a, seg_b)]
    assert per_segment == [0.5, 1.0]  # averaged: 3/4
    # pooled ranking TP(.95), FP(.9), TP(.5), 2 GT: recall 1/2, 1/2, 1; precision 1, 1/2, 2/3
    #   -> AP = 1/2 * 1 + 1/2 * 2/3 = 5/6
    pooled = evaluate([seg_a[0], seg_b[0]], [seg_a[1], seg_b[1]])
    assert pooled["map"] == pytest.approx(5 / 6)


def _random_batch(generator: torch.Generator, n_seg: int) -> tuple[list, list]:
    preds, targets = [], []
    for _ in range(n_seg):
        m = int(torch.randint(0, 6, (1,), generator=generator))
        xy = torch.rand(m, 2, generator=generator) * 300
        gt_boxes = torch.cat([xy, xy + 40 + torch.rand(m, 2, generator=generator) * 40], dim=1)
        gt_labels = torch.randint(0, 5, (m,), generator=generator)
        jitter = torch.randn(m, 4, generator=generator) * 8
        extra = torch.rand(2, 2, generator=generator) * 300
        det_boxes = torch.cat([gt_boxes + jitter, torch.cat([extra, extra + 50], dim=1)])
        det_labels = torch.cat([gt_labels, torch.randint(1, 5, (2,), generator=generator)])
        flip = torch.rand(m + 2, generator=generator) < 0.2
        det_labels = torch.where(
            flip, torch.randint(1, 5, (m + 2,), generator=generator), det_labels
        )
        det_labels = det_labels.clamp(min=1)
        scores = torch.rand(m + 2, generator=generator)
        preds.append({"boxes": det_boxes, "scores": scores, "labels": det_labels})
        targets.append({"boxes": gt_boxes, "labels": gt_labels})
    return preds, targets


def _scalars(result: dict) -> dict:
    return {k: v for k, v in result.items() if not isinstance(v, dict)}


def test_two_updates_equal_one_update_and_forward():
    preds, targets = _random_batch(torch.Generator().manual_seed(0), 8)
    once = evaluate(preds, targets, num_classes=5)
    metric = PaperSignMAP(num_classes=5)
    metric.update(preds[:3], targets[:3])
    batch_value = metric(preds[3:], targets[3:])  # forward: batch value + accumulation
    assert _scalars(batch_value) == _scalars(evaluate(preds[3:], targets[3:], num_classes=5))
    twice = metric.compute()
    assert _scalars(twice) == _scalars(once)
    assert twice["per_class"] == once["per_class"]
    assert once["num_det"] == sum(len(p["labels"]) for p in preds)
    frame = pd.DataFrame.from_dict(once["per_class"], orient="index")
    assert list(frame.columns) == ["ap", "num_gt", "num_det", "tp", "fp"]
    metric.reset()
    metric.update(preds, targets)
    assert _scalars(metric.compute()) == _scalars(once)


def test_empty_cases():
    with pytest.warns(UserWarning, match="no GT"):
        r = evaluate([pred([box(0)], [0.9], [1])], [gt([box(0)], [0])])
    assert math.isnan(r["map"]) and math.isnan(r["global_ap"]) and math.isnan(r["recall"])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        r = evaluate([pred([], [], [])], [gt([box(0), box(1)], [1, 2])])
    assert r["map"] == 0.0 and r["global_ap"] == 0.0 and math.isnan(r["map_align"])
    assert r["precision"] == 0.0 and r["num_det"] == 0


def test_invalid_inputs():
    with pytest.raises(ValueError, match="predictions"):
        PaperSignMAP().update([pred([], [], [])], [])
    with pytest.raises(ValueError, match="scores"):
        classify_detections(pred([box(0)], [0.5, 0.4], [1]), gt([], []))
    with pytest.raises(ValueError, match="iou_thresh"):
        PaperSignMAP(iou_thresh=0.1, loc_low=0.2)


# --- COCO cross-check ----------------------------------------------------------------------


def test_coco_cross_check_perfect_and_label_filter():
    targets = [gt([box(0), box(1), box(2)], [1, 2, 0]), gt([box(0)], [300])]
    preds = [pred([box(0), box(1)], [0.9, 0.8], [1, 2]), pred([], [], [])]
    coco = CocoCrossCheck()
    coco.update(preds, targets)
    r = coco.compute()
    # label-0 / 300 GT dropped: otherwise the class-agnostic AP would miss 2 of 4 positives
    assert r["coco_map_50"] == pytest.approx(1.0) and r["coco_map"] == pytest.approx(1.0)
    assert r["coco_map_50_agnostic"] == pytest.approx(1.0)
    assert r["coco_num_images_over_cap"] == 0.0
    assert all(isinstance(v, float) for v in r.values())
    coco.reset()
    coco.update([pred([box(3)], [0.9], [1])], [gt([box(0)], [1])])
    assert coco.compute()["coco_map_50"] == 0.0
