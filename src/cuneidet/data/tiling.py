"""The paper's training tiles: 600-px windows on the scaled segment (method-detector.md §4.4)."""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Tile:
    """A window ``[x0, x0+width) × [y0, y0+height)`` of segment ``segment`` (scaled pixels)."""

    segment: int
    x0: int
    y0: int
    width: int
    height: int

    def contains_centres(self, boxes: np.ndarray) -> np.ndarray:
        """Boolean mask of the boxes whose centre lies inside the tile."""
        cx = (boxes[:, 0] + boxes[:, 2]) / 2
        cy = (boxes[:, 1] + boxes[:, 3]) / 2
        return (
            (cx >= self.x0)
            & (cx < self.x0 + self.width)
            & (cy >= self.y0)
            & (cy < self.y0 + self.height)
        )


def paper_tile_origins(
    width: int,
    height: int,
    tile: int = 600,
    offset: int = 100,
    step_x: int = 300,
    step_y: int = 400,
) -> list[tuple[int, int]]:
    """Top-left corners of the reference tiling.

    x runs from ``offset`` in steps of ``step_x`` while ``x < W - offset - step_x``; y from
    ``offset`` in steps of ``step_y`` while ``y < H - offset - (tile - step_y)``. Segments narrower
    than about 500 px or lower than about 400 px therefore have no tile at all.
    """
    xs = list(range(offset, max(width - offset - step_x, 0), step_x))
    ys = list(range(offset, max(height - offset - (tile - step_y), 0), step_y))
    return [(x, y) for y in ys for x in xs]


def tile_segments(
    sizes: list[tuple[int, int]],
    tile: int = 600,
    offset: int = 100,
    step_x: int = 300,
    step_y: int = 400,
    small_segments: str = "whole",
) -> list[Tile]:
    """Tiles of all segments given their scaled ``(width, height)``; tiles are clipped to the image.

    ``small_segments`` decides what happens to a segment too small for the reference tiling:
    ``"whole"`` uses the whole segment as one tile (it is padded to the tile size later),
    ``"skip"`` drops it as the reference code does. Either way the count is logged.
    """
    if small_segments not in ("whole", "skip"):
        raise ValueError(f"small_segments must be 'whole' or 'skip', got {small_segments!r}")
    tiles: list[Tile] = []
    small = 0
    for index, (width, height) in enumerate(sizes):
        origins = paper_tile_origins(width, height, tile, offset, step_x, step_y)
        if not origins:
            small += 1
            if small_segments == "whole":
                tiles.append(Tile(index, 0, 0, min(width, tile), min(height, tile)))
            continue
        for x0, y0 in origins:
            tiles.append(Tile(index, x0, y0, min(tile, width - x0), min(tile, height - y0)))
    if small:
        action = "used whole as one tile" if small_segments == "whole" else "skipped"
        log.warning(
            "%d of %d segments are smaller than the reference tiling allows (%s)",
            small,
            len(sizes),
            action,
        )
    return tiles
