"""Glyph images (dark ink on light ground) → the classifiers' input: binarise, crop to the ink,
pad to a square, resize. Training images and drawings go through the same function."""

from __future__ import annotations

import cv2
import numpy as np

from cuneidet.errors import ImageLoadError

#: side of the network input (pixels)
INPUT_SIZE = 64
#: white margin around the ink, as a share of the ink's longer side
MARGIN = 0.12
#: fewer ink pixels than this share of the image: nothing was drawn
MIN_INK = 0.002


class EmptyGlyphError(ImageLoadError):
    """The image holds no ink (an empty canvas, a blank page)."""


def ink_map(gray: np.ndarray) -> np.ndarray:
    """Ink (1.0) against ground (0.0), float32, by Otsu's threshold on a uint8 grey image; an
    image of one grey level has no ink."""
    gray = np.asarray(gray, np.uint8)
    if int(gray.max()) - int(gray.min()) < 32:
        return np.zeros(gray.shape, np.float32)
    _, mask = cv2.threshold(gray, 0, 255, cv2.THRESH_BINARY_INV + cv2.THRESH_OTSU)
    return (mask > 0).astype(np.float32)


def fit_ink(ink: np.ndarray, size: int = INPUT_SIZE, margin: float = MARGIN) -> np.ndarray:
    """The ink's bounding box, padded to a centred square with ``margin``, resized to ``size``
    (float32 ink map in [0, 1]); :class:`EmptyGlyphError` when there is no ink."""
    ink = np.asarray(ink, np.float32)
    rows, cols = np.nonzero(ink > 0.5)
    if len(rows) < max(3, MIN_INK * ink.size):
        raise EmptyGlyphError("the image holds no drawing (no ink found): draw a character first")
    y0, y1, x0, x1 = rows.min(), rows.max() + 1, cols.min(), cols.max() + 1
    side = int(np.ceil(max(y1 - y0, x1 - x0) * (1 + 2 * margin)))
    canvas = np.zeros((side, side), np.float32)
    top, left = (side - (y1 - y0)) // 2, (side - (x1 - x0)) // 2
    canvas[top : top + y1 - y0, left : left + x1 - x0] = ink[y0:y1, x0:x1]
    interpolation = cv2.INTER_AREA if side > size else cv2.INTER_LINEAR
    return cv2.resize(canvas, (size, size), interpolation=interpolation)


def to_gray(image: np.ndarray) -> np.ndarray:
    """uint8 grey of an RGB(A) or grey array; transparent pixels count as white paper."""
    array = np.asarray(image)
    if array.ndim == 3 and array.shape[2] == 4:
        alpha = array[..., 3:4].astype(np.float32) / 255.0
        array = (array[..., :3] * alpha + 255.0 * (1 - alpha)).astype(np.uint8)
    if array.ndim == 3:
        array = cv2.cvtColor(array[..., :3], cv2.COLOR_RGB2GRAY)
    return array.astype(np.uint8)


def glyph_input(image: np.ndarray, size: int = INPUT_SIZE) -> np.ndarray:
    """The network input of a glyph image: uint8 [size, size], black ink on white."""
    ink = fit_ink(ink_map(to_gray(image)), size)
    return np.round(255.0 * (1.0 - ink)).astype(np.uint8)
