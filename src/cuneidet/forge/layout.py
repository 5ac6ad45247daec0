"""Where each sign of a forged tablet goes, in the composite photo's pixel frame.

Three layouts, chosen per view (``layout="auto"`` picks the first that applies):

- ``boxes``: the view has CSDD sign boxes → every box is drawn with its label. Boxes carry no
  line/position, so lines are recovered from the annotated polylines when the view has them,
  else by clustering box centres vertically; ``pos_idx`` is the order along the line.
- ``lines``: the view has annotated line polylines → transliteration line *i* is laid along
  polyline *i* (lines without a polyline fall back to the transliteration layout).
- ``transliteration``: lines laid out from the transliteration alone: a sign height that the
  segment's ``scale`` maps to ~128 px, each sign's width from the per-class priors
  (``meta/unicode_sign_stats.csv``), random gaps, a slight slope and bow per line and ragged
  line ends; lines that do not fit are compressed.

Broken signs (status 0) keep their slot, so a broken stretch of a line stays where it was.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from cuneidet.errors import ConfigError

LAYOUTS = ("auto", "boxes", "lines", "transliteration")
TARGET_SIGN_HEIGHT = 128.0  # px in the scaled segment (the CSDD `scale` brings signs to this)
DEFAULT_PRIOR = (0.8, 0.9)  # (width, height) relative to 128 px for labels without a prior


@dataclass
class ForgedSign:
    """One rendered sign: its box in the composite photo frame and what it is."""

    x1: float
    y1: float
    x2: float
    y2: float
    mzl: int
    train_label: int
    status: int = 1
    line_idx: int = -1
    pos_idx: int = -1

    @property
    def box(self) -> tuple[float, float, float, float]:
        return (self.x1, self.y1, self.x2, self.y2)


@dataclass
class ViewSpec:
    """The metadata of one segment of a tablet, as the forge needs it."""

    collection: str
    segm_idx: int
    view_desc: str
    bbox: tuple[int, int, int, int]
    scale: float
    boxes: np.ndarray | None = None  # (n, 4) photo frame
    box_labels: np.ndarray | None = None  # (n, 2): mzl, train_label
    signs: np.ndarray | None = None  # (n, 5): line_idx, pos_idx, mzl, train_label, status
    polylines: list[np.ndarray] = field(default_factory=list)  # photo frame, one per line

    @property
    def has_text(self) -> bool:
        return (self.boxes is not None and len(self.boxes) > 0) or (
            self.signs is not None and len(self.signs) > 0
        )


@dataclass
class TabletSpec:
    tablet: str
    width: int
    height: int
    views: list[ViewSpec]


def sign_height(view: ViewSpec, rng: np.random.Generator) -> float:
    """Sign height in photo pixels: ``128 / scale``, jittered; a typical value without scale."""
    scale = view.scale if np.isfinite(view.scale) and view.scale > 0 else None
    if scale is None:
        x0, y0, x1, y1 = view.bbox
        return max(12.0, min(x1 - x0, y1 - y0) / 12.0)
    return TARGET_SIGN_HEIGHT / scale * rng.uniform(0.92, 1.08)


def choose_layout(view: ViewSpec, requested: str) -> str:
    if requested not in LAYOUTS:
        raise ConfigError(f"Unknown forge layout {requested!r}; valid: {', '.join(LAYOUTS)}")
    has_boxes = view.boxes is not None and len(view.boxes) > 0
    has_signs = view.signs is not None and len(view.signs) > 0
    if requested == "boxes" or (requested == "auto" and has_boxes):
        return "boxes" if has_boxes else ("transliteration" if has_signs else "blank")
    if not has_signs:
        return "blank"
    if requested in ("auto", "lines") and view.polylines:
        return "lines"
    return "transliteration"


def layout_view(
    view: ViewSpec,
    rng: np.random.Generator,
    priors: Mapping[int, tuple[float, float]],
    requested: str = "auto",
) -> tuple[str, list[ForgedSign]]:
    """Lay out one view; returns the layout used and its signs."""
    kind = choose_layout(view, requested)
    if kind == "boxes":
        return kind, layout_from_boxes(view)
    if kind == "blank":
        return kind, []
    height = sign_height(view, rng)
    if kind == "lines":
        return kind, layout_along_polylines(view, rng, priors, height)
    return kind, layout_from_transliteration(view, rng, priors, height)


# -- boxes ------------------------------------------------------------------------------------


def layout_from_boxes(view: ViewSpec) -> list[ForgedSign]:
    assert view.boxes is not None and view.box_labels is not None
    boxes = np.asarray(view.boxes, dtype=float)
    line_of = _lines_of_boxes(boxes, view.polylines)
    signs: list[ForgedSign] = []
    for line in np.unique(line_of):
        members = np.flatnonzero(line_of == line)
        members = members[np.argsort(boxes[members, 0] + boxes[members, 2], kind="stable")]
        for pos, i in enumerate(members):
            mzl, label = (int(v) for v in view.box_labels[i])
            signs.append(ForgedSign(*boxes[i], mzl, label, 1, int(line), pos))
    return signs


def _lines_of_boxes(boxes: np.ndarray, polylines: Sequence[np.ndarray]) -> np.ndarray:
    """Line index per box: nearest polyline when given, else vertical clustering."""
    cx = (boxes[:, 0] + boxes[:, 2]) / 2
    cy = (boxes[:, 1] + boxes[:, 3]) / 2
    if polylines:
        distances = np.stack([np.abs(cy - polyline_y(p, cx)) for p in polylines], axis=1)
        return distances.argmin(axis=1)
    order = np.argsort(cy, kind="stable")
    heights = boxes[:, 3] - boxes[:, 1]
    threshold = 0.5 * float(np.median(heights)) if len(heights) else 0.0
    line_of = np.zeros(len(boxes), dtype=int)
    line, members = 0, [order[0]] if len(order) else []
    for i in order[1:]:
        if cy[i] - float(np.mean(cy[members])) > threshold:
            line, members = line + 1, []
        members.append(i)
        line_of[i] = line
    return line_of


def polyline_y(points: np.ndarray, x: np.ndarray) -> np.ndarray:
    """y of a polyline at ``x`` (linear interpolation, constant beyond its ends)."""
    points = points[np.argsort(points[:, 0], kind="stable")]
    if len(points) == 1:
        return np.full_like(np.asarray(x, dtype=float), points[0, 1])
    return np.interp(x, points[:, 0], points[:, 1])


# -- from the transliteration -----------------------------------------------------------------


def _lines(signs: np.ndarray) -> list[np.ndarray]:
    """Rows of ``signs`` grouped by line_idx (ascending), each sorted by pos_idx."""
    lines = []
    for line in np.unique(signs[:, 0]):
        rows = signs[signs[:, 0] == line]
        lines.append(rows[np.argsort(rows[:, 1], kind="stable")])
    return lines


def _sign_sizes(
    rows: np.ndarray,
    priors: Mapping[int, tuple[float, float]],
    height: float,
    rng: np.random.Generator,
) -> tuple[np.ndarray, np.ndarray]:
    rel = np.array([priors.get(int(label), DEFAULT_PRIOR) for label in rows[:, 3]], dtype=float)
    jitter = rng.uniform(0.88, 1.12, size=(len(rows), 2))
    unit = height / DEFAULT_PRIOR[1]
    return rel[:, 0] * jitter[:, 0] * unit, rel[:, 1] * jitter[:, 1] * unit


def _place_line(
    rows: np.ndarray,
    x_start: float,
    x_end: float,
    y_of_x: Callable[[np.ndarray], np.ndarray],
    priors: Mapping[int, tuple[float, float]],
    height: float,
    rng: np.random.Generator,
) -> list[ForgedSign]:
    widths, heights = _sign_sizes(rows, priors, height, rng)
    gaps = rng.uniform(0.04, 0.3, size=len(rows)) * height
    gaps[0] = 0.0
    length = float(widths.sum() + gaps.sum())
    available = max(x_end - x_start, 1.0)
    squeeze = min(1.0, available / length) if length > 0 else 1.0
    widths, gaps = widths * squeeze, gaps * squeeze
    lefts = x_start + np.cumsum(gaps) + np.concatenate([[0.0], np.cumsum(widths)[:-1]])
    centres_x = lefts + widths / 2
    centres_y = y_of_x(centres_x) + rng.normal(0.0, 0.03 * height, size=len(rows))
    signs = []
    for i, row in enumerate(rows):
        line, pos, mzl, label, status = (int(v) for v in row)
        half_h = heights[i] / 2
        signs.append(
            ForgedSign(
                float(lefts[i]),
                float(centres_y[i] - half_h),
                float(lefts[i] + widths[i]),
                float(centres_y[i] + half_h),
                mzl,
                label,
                status,
                line,
                pos,
            )
        )
    return signs


def layout_from_transliteration(
    view: ViewSpec,
    rng: np.random.Generator,
    priors: Mapping[int, tuple[float, float]],
    height: float,
) -> list[ForgedSign]:
    assert view.signs is not None
    x0, y0, x1, y1 = (float(v) for v in view.bbox)
    lines = _lines(view.signs)
    n_lines = int(view.signs[:, 0].max()) + 1 if len(view.signs) else 0
    margin_x = rng.uniform(0.04, 0.09) * (x1 - x0)
    margin_y = rng.uniform(0.03, 0.07) * (y1 - y0)
    available = (y1 - y0) - 2 * margin_y
    pitch = min(1.55 * height, available / max(n_lines, 1))
    if pitch < 1.12 * height:  # more lines than fit at this sign height: shrink the signs
        height = pitch / 1.12
    top = y0 + margin_y + rng.uniform(0.0, max(0.0, available - pitch * n_lines)) * 0.3
    slope = rng.normal(0.0, 0.012)
    signs: list[ForgedSign] = []
    for rows in lines:
        line = int(rows[0, 0])
        base = top + (line + 0.5) * pitch
        bow = rng.normal(0.0, 0.08) * height
        start = x0 + margin_x + abs(rng.normal(0.0, 0.02)) * (x1 - x0)
        end = x1 - margin_x
        mid = (start + end) / 2
        half = max((end - start) / 2, 1.0)

        def y_of_x(x, base=base, bow=bow, mid=mid, half=half, start=start):
            return base + slope * (x - start) + bow * ((x - mid) / half) ** 2

        signs += _place_line(rows, start, end, y_of_x, priors, height, rng)
    return signs


def layout_along_polylines(
    view: ViewSpec,
    rng: np.random.Generator,
    priors: Mapping[int, tuple[float, float]],
    height: float,
) -> list[ForgedSign]:
    assert view.signs is not None
    polylines = sorted(view.polylines, key=lambda p: float(np.median(p[:, 1])))
    lines = _lines(view.signs)
    if len(polylines) >= 2:  # keep the sign height below the annotated line pitch
        pitch = float(np.median(np.diff([np.median(p[:, 1]) for p in polylines])))
        height = min(height, max(pitch / 1.12, 4.0))
    signs: list[ForgedSign] = []
    leftover = []
    for index, rows in enumerate(lines):
        if index >= len(polylines):
            leftover.append(rows)
            continue
        points = polylines[index]
        start, end = float(points[:, 0].min()), float(points[:, 0].max())

        def y_of_x(x, points=points):
            return polyline_y(points, x)

        signs += _place_line(rows, start, end, y_of_x, priors, height, rng)
    if leftover:  # more transliteration lines than polylines: continue below the last line
        last = max((s.y2 for s in signs), default=float(view.bbox[1]))
        x0, _, x1, y1 = view.bbox
        pitch = 1.3 * height
        for k, rows in enumerate(leftover):
            base = min(last + (k + 0.7) * pitch, y1 - height / 2)

            def flat(x, base=base):
                return np.full_like(np.asarray(x, dtype=float), base)

            signs += _place_line(
                rows, x0 + 0.05 * (x1 - x0), x1 - 0.05 * (x1 - x0), flat, priors, height, rng
            )
    return signs


def clip_to_view(signs: list[ForgedSign], bbox: Sequence[float]) -> list[ForgedSign]:
    """Clip sign boxes to the segment; drop signs left with less than 2 px either way."""
    x0, y0, x1, y1 = bbox
    kept = []
    for sign in signs:
        sign.x1, sign.x2 = max(sign.x1, x0), min(sign.x2, x1)
        sign.y1, sign.y2 = max(sign.y1, y0), min(sign.y2, y1)
        if sign.x2 - sign.x1 >= 2 and sign.y2 - sign.y1 >= 2:
            kept.append(sign)
    return kept


__all__ = [
    "LAYOUTS",
    "ForgedSign",
    "TabletSpec",
    "ViewSpec",
    "choose_layout",
    "clip_to_view",
    "layout_along_polylines",
    "layout_from_boxes",
    "layout_from_transliteration",
    "layout_view",
    "polyline_y",
    "sign_height",
]
