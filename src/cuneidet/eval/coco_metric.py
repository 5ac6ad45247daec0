"""COCO-style cross-check of the paper metric via torchmetrics ``MeanAveragePrecision``.

Not comparable with the paper numbers: pycocotools uses the continuous IoU convention, matches
per class (not to the best GT of any class), and 101-point interpolated AP.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import torch
from torch import Tensor, nn
from torchmetrics.detection import MeanAveragePrecision
from torchmetrics.utilities import rank_zero_warn

__all__ = ["CocoCrossCheck"]

MAX_DETECTIONS = (1, 100, 3000)


class CocoCrossCheck(nn.Module):
    """Two ``MeanAveragePrecision`` instances: per-class ("macro") and class-agnostic ("micro").

    GT boxes with labels outside ``1..num_classes-1`` and detections with such labels are dropped.
    Segments with more than 3000 detections are counted (``coco_num_images_over_cap``) and warned
    about once per ``compute`` instead of once per segment; only the 3000 best are scored.
    """

    def __init__(self, num_classes: int = 240) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.macro = self._make("macro")
        self.micro = self._make("micro")
        self.num_over_cap = 0

    @staticmethod
    def _make(average: str) -> MeanAveragePrecision:
        metric = MeanAveragePrecision(
            box_format="xyxy",
            iou_type="bbox",
            max_detection_thresholds=list(MAX_DETECTIONS),
            backend="pycocotools",
            average=average,
        )
        metric.warn_on_many_detections = False  # counted and warned once in compute()
        return metric

    def _keep(self, entry: Mapping[str, Tensor], with_scores: bool) -> dict[str, Tensor]:
        labels = entry["labels"].reshape(-1).long()
        keep = (labels >= 1) & (labels < self.num_classes)
        out = {"boxes": entry["boxes"].reshape(-1, 4).float()[keep], "labels": labels[keep]}
        if with_scores:
            out["scores"] = entry["scores"].reshape(-1).float()[keep]
        return out

    def update(
        self, preds: Sequence[Mapping[str, Tensor]], targets: Sequence[Mapping[str, Tensor]]
    ) -> None:
        """Filter labels and feed both metrics."""
        if len(preds) != len(targets):
            raise ValueError(f"got {len(preds)} predictions but {len(targets)} targets")
        preds_kept = [self._keep(p, with_scores=True) for p in preds]
        targets_kept = [self._keep(t, with_scores=False) for t in targets]
        self.num_over_cap += sum(int(p["labels"].numel() > MAX_DETECTIONS[-1]) for p in preds_kept)
        self.macro.update(preds_kept, targets_kept)
        self.micro.update(preds_kept, targets_kept)

    def compute(self) -> dict[str, float]:
        """Return ``coco_map`` (IoU .5:.95), ``coco_map_50``, ``coco_map_75``, ``coco_mar_3000``,
        ``coco_map_agnostic``, ``coco_map_50_agnostic`` (fractions; nan where undefined) and
        ``coco_num_images_over_cap``."""
        if self.num_over_cap:
            rank_zero_warn(
                f"CocoCrossCheck: {self.num_over_cap} segment(s) had more than "
                f"{MAX_DETECTIONS[-1]} detections; only the best {MAX_DETECTIONS[-1]} were scored.",
                UserWarning,
            )
        macro, micro = self.macro.compute(), self.micro.compute()
        mar_key = f"mar_{MAX_DETECTIONS[-1]}"
        return {
            "coco_map": _value(macro["map"]),
            "coco_map_50": _value(macro["map_50"]),
            "coco_map_75": _value(macro["map_75"]),
            f"coco_{mar_key}": _value(macro[mar_key]),
            "coco_map_agnostic": _value(micro["map"]),
            "coco_map_50_agnostic": _value(micro["map_50"]),
            "coco_num_images_over_cap": float(self.num_over_cap),
        }

    def reset(self) -> None:
        """Clear both metrics."""
        self.macro.reset()
        self.micro.reset()
        self.num_over_cap = 0

    def forward(self, *args: object, **kwargs: object) -> None:  # pragma: no cover - guard
        raise TypeError("CocoCrossCheck has no forward(); call update() then compute()")


def _value(value: Tensor | float) -> float:
    """Float of a torchmetrics result; COCO's -1 (undefined) becomes nan."""
    out = float(value.item() if isinstance(value, torch.Tensor) else value)
    return math.nan if out < 0 else out
