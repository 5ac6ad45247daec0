"""Signs of a transliteration line laid out along a detected text line (the null hypothesis).

Dencker et al. 2020, iteration 0 and the position prior of every later alignment: the visible
signs of a transliteration line are spread over the detected line's extent in proportion to
their prior widths, ``x_k = x_min + xoff_k · (x_max − x_min) / L_tl`` where ``xoff_k`` is the
centre of sign k in the concatenated prior widths and ``L_tl`` their sum. ``TextLine.x_min`` and
``x_max`` already hold the line region's extent widened by one map stride (the reference's
±32 px). y follows the line's polyline (the reference uses its straight line model; on a curved
line the polyline keeps the boxes on the text).

Boxes are *not* stretched: a sign's box is its prior width wide and :data:`SIGN_HEIGHT` high.
All coordinates are pixels of the scaled segment.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from cuneidet.align.transliteration import SIGN_HEIGHT, TransliterationLine
from cuneidet.data.line_geometry import TextLine


def null_hypothesis(line: TextLine, text: TransliterationLine) -> np.ndarray:
    """Expected sign centres ``(N, 2)`` (x, y) of ``text`` laid along ``line``."""
    return null_hypotheses(line, [text])[0]


def null_hypotheses(line: TextLine, texts: Sequence[TransliterationLine]) -> list[np.ndarray]:
    """:func:`null_hypothesis` of several transliteration lines on one line, with a single
    polyline lookup (line-level alignment lays every transliteration line on every line)."""
    if not texts:
        return []
    extent = float(line.x_max - line.x_min)
    xs = [line.x_min + text.centres * (extent / max(float(text.length), 1.0)) for text in texts]
    flat = np.concatenate(xs)
    ys = np.split(line.polyline_y_at(flat), np.cumsum([len(x) for x in xs])[:-1])
    return [np.stack([x, y], axis=1).reshape(-1, 2) for x, y in zip(xs, ys, strict=True)]


def sign_boxes(centres: np.ndarray, widths: np.ndarray) -> np.ndarray:
    """Boxes ``(N, 4)`` xyxy centred on ``centres``, ``widths`` wide and SIGN_HEIGHT high."""
    centres = np.asarray(centres, np.float64).reshape(-1, 2)
    half_w = np.asarray(widths, np.float64).reshape(-1) / 2.0
    half_h = SIGN_HEIGHT / 2.0
    return np.stack(
        [
            centres[:, 0] - half_w,
            centres[:, 1] - half_h,
            centres[:, 0] + half_w,
            centres[:, 1] + half_h,
        ],
        axis=1,
    )


def line_direction(line: TextLine) -> np.ndarray:
    """Unit vector of the line's reading direction (left to right) in image pixels."""
    vector = np.array([1.0, float(line.slope)])
    return vector / np.linalg.norm(vector)


__all__ = ["line_direction", "null_hypotheses", "null_hypothesis", "sign_boxes"]
