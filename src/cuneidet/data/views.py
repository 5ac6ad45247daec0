"""Annotated views: assigned segments of the CSDD with their ground-truth sign boxes, as the
detectors, the alignment's evaluation and the forge consume them."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from cuneidet.data.csdd import CSDD, GLOBAL_COLS, REL_COLS, SEG_COLS
from cuneidet.data.tables import select_names

log = logging.getLogger(__name__)


@dataclass
class AnnotatedSegment:
    """One assigned segment with its ground-truth boxes (relative, *unscaled* coordinates)."""

    collection: str
    segm_idx: int
    tablet: str
    view: str
    bbox: tuple[int, int, int, int]
    scale: float
    boxes: np.ndarray = field(default_factory=lambda: np.zeros((0, 4), np.float32))
    labels: np.ndarray = field(default_factory=lambda: np.zeros((0,), np.int64))

    def __post_init__(self) -> None:
        self.bbox = tuple(int(v) for v in self.bbox)  # type: ignore[assignment]
        self.boxes = np.asarray(self.boxes, dtype=np.float32).reshape(-1, 4)
        self.labels = np.asarray(self.labels, dtype=np.int64).reshape(-1)
        if len(self.boxes) != len(self.labels):
            raise ValueError(f"{self.key}: {len(self.boxes)} boxes but {len(self.labels)} labels")

    @property
    def key(self) -> str:
        """``"collection/segm_idx"``, unique over the whole dataset."""
        return f"{self.collection}/{self.segm_idx}"

    @property
    def name(self) -> str:
        """``"tablet view"`` (just the tablet when the view is unknown)."""
        return f"{self.tablet} {self.view}".strip()

    @property
    def size(self) -> tuple[int, int]:
        """Unscaled segment ``(width, height)``."""
        x0, y0, x1, y1 = self.bbox
        return x1 - x0, y1 - y0

    def scaled_boxes(self) -> np.ndarray:
        """Boxes in scaled segment coordinates (``boxes × scale``), float32 ``[N, 4]``."""
        return (self.boxes.astype(np.float64) * self.scale).astype(np.float32)


def segment_from_row(
    row: Mapping[str, Any] | pd.Series,
    boxes: np.ndarray | None = None,
    labels: np.ndarray | None = None,
) -> AnnotatedSegment:
    """An :class:`AnnotatedSegment` from a :meth:`CSDD.segments` row (no boxes by default)."""
    return AnnotatedSegment(
        collection=str(row["collection"]),
        segm_idx=int(row["segm_idx"]),
        tablet=str(row["tablet_CDLI"]),
        view=str(row["view_desc"]),
        bbox=tuple(int(row[c]) for c in SEG_COLS),  # type: ignore[arg-type]
        scale=float(row["scale"]),
        boxes=np.zeros((0, 4), np.float32) if boxes is None else boxes,
        labels=np.zeros((0,), np.int64) if labels is None else labels,
    )


_BOX_KEY = ["collection", "segm_idx", "mzl_label", "train_label", *REL_COLS, *GLOBAL_COLS]


def union_boxes(csdd: CSDD, sets: Sequence[str]) -> pd.DataFrame:
    """Boxes of several sets as a *multiset union*: a row present in several sets is kept once.

    Each row is keyed by its content plus its occurrence number within its own set, so naming
    a set twice (or ``train_full`` and its part ``saa09``) adds nothing, while genuine repeated
    rows inside one file are kept. Order: first appearance (sets in the given order).
    """
    names = select_names(sets, csdd.box_sets, "box set")
    frames = []
    for name in names:
        boxes = csdd.boxes(name)
        boxes["_occurrence"] = boxes.groupby(_BOX_KEY, sort=False).cumcount()
        frames.append(boxes)
    merged = pd.concat(frames, ignore_index=True)
    merged = merged.drop_duplicates([*_BOX_KEY, "_occurrence"], keep="first")
    return merged.drop(columns="_occurrence").reset_index(drop=True)


def annotated_segments(csdd: CSDD, sets: Sequence[str]) -> list[AnnotatedSegment]:
    """Assigned segments carrying boxes of the union of ``sets``, ordered by (collection, segm_idx).

    Boxes of segments that are not assigned (or not in the segments table) are skipped with a
    counted warning; labels are kept unfiltered (0 and ≥ 240 included).
    """
    boxes = union_boxes(csdd, sets)
    if boxes.empty:
        log.warning("box set(s) %s contain no boxes on assigned segments", list(sets))
        return []
    present = sorted(set(boxes["collection"]) & set(csdd.collections))
    if present:
        index = csdd.segments(present, assigned_only=True).set_index(["collection", "segm_idx"])
    else:
        index = pd.DataFrame(index=pd.MultiIndex.from_tuples([], names=["collection", "segm_idx"]))
    result: list[AnnotatedSegment] = []
    skipped_rows = skipped_segments = 0
    for (collection, segm_idx), group in boxes.groupby(["collection", "segm_idx"], sort=True):
        if (collection, segm_idx) not in index.index:
            skipped_rows += len(group)
            skipped_segments += 1
            continue
        row = index.loc[(collection, segm_idx)]
        row = {**row.to_dict(), "collection": collection, "segm_idx": segm_idx}
        result.append(
            segment_from_row(
                row,
                boxes=group[list(REL_COLS)].to_numpy(np.float32),
                labels=group["train_label"].to_numpy(np.int64),
            )
        )
    if skipped_segments:
        log.warning(
            "box set(s) %s: skipped %d boxes on %d segments that are not assigned (or unknown)",
            list(sets),
            skipped_rows,
            skipped_segments,
        )
    return result


# -- summary ---------------------------------------------------------------------------------


__all__ = ["AnnotatedSegment", "annotated_segments", "segment_from_row", "union_boxes"]
