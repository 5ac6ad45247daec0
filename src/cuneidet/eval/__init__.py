"""cuneidet.eval: paper-faithful sign-detection metric, COCO cross-check and reports."""

from cuneidet.eval.coco_metric import CocoCrossCheck
from cuneidet.eval.paper_metric import (
    DetectionType,
    PaperSignMAP,
    average_precision,
    box_iou_legacy,
    classify_detections,
)
from cuneidet.eval.reports import (
    draw_segment_detections,
    per_class_table,
    plot_pr_curves,
    write_metrics,
)

__all__ = [
    "CocoCrossCheck",
    "DetectionType",
    "PaperSignMAP",
    "average_precision",
    "box_iou_legacy",
    "classify_detections",
    "draw_segment_detections",
    "per_class_table",
    "plot_pr_curves",
    "write_metrics",
]
