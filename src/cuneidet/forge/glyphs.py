"""Sign glyphs as binary ink masks: Noto Sans Cuneiform, with a drawn fallback.

A sign is looked up by its MZL number (``meta/cunei_mzl.csv`` gives its code points; signs
with several code points are rendered as one string). Signs without a glyph in the sign list or
in the font (MZL 0 = unknown sign, or a code point the font lacks) get a *fallback glyph*: a
small composition of wedges (horizontal, vertical, diagonal and Winkelhaken) drawn from a random
generator seeded by the MZL number, so the same sign always looks the same and different signs
differ. Masks are cropped to their ink and cached per process.
"""

from __future__ import annotations

import zlib
from collections.abc import Mapping
from pathlib import Path

import cv2
import numpy as np
from PIL import Image, ImageDraw, ImageFont

from cuneidet.errors import DataNotFoundError

FONT_NAME = "NotoSansCuneiform-Regular.ttf"
FONT_URL = "https://fonts.google.com/noto/specimen/Noto+Sans+Cuneiform"
GLYPH_HEIGHT = 96  # canonical rasterisation size (px); masks are warped to each sign's box


def default_font_path(data_dir: str | Path) -> Path:
    """Where the font is expected: ``<data_dir>/fonts/NotoSansCuneiform-Regular.ttf``."""
    return Path(data_dir) / "fonts" / FONT_NAME


def load_font(path: str | Path, size: int = GLYPH_HEIGHT) -> ImageFont.FreeTypeFont:
    """Load the cuneiform font or raise :class:`DataNotFoundError` saying where to get it."""
    path = Path(path)
    if not path.is_file():
        raise DataNotFoundError(
            f"Cuneiform font not found at {path}. Download Noto Sans Cuneiform ({FONT_URL}, "
            f"SIL Open Font License), put {FONT_NAME} there, or set forge.font=<path/to/font.ttf>."
        )
    try:
        return ImageFont.truetype(str(path), size)
    except OSError as exc:
        raise DataNotFoundError(
            f"Cannot read the font {path} ({exc}); replace it with {FONT_NAME} from {FONT_URL}."
        ) from exc


class GlyphBank:
    """MZL number → cropped binary ink mask (uint8, 0/1), cached."""

    def __init__(
        self, font_path: str | Path, sign_list: Mapping[int, tuple[str, str]], size: int = 96
    ) -> None:
        self.font_path = Path(font_path)
        self.font = load_font(self.font_path, size)
        self.size = size
        self.glyph_strings = {int(k): v[1] for k, v in sign_list.items() if v[1]}
        self._cache: dict[int, np.ndarray] = {}
        self.fallback_count = 0

    def has_font_glyph(self, mzl: int) -> bool:
        """Whether the sign is drawn from the font (not the wedge fallback)."""
        return self._font_mask(self.glyph_strings.get(int(mzl), "")) is not None

    def mask(self, mzl: int) -> np.ndarray:
        mzl = int(mzl)
        cached = self._cache.get(mzl)
        if cached is None:
            cached = self._font_mask(self.glyph_strings.get(mzl, ""))
            if cached is None:
                cached = fallback_glyph(mzl, self.size)
                self.fallback_count += 1
            self._cache[mzl] = cached
        return cached

    def _font_mask(self, text: str) -> np.ndarray | None:
        if not text:
            return None
        left, top, right, bottom = self.font.getbbox(text)
        if right <= left or bottom <= top:
            return None
        canvas = Image.new("L", (right - left + 4, bottom - top + 4), 0)
        ImageDraw.Draw(canvas).text((2 - left, 2 - top), text, font=self.font, fill=255)
        mask = (np.asarray(canvas) > 127).astype(np.uint8)
        if _is_notdef(mask):
            return None
        return crop_to_ink(mask)


def _is_notdef(mask: np.ndarray) -> bool:
    """The font's "missing glyph" box: ink only on a rectangle outline (empty interior)."""
    ink = crop_to_ink(mask)
    if ink.size == 0 or min(ink.shape) < 6:
        return ink.size == 0
    interior = ink[3:-3, 3:-3]
    border = ink.sum() - interior.sum()
    return interior.sum() == 0 and border > 0


def crop_to_ink(mask: np.ndarray) -> np.ndarray:
    """Crop a mask to the bounding box of its non-zero pixels (empty array if none)."""
    rows = np.flatnonzero(mask.any(axis=1))
    cols = np.flatnonzero(mask.any(axis=0))
    if rows.size == 0:
        return mask[:0, :0]
    return np.ascontiguousarray(mask[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1])


def _wedge(draw_mask: np.ndarray, head: tuple[float, float], angle: float, length: float) -> None:
    """Draw one wedge: a triangular head tapering into a thin tail along ``angle``."""
    direction = np.array([np.cos(angle), np.sin(angle)])
    normal = np.array([-direction[1], direction[0]])
    head_pt = np.asarray(head)
    width = 0.28 * length
    tip = head_pt + direction * length
    head_poly = np.array(
        [head_pt + normal * width, head_pt - normal * width, head_pt + direction * 0.45 * length]
    )
    cv2.fillConvexPoly(draw_mask, np.round(head_poly).astype(np.int32), 1)
    tail_width = max(1, round(0.06 * length))
    cv2.line(
        draw_mask,
        tuple(np.round(head_pt).astype(int)),
        tuple(np.round(tip).astype(int)),
        1,
        thickness=tail_width,
    )


def fallback_glyph(mzl: int, size: int = GLYPH_HEIGHT) -> np.ndarray:
    """A deterministic wedge composition for signs without a font glyph (see module doc)."""
    rng = np.random.default_rng(zlib.crc32(f"mzl-{int(mzl)}".encode()))
    width = int(size * rng.uniform(0.6, 1.3))
    mask = np.zeros((size, width), np.uint8)
    count = int(rng.integers(2, 7))
    angles = {"h": 0.0, "v": np.pi / 2, "d": np.pi / 4, "u": -np.pi / 4, "w": np.pi}
    for _ in range(count):
        kind = rng.choice(["h", "h", "v", "v", "d", "u", "w"])
        length = size * rng.uniform(0.3, 0.7) if kind != "w" else size * 0.25
        x = rng.uniform(0.1, 0.6) * width
        y = rng.uniform(0.1, 0.6) * size
        _wedge(mask, (x, y), angles[str(kind)], length)
    return crop_to_ink(mask)


__all__ = [
    "FONT_NAME",
    "FONT_URL",
    "GlyphBank",
    "crop_to_ink",
    "default_font_path",
    "fallback_glyph",
    "load_font",
]
