"""Do a view's annotations fit its photograph? Box centres against the text lines found on it.

Some photographs shipped with the CSDD metadata are not the ones the boxes were drawn on (another
layout or framing of the tablet): the boxes then fall on background or on an edge. A line network
sees where the text is; on a well-registered view nearly every annotated sign centre lies on a
detected text line (the median over the 50 line-annotated views is 0.98), on a misregistered one
few do. Views at a wrong `scale` (signs far from 128 px high) are also missed by a line network
trained at the working scale, so a low fraction there points at the scale, not the photo.
"""

from __future__ import annotations

import numpy as np

from cuneidet.data.line_geometry import LineHypotheses, MapGrid

MIN_FIT = 0.5
"""Views with a smaller fraction of box centres on text lines are flagged."""


def fraction_on_lines(hypotheses: LineHypotheses, boxes: np.ndarray, padding: int = 5) -> float:
    """Fraction of the boxes (xyxy, view pixels) whose centre lies on the view's text-line mask
    (:meth:`LineHypotheses.on_line_mask`); centres outside the view count as off. NaN without
    boxes."""
    boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
    if not len(boxes):
        return float("nan")
    mask = hypotheses.on_line_mask(padding)
    cx = np.floor((boxes[:, 0] + boxes[:, 2]) / 2).astype(np.int64)
    cy = np.floor((boxes[:, 1] + boxes[:, 3]) / 2).astype(np.int64)
    inside = (cx >= 0) & (cy >= 0) & (cx < mask.shape[1]) & (cy < mask.shape[0])
    on = np.zeros(len(boxes), bool)
    on[inside] = mask[cy[inside], cx[inside]]
    return float(on.mean())


def shift_scores(
    probability: np.ndarray, grid: MapGrid, centres: np.ndarray, shifts: np.ndarray
) -> np.ndarray:
    """Per shift ``(dx, dy)`` (view pixels), the mean p(line) at the ``centres`` (``[N, 2]``,
    view pixels) moved by it; centres falling outside the map count as 0. Used to find where a
    misregistered view's boxes belong (``scripts/register_segment.py``)."""
    centres = np.asarray(centres, np.float64).reshape(-1, 2)
    shifts = np.asarray(shifts, np.float64).reshape(-1, 2)
    if not len(centres):
        return np.full(len(shifts), np.nan)
    moved = centres[None, :, :] + shifts[:, None, :]
    cols = np.round(grid.to_map(moved[..., 0])).astype(np.int64)
    rows = np.round(grid.to_map(moved[..., 1])).astype(np.int64)
    height, width = probability.shape
    inside = (cols >= 0) & (rows >= 0) & (cols < width) & (rows < height)
    values = np.zeros(cols.shape)
    values[inside] = probability[rows[inside], cols[inside]]
    return values.mean(axis=1)
