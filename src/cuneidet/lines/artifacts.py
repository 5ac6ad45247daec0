"""Per-view line artifacts: JSON (lines, assignment), NPZ (maps) and a PNG overlay."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from cuneidet.data.line_geometry import LineHypotheses
from cuneidet.utils.io import write_bytes, write_json

# BGR colours cycled over lines
_PALETTE = [(0, 200, 255), (255, 120, 0), (60, 220, 60), (230, 60, 230), (0, 90, 255)]


def write_view_artifacts(
    out_dir: str | Path,
    stem: str,
    meta: dict[str, Any],
    hypotheses: LineHypotheses,
    assigned: np.ndarray,
    probability: np.ndarray,
) -> dict[str, Path]:
    """``<stem>.json`` (lines, their ±½-pitch bands and transliteration indices) and
    ``<stem>.npz`` (probability, binary and label maps on the network's grid, and the binary
    "on a text line" mask at image resolution that the detector's ignore rule uses)."""
    out_dir = Path(out_dir)
    record = {
        **meta,
        **hypotheses.to_dict(),
        "bands": [line_band(hypotheses, i) for i in range(len(hypotheses))],
        "tl_lines": [int(v) for v in assigned],
    }
    json_path = write_json(out_dir / f"{stem}.json", record)
    buffer = io.BytesIO()
    np.savez_compressed(
        buffer,
        probability=probability.astype(np.float16),
        line_map=hypotheses.line_map.astype(bool),
        label_map=hypotheses.label_map.astype(np.int32),
        on_line_mask=hypotheses.on_line_mask(),
    )
    npz_path = write_bytes(out_dir / f"{stem}.npz", buffer.getvalue())
    return {"json": json_path, "npz": npz_path}


def line_band(hypotheses: LineHypotheses, index: int) -> list[list[float]]:
    """The band of line ``index``: its model line ±½ pitch over its extent, as a polygon."""
    line = hypotheses.lines[index]
    half = hypotheses.pitch / 2 if np.isfinite(hypotheses.pitch) else 64.0
    xs = [line.x_min, line.x_max, line.x_max, line.x_min]
    offsets = [-half, -half, half, half]
    return [[float(x), float(line.y_at(x) + dy)] for x, dy in zip(xs, offsets, strict=True)]


def draw_overlay(
    image: np.ndarray,
    hypotheses: LineHypotheses,
    assigned: np.ndarray,
    probability: np.ndarray | None = None,
    truth: list[np.ndarray] | None = None,
    max_side: int = 1600,
) -> np.ndarray:
    """An RGB picture: the view, p(line) in red, truth lines in white, detected lines coloured
    with their ±½-pitch band and ``#line → tl`` labels."""
    canvas = cv2.cvtColor(image, cv2.COLOR_GRAY2BGR).astype(np.float32)
    height, width = image.shape
    if probability is not None and probability.size:
        heat = np.zeros((height, width), np.float32)
        grid = hypotheses.grid
        half = grid.stride / 2
        for r, c in zip(*np.nonzero(probability >= 0.5), strict=True):
            x, y = grid.to_image(c), grid.to_image(r)
            y0, y1 = int(max(0, y - half)), int(min(height, y + half))
            x0, x1 = int(max(0, x - half)), int(min(width, x + half))
            heat[y0:y1, x0:x1] = probability[r, c]
        canvas[..., 2] = np.maximum(canvas[..., 2], 255 * heat * 0.8)
    canvas = canvas.astype(np.uint8)
    thickness = max(2, round(max(height, width) / 600))
    for polyline in truth or []:
        cv2.polylines(canvas, [_points(polyline)], False, (255, 255, 255), thickness)
    for line, tl in zip(hypotheses.lines, assigned, strict=True):
        colour = _PALETTE[line.index % len(_PALETTE)]
        cv2.polylines(canvas, [_points(line.polyline)], False, colour, thickness)
        band = np.array(line_band(hypotheses, line.index))
        cv2.polylines(canvas, [_points(band)], True, colour, 1)
        label = f"#{line.index}" + (f" tl {int(tl)}" if tl >= 0 else " tl -")
        origin = (int(line.x_min) + 4, int(line.y_at(line.x_min)[()] - 8))
        cv2.putText(
            canvas, label, origin, cv2.FONT_HERSHEY_SIMPLEX, thickness / 2.5, colour, thickness
        )
    factor = min(1.0, max_side / max(height, width))
    if factor < 1.0:
        canvas = cv2.resize(canvas, None, fx=factor, fy=factor, interpolation=cv2.INTER_AREA)
    return cv2.cvtColor(canvas, cv2.COLOR_BGR2RGB)


def _points(polyline: np.ndarray) -> np.ndarray:
    return np.rint(np.asarray(polyline)).astype(np.int32).reshape(-1, 1, 2)


def write_overlay(path: str | Path, rgb: np.ndarray) -> Path:
    ok, encoded = cv2.imencode(".png", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    if not ok:
        raise OSError(f"could not encode the overlay {path}")
    return write_bytes(path, encoded.tobytes())
