"""Collect what the forge needs per tablet from the CSDD tables (built once, then looked up).

A tablet's composite photo holds all its segments (views). The same physical view can appear in
several collection tables (e.g. ``saa05`` and ``train``) with the same or an overlapping bbox
(IoU > 0.5); it is drawn once, preferring the row that has sign boxes, then one with a
transliteration, then an assigned one.
The canvas spans every segment plus a margin, in the pixel frame of the segments' bboxes.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence

import numpy as np
import pandas as pd

from cuneidet.data.csdd import CSDD, GLOBAL_COLS
from cuneidet.data.views import union_boxes
from cuneidet.errors import ConfigError
from cuneidet.forge.layout import TabletSpec, ViewSpec

log = logging.getLogger(__name__)

SIGN_COLUMNS = ["line_idx", "pos_idx", "mzl_label", "train_label", "status"]


class ForgePlanner:
    """Index the CSDD by tablet; :meth:`spec` returns a picklable :class:`TabletSpec`."""

    def __init__(
        self, csdd: CSDD, box_sets: Sequence[str] | None = None, margin: float = 0.04
    ) -> None:
        self.csdd = csdd
        self.margin = margin
        segments = csdd.segments(assigned_only=False)
        box_sets = list(csdd.box_sets if box_sets is None else box_sets)
        boxes = union_boxes(csdd, box_sets) if box_sets else pd.DataFrame()
        translit = csdd.transliterations() if csdd.transliterated_collections else pd.DataFrame()
        self._boxes = _group(boxes)
        self._signs = _group(translit)
        self._polylines = _group(self._all_lines(csdd))
        segments = segments.assign(
            _boxes=[
                (c, s) in self._boxes
                for c, s in zip(segments.collection, segments.segm_idx, strict=True)
            ],
            _signs=[
                (c, s) in self._signs
                for c, s in zip(segments.collection, segments.segm_idx, strict=True)
            ],
        )
        segments = segments.sort_values(
            ["_boxes", "_signs", "assigned"], ascending=False, kind="stable"
        )
        self._segments = {
            t: _one_per_face(g) for t, g in segments.groupby("tablet_CDLI", sort=True)
        }

    @staticmethod
    def _all_lines(csdd: CSDD) -> pd.DataFrame:
        frames = [csdd.lines(split) for split in csdd.line_splits]
        return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()

    @property
    def tablets(self) -> list[str]:
        return list(self._segments)

    def tablets_of(
        self,
        collections: Iterable[str] = (),
        box_sets: Iterable[str] = (),
        tablets: Iterable[str] = (),
    ) -> list[str]:
        """Tablets with a segment in ``collections``, a box in ``box_sets`` or named, sorted."""
        chosen = set(tablets)
        unknown = sorted(t for t in chosen if t not in self._segments)
        if unknown:
            raise ConfigError(
                f"Unknown tablets {unknown[:5]} (forge.tablets): they have no segment in the CSDD "
                "segment tables"
            )
        collections = list(collections)
        if collections:
            frame = self.csdd.segments(collections, assigned_only=False)
            chosen.update(frame["tablet_CDLI"])
        for set_name in box_sets:
            chosen.update(self.csdd.boxes(set_name)["tablet_CDLI"])
        return sorted(chosen)

    def has(self, tablet: str) -> bool:
        return tablet in self._segments

    def spec(self, tablet: str) -> TabletSpec:
        rows = self._segments.get(tablet)
        if rows is None:
            raise ConfigError(
                f"Tablet {tablet!r} has no segment in the CSDD; the forge cannot draw it"
            )
        views = [self._view(row) for row in rows.itertuples(index=False)]
        width = int(rows["x1"].max())
        height = int(rows["y1"].max())
        pad = round(self.margin * max(width, height)) + 16
        return TabletSpec(tablet, width + pad, height + pad, views)

    def _view(self, row: object) -> ViewSpec:
        key = (row.collection, int(row.segm_idx))
        view = ViewSpec(
            collection=str(row.collection),
            segm_idx=int(row.segm_idx),
            view_desc=str(row.view_desc),
            bbox=(int(row.x0), int(row.y0), int(row.x1), int(row.y1)),
            scale=float(row.scale),
        )
        boxes = self._boxes.get(key)
        if boxes is not None:
            view.boxes = boxes[list(GLOBAL_COLS)].to_numpy(float)
            view.box_labels = boxes[["mzl_label", "train_label"]].to_numpy(np.int64)
        signs = self._signs.get(key)
        if signs is not None:
            view.signs = signs[SIGN_COLUMNS].to_numpy(np.int64)
        lines = self._polylines.get(key)
        if lines is not None:
            offset = np.array([row.x0, row.y0], dtype=float)
            view.polylines = [
                g[["x", "y"]].to_numpy(float) + offset for _, g in lines.groupby("line_idx")
            ]
        return view


def _one_per_face(rows: pd.DataFrame, max_iou: float = 0.5) -> pd.DataFrame:
    """Drop segments that overlap an earlier (preferred) one by more than ``max_iou``.

    Some faces are listed in two collections with slightly different bboxes (e.g. ``train/38``
    and ``saa05/2039`` of P336655); drawing both would paint one layout over the other.
    """
    boxes = rows[["x0", "y0", "x1", "y1"]].to_numpy(float)
    kept: list[int] = []
    for i, box in enumerate(boxes):
        if all(_iou(box, boxes[j]) <= max_iou for j in kept):
            kept.append(i)
    return rows.iloc[kept]


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    width = min(a[2], b[2]) - max(a[0], b[0])
    height = min(a[3], b[3]) - max(a[1], b[1])
    if width <= 0 or height <= 0:
        return 0.0
    inter = width * height
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


def _group(frame: pd.DataFrame) -> dict[tuple[str, int], pd.DataFrame]:
    if frame.empty:
        return {}
    return {
        (str(c), int(s)): g for (c, s), g in frame.groupby(["collection", "segm_idx"], sort=False)
    }


__all__ = ["ForgePlanner"]
