"""Text-line geometry shared by data, alignment, line detection and the pipeline.

A line network's binary map lies on a :class:`MapGrid` (map cell (column c, row r) is centred at
image pixel ``(offset + stride * c, offset + stride * r)`` of the *scaled segment*). A
:class:`TextLine` is one line hypothesis: the map-frame Hough line
``x * cos(angle) + y * sin(angle) = dist`` (x = column, y = row) plus its image-frame extent and
polyline; :class:`LineHypotheses` holds a view's lines with the map they came from, and
:class:`LineCells` a view's map alone (the detector's "ignore anchors on text lines" rule reads
it through :func:`on_line_window`). How the lines are found is :mod:`cuneidet.lines.hypotheses`.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import ArrayLike

from cuneidet.errors import ConfigError

DEFAULT_PITCH_PX = 128.0  # band height used by band_contains when the pitch is unknown


@dataclass(frozen=True)
class MapGrid:
    """Where the cells of a line map lie in the image."""

    stride: float = 32.0
    offset: float = 113.0  # image pixel of the centre of cell 0

    def __post_init__(self) -> None:
        if not self.stride > 0:
            raise ConfigError(f"MapGrid.stride must be > 0, got {self.stride}")

    def to_image(self, cells: ArrayLike) -> np.ndarray:
        """Map cell coordinates → image pixels."""
        return self.offset + self.stride * np.asarray(cells, dtype=float)

    def to_map(self, pixels: ArrayLike) -> np.ndarray:
        """Image pixels → (fractional) map cell coordinates."""
        return (np.asarray(pixels, dtype=float) - self.offset) / self.stride


@dataclass
class TextLine:
    """One text-line hypothesis (map-frame Hough line plus image-frame geometry)."""

    index: int
    angle: float
    dist: float
    votes: float
    x_min: float
    x_max: float
    polyline: np.ndarray
    slope: float
    intercept: float
    # support from the probability map (predict.line_support: mean p(line) along the polyline
    # times its length in sign heights); 0 where only a binary map was seen
    support: float = 0.0

    def y_at(self, x: ArrayLike) -> np.ndarray:
        """Line-model y (image px) at image x."""
        return np.asarray(self.slope * np.asarray(x, dtype=float) + self.intercept)

    def polyline_y_at(self, x: ArrayLike) -> np.ndarray:
        """Polyline y (image px) at image x, clamped at the ends."""
        xs, ys = self.polyline[:, 0], self.polyline[:, 1]
        return np.asarray(np.interp(np.asarray(x, dtype=float), xs, ys))

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable fields."""
        return {
            "index": int(self.index),
            "angle": float(self.angle),
            "dist": float(self.dist),
            "votes": float(self.votes),
            "x_min": float(self.x_min),
            "x_max": float(self.x_max),
            "polyline": [[float(x), float(y)] for x, y in self.polyline],
            "slope": float(self.slope),
            "intercept": float(self.intercept),
            "support": float(self.support),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TextLine:
        """Inverse of :meth:`to_dict`."""
        fields = {k: data[k] for k in ("angle", "dist", "votes", "x_min", "x_max")}
        fields["support"] = data.get("support", 0.0)
        return cls(
            index=int(data["index"]),
            polyline=np.asarray(data["polyline"], dtype=float).reshape(-1, 2),
            slope=float(data["slope"]),
            intercept=float(data["intercept"]),
            **{k: float(v) for k, v in fields.items()},
        )


@dataclass
class LineHypotheses:
    """The text lines found in one segment's line map, sorted top to bottom."""

    lines: list[TextLine]
    pitch: float
    label_map: np.ndarray
    line_map: np.ndarray
    grid: MapGrid
    image_size: tuple[int, int]

    def __len__(self) -> int:
        return len(self.lines)

    def band_contains(self, index: int, points: ArrayLike) -> np.ndarray:
        """Per (x, y) point: within half a pitch of line ``index``'s polyline (vertically) and
        inside its extent. The reference's band follows the straight line model; on a bent line
        that loses the signs where the text curves away from it."""
        pts = np.asarray(points, dtype=float).reshape(-1, 2)
        line = self.lines[index]
        half = (DEFAULT_PITCH_PX if math.isnan(self.pitch) else self.pitch) / 2.0
        x, y = pts[:, 0], pts[:, 1]
        near = np.abs(y - line.polyline_y_at(x)) <= half
        return near & (x >= line.x_min) & (x <= line.x_max)

    def on_line_mask(self, padding: int = 5) -> np.ndarray:
        """Image mask of the positive cells, each painted as a square of side stride + 2·padding."""
        return on_line_window(self.line_map, self.grid, (0, 0, *self.image_size), padding)

    def keep(self, indices: ArrayLike) -> LineHypotheses:
        """The hypotheses with only lines ``indices`` (renumbered top to bottom, label map too).

        The binary line map, and so :meth:`on_line_mask`, stays whole: cells of dropped lines
        are still text-like for the detector's ignore rule.
        """
        kept = sorted({int(i) for i in np.asarray(indices, dtype=np.int64).reshape(-1)})
        if any(not 0 <= i < len(self.lines) for i in kept):
            raise IndexError(f"line indices {kept} out of range for {len(self.lines)} lines")
        relabel = np.zeros(len(self.lines) + 1, dtype=self.label_map.dtype)
        relabel[np.asarray(kept, dtype=np.int64) + 1] = np.arange(1, len(kept) + 1)
        return dataclasses.replace(
            self,
            lines=[dataclasses.replace(self.lines[i], index=n) for n, i in enumerate(kept)],
            label_map=relabel[self.label_map],
        )

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable summary (the maps go elsewhere, e.g. NPZ)."""
        return {
            "lines": [line.to_dict() for line in self.lines],
            "pitch": None if math.isnan(self.pitch) else float(self.pitch),
            "grid": {"stride": float(self.grid.stride), "offset": float(self.grid.offset)},
            "image_size": [int(v) for v in self.image_size],
        }

    @classmethod
    def from_dict(
        cls, data: dict[str, Any], label_map: np.ndarray, line_map: np.ndarray
    ) -> LineHypotheses:
        """Inverse of :meth:`to_dict`, given the maps."""
        pitch = data.get("pitch")
        height, width = data["image_size"]
        return cls(
            lines=[TextLine.from_dict(d) for d in data["lines"]],
            pitch=float("nan") if pitch is None else float(pitch),
            label_map=np.asarray(label_map, dtype=np.int32),
            line_map=np.asarray(line_map, dtype=bool),
            grid=MapGrid(**data["grid"]),
            image_size=(int(height), int(width)),
        )


@dataclass(frozen=True)
class LineCells:
    """A view's binary text-line map on the line network's grid (scaled segment pixels)."""

    cells: np.ndarray  # bool [rows, cols]
    grid: MapGrid

    def window(self, y0: int, x0: int, height: int, width: int, padding: int = 5) -> np.ndarray:
        """The "on a text line" mask of an image window (see ``on_line_window``)."""
        return on_line_window(self.cells, self.grid, (y0, x0, height, width), padding)


def _cover_ranges(
    grid: MapGrid, cells: int, start: int, pixels: int, padding: int
) -> tuple[np.ndarray, np.ndarray]:
    """Per pixel ``start … start + pixels − 1``, the half-open range of cells whose padded square
    (closed) contains it."""
    half = grid.stride / 2.0 + padding
    p = np.arange(start, start + pixels, dtype=float)
    lo = np.ceil(grid.to_map(p - half) - 1e-9).astype(np.int64)
    hi = np.floor(grid.to_map(p + half) + 1e-9).astype(np.int64) + 1
    lo = np.clip(lo, 0, cells)
    return lo, np.clip(hi, lo, cells)


def on_line_window(
    line_map: np.ndarray, grid: MapGrid, window: tuple[int, int, int, int], padding: int = 5
) -> np.ndarray:
    """The "on a text line" mask of an image window ``(y0, x0, height, width)``: pixels covered
    by a positive cell of ``line_map`` painted as a square of side stride + 2·padding (the
    reference's ignore region for the detector). Cheap for a training tile of a large view."""
    y0, x0, height, width = (int(v) for v in window)
    rows, cols = line_map.shape
    y_lo, y_hi = _cover_ranges(grid, rows, y0, height, padding)
    x_lo, x_hi = _cover_ranges(grid, cols, x0, width, padding)
    per_row = np.cumsum(line_map, axis=0, dtype=np.int32)
    per_row = np.concatenate([np.zeros((1, cols), np.int32), per_row])
    hit_rows = (per_row[y_hi] - per_row[y_lo]) > 0  # (height, cols)
    per_col = np.cumsum(hit_rows, axis=1, dtype=np.int32)
    per_col = np.concatenate([np.zeros((height, 1), np.int32), per_col], axis=1)
    return (per_col[:, x_hi] - per_col[:, x_lo]) > 0


def _row_on_line(angle: ArrayLike, dist: ArrayLike, x: ArrayLike) -> np.ndarray:
    """Map row of the polar line(s) at map column(s) x."""
    angle = np.asarray(angle, dtype=float)
    x = np.asarray(x, dtype=float)
    return (np.asarray(dist, dtype=float) - x * np.cos(angle)) / np.sin(angle)
