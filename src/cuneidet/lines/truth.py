"""Ground-truth text lines: annotated polylines in the scaled segment frame, distance maps.

The CSDD's ``line_annotations_{train,test}.csv`` hold, per view, ordered points ``(x, y)`` of
each line in *unscaled* segment pixels. Everything here works in the scaled segment frame (signs
about 128 px high), like the line network and the detector.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from itertools import pairwise

import cv2
import numpy as np
import pandas as pd

from cuneidet.data.csdd import CSDD
from cuneidet.data.views import AnnotatedSegment, annotated_segments, segment_from_row
from cuneidet.errors import DataFormatError

log = logging.getLogger(__name__)


@dataclass
class LineTruth:
    """The annotated lines of one view: polylines in scaled pixels, sorted top to bottom."""

    polylines: list[np.ndarray]  # each float (k, 2) (x, y), x increasing
    line_idx: list[int] = field(default_factory=list)  # the annotation's own line numbers

    def __len__(self) -> int:
        return len(self.polylines)

    @property
    def pitch(self) -> float:
        """Median distance between consecutive lines (nan with fewer than two lines)."""
        return lines_pitch(self.polylines)


@dataclass
class LineView:
    """One view with annotated lines: where to find its photo and its ground truth."""

    segment: AnnotatedSegment
    truth: LineTruth

    @property
    def key(self) -> str:
        return self.segment.key


def sort_polyline(points: np.ndarray) -> np.ndarray:
    """Points ordered by x (duplicated x values averaged), as float (k, 2)."""
    points = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    order = np.argsort(points[:, 0], kind="stable")
    points = points[order]
    xs, inverse = np.unique(points[:, 0], return_inverse=True)
    ys = np.bincount(inverse, weights=points[:, 1]) / np.bincount(inverse)
    return np.stack([xs, ys], axis=1)


def polyline_y(polyline: np.ndarray, x: np.ndarray) -> np.ndarray:
    """y of ``polyline`` at ``x`` (linear interpolation, flat beyond the ends)."""
    return np.interp(np.asarray(x, dtype=np.float64), polyline[:, 0], polyline[:, 1])


def mid_height(polyline: np.ndarray) -> float:
    """Mean y of the polyline over its extent (for top-to-bottom ordering)."""
    xs = np.linspace(polyline[0, 0], polyline[-1, 0], 32)
    return float(polyline_y(polyline, xs).mean())


def lines_pitch(polylines: Sequence[np.ndarray]) -> float:
    """Median vertical gap between consecutive lines, measured where both exist."""
    if len(polylines) < 2:
        return float("nan")
    ordered = sorted(polylines, key=mid_height)
    gaps = []
    for upper, lower in pairwise(ordered):
        lo = max(upper[0, 0], lower[0, 0])
        hi = min(upper[-1, 0], lower[-1, 0])
        xs = np.linspace(lo, hi, 16) if hi > lo else np.array([(lo + hi) / 2])
        gaps.append(float(np.mean(polyline_y(lower, xs) - polyline_y(upper, xs))))
    return float(np.median(gaps))


def join_pieces(pieces: list[np.ndarray], max_overlap: float = 0.1) -> list[list[int]]:
    """Group annotated pieces that form one physical line: horizontally disjoint (overlap at
    most ``max_overlap`` of the shorter piece) and meeting within half a line pitch in height
    (the reference evaluation joins such pieces too). Returns groups of piece indices."""
    pitch = lines_pitch(pieces)
    pitch = pitch if np.isfinite(pitch) else 128.0
    parent = list(range(len(pieces)))

    def root(i: int) -> int:
        while parent[i] != i:
            i = parent[i]
        return i

    order = sorted(range(len(pieces)), key=lambda i: mid_height(pieces[i]))
    for a_pos, a in enumerate(order):
        for b in order[a_pos + 1 :]:
            left, right = sorted((pieces[a], pieces[b]), key=lambda p: p[0, 0])
            overlap = left[-1, 0] - right[0, 0]
            shorter = min(left[-1, 0] - left[0, 0], right[-1, 0] - right[0, 0])
            if overlap > max_overlap * shorter:
                continue
            if abs(left[-1, 1] - right[0, 1]) < pitch / 2 and root(a) != root(b):
                parent[root(b)] = root(a)
    groups: dict[int, list[int]] = {}
    for i in range(len(pieces)):
        groups.setdefault(root(i), []).append(i)
    return list(groups.values())


def truth_from_points(frame: pd.DataFrame, scale: float) -> LineTruth:
    """Physical lines of one view from its annotation rows (columns line_idx, x, y).

    Pieces of one line annotated separately are joined (:func:`join_pieces`); a joined line
    keeps the smallest line_idx of its pieces.
    """
    items = []
    for line_idx, rows in frame.groupby("line_idx", sort=True):
        points = rows[["x", "y"]].to_numpy(np.float64) * float(scale)
        if len(points) == 1:  # a single point: a degenerate, zero-length line
            points = np.vstack([points, points + np.array([1.0, 0.0])])
        items.append((int(line_idx), sort_polyline(points)))
    groups = join_pieces([p for _, p in items])
    items = [
        (min(items[i][0] for i in group), sort_polyline(np.vstack([items[i][1] for i in group])))
        for group in groups
    ]
    items.sort(key=lambda item: mid_height(item[1]))
    return LineTruth([p for _, p in items], [i for i, _ in items])


def line_views(csdd: CSDD, split: str) -> list[LineView]:
    """Every view of ``line_annotations_<split>.csv`` with its polylines in scaled pixels.

    Views whose segment is unassigned (no scale) are skipped with a counted warning.
    """
    points = csdd.lines(split)
    segments = csdd.segments(sorted(points["collection"].unique()), assigned_only=False)
    segments = segments.set_index(["collection", "segm_idx", "tablet_CDLI"])
    views, unassigned = [], 0
    for (collection, segm_idx, tablet), rows in points.groupby(
        ["collection", "segm_idx", "tablet_CDLI"], sort=True
    ):
        row = segments.loc[(collection, segm_idx, tablet)]
        if isinstance(row, pd.DataFrame):
            row = row.iloc[0]
        if not np.isfinite(float(row["scale"])):
            unassigned += 1
            continue
        record = row.to_dict() | {
            "collection": collection,
            "segm_idx": segm_idx,
            "tablet_CDLI": tablet,
        }
        segment = segment_from_row(record)
        views.append(LineView(segment, truth_from_points(rows, segment.scale)))
    if unassigned:
        log.warning("line_annotations_%s: skipped %d unassigned views", split, unassigned)
    if not views:
        raise DataFormatError(f"line_annotations_{split}.csv has no view with a scaled segment")
    return views


def box_line_views(
    csdd: CSDD, box_sets: Sequence[str] = ("train_full",), exclude_tablets: Sequence[str] = ()
) -> list[LineView]:
    """Views with sign boxes in ``box_sets`` but no annotated lines (in any line split), each
    with the rows of its signs as its lines (:func:`truth_from_boxes`).

    They widen line evaluation beyond the 50 line-annotated views, e.g. to choose a line network
    on all of train_full's held-out views. Views of ``exclude_tablets`` (those a line network
    was trained on) are left out.
    """
    annotated = {v.key for split in csdd.line_splits for v in line_views(csdd, split)}
    excluded = set(exclude_tablets)
    views = [
        LineView(segment, truth_from_boxes(segment.scaled_boxes()))
        for segment in annotated_segments(csdd, list(box_sets))
        if segment.key not in annotated and segment.tablet not in excluded and len(segment.boxes)
    ]
    if not views:
        raise DataFormatError(
            f"box sets {list(box_sets)} have no view without line annotations outside "
            f"{sorted(excluded)}"
        )
    return views


def distance_to_lines(polylines: Sequence[np.ndarray], size: tuple[int, int]) -> np.ndarray:
    """Euclidean distance (px, float32 ``[H, W]``) from every pixel to the nearest line.

    ``size`` is ``(height, width)``. Without lines every distance is +inf.
    """
    height, width = size
    if not polylines:
        return np.full((height, width), np.inf, np.float32)
    canvas = np.full((height, width), 255, np.uint8)
    for polyline in polylines:
        pts = np.rint(polyline).astype(np.int32).reshape(-1, 1, 2)
        cv2.polylines(canvas, [pts], isClosed=False, color=0, thickness=1, lineType=cv2.LINE_8)
    if canvas.min() > 0:  # every line lies outside the view
        return np.full((height, width), np.inf, np.float32)
    return cv2.distanceTransform(canvas, cv2.DIST_L2, cv2.DIST_MASK_PRECISE)


def _sign_polyline(signs: np.ndarray) -> np.ndarray:
    """A line through the centres of its signs (xyxy), from the first sign's left edge to the
    last one's right edge."""
    signs = signs[np.argsort(signs[:, 0] + signs[:, 2])]
    cx, cy = (signs[:, 0] + signs[:, 2]) / 2, (signs[:, 1] + signs[:, 3]) / 2
    xs = np.concatenate([[signs[0, 0]], cx, [signs[-1, 2]]])
    ys = np.concatenate([[cy[0]], cy, [cy[-1]]])
    return sort_polyline(np.stack([xs, ys], axis=1))


def truth_from_signs(boxes: np.ndarray, line_indices: np.ndarray) -> LineTruth:
    """Lines through the centres of sign boxes (scaled xyxy) grouped by their line index.

    Used for forged views, whose hidden truth says which transliteration line each rendered
    sign belongs to; the polyline runs from the first sign's left edge to the last's right edge.
    """
    boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
    items = [
        (int(line_idx), _sign_polyline(boxes[np.asarray(line_indices) == line_idx]))
        for line_idx in np.unique(line_indices)
    ]
    items.sort(key=lambda item: mid_height(item[1]))
    return LineTruth([p for _, p in items], [i for i, _ in items])


def _right_neighbours(boxes: np.ndarray, max_rise: float, max_gap: float) -> np.ndarray:
    """Per box, the next box of its row to the right (or -1): the nearest box whose centre is
    to the right, whose left edge is at most ``max_gap`` median sign heights past this box's
    right edge, and whose centre lies within ``max_rise`` of their mean height up or down."""
    cx, cy = (boxes[:, 0] + boxes[:, 2]) / 2, (boxes[:, 1] + boxes[:, 3]) / 2
    heights = boxes[:, 3] - boxes[:, 1]
    dx = cx[None, :] - cx[:, None]
    rise = np.abs(cy[None, :] - cy[:, None])
    gap = boxes[None, :, 0] - boxes[:, None, 2]
    allowed = (
        (dx > 0)
        & (gap <= max_gap * float(np.median(heights)))
        & (rise <= max_rise * (heights[None, :] + heights[:, None]) / 2)
    )
    cost = np.where(allowed, dx + 3.0 * rise, np.inf)  # a step up or down costs 3× a step right
    nearest = cost.argmin(axis=1)
    return np.where(np.isfinite(cost[np.arange(len(boxes)), nearest]), nearest, -1)


def truth_from_boxes(boxes: np.ndarray, max_rise: float = 0.4, max_gap: float = 2.5) -> LineTruth:
    """Text lines of a view known only by its sign boxes (scaled xyxy): the rows of its signs.

    Each box is chained to the next box of its row to the right (:func:`_right_neighbours`);
    the chains are pieces of lines, and pieces cut by damage are joined as annotated pieces are
    (:func:`join_pieces`). Each line runs through its signs' centres, from the first sign's left
    edge to the last one's right edge. Lines without an annotated sign are not found, so these
    lines are a truth for recall and assignment, and a lower bound of precision.
    """
    boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
    if not len(boxes):
        return LineTruth([])
    parent = np.arange(len(boxes))

    def root(i: int) -> int:
        while parent[i] != i:
            i = parent[i]
        return int(i)

    for i, j in enumerate(_right_neighbours(boxes, max_rise, max_gap)):
        if j >= 0 and root(i) != root(j):
            parent[root(j)] = root(i)
    owners = np.array([root(i) for i in range(len(boxes))])
    pieces = [_sign_polyline(boxes[owners == owner]) for owner in np.unique(owners)]
    lines = [sort_polyline(np.vstack([pieces[i] for i in group])) for group in join_pieces(pieces)]
    return LineTruth(sorted(lines, key=mid_height))
