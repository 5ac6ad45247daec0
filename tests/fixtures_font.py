"""A tiny TrueType font with a few cuneiform code points, built with fontTools for tests.

Each glyph is a wedge-like outline (a triangular head with a bar), different per code point,
so tests exercise the real font path without the third-party Noto font.
"""

from __future__ import annotations

from pathlib import Path

from fontTools.fontBuilder import FontBuilder
from fontTools.pens.ttGlyphPen import TTGlyphPen

#: Code points the fixture font covers (AŠ, NA, NÍG, A); everything else falls back.
CODEPOINTS = (0x12038, 0x1223E, 0x120FB, 0x12000)


def _wedge_glyph(variant: int):
    pen = TTGlyphPen(None)
    top, bottom = 700 - 60 * variant, 100 + 40 * variant
    pen.moveTo((50, top))
    pen.lineTo((50, bottom))
    pen.lineTo((300 + 50 * variant, (top + bottom) // 2))
    pen.closePath()
    pen.moveTo((300, (top + bottom) // 2 + 40))
    pen.lineTo((300, (top + bottom) // 2 - 40))
    pen.lineTo((900, (top + bottom) // 2 - 20))
    pen.lineTo((900, (top + bottom) // 2 + 20))
    pen.closePath()
    return pen.glyph()


def make_cuneiform_font(path: str | Path) -> Path:
    """Write the fixture font to ``path`` (a .ttf) and return the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    names = [".notdef"] + [f"u{cp:X}" for cp in CODEPOINTS]
    builder = FontBuilder(1000, isTTF=True)
    builder.setupGlyphOrder(names)
    builder.setupCharacterMap({cp: f"u{cp:X}" for cp in CODEPOINTS})
    empty = TTGlyphPen(None)
    glyphs = {".notdef": empty.glyph()}
    glyphs.update({f"u{cp:X}": _wedge_glyph(i) for i, cp in enumerate(CODEPOINTS)})
    builder.setupGlyf(glyphs)
    builder.setupHorizontalMetrics({name: (1000, 0) for name in names})
    builder.setupHorizontalHeader(ascent=800, descent=-200)
    builder.setupNameTable({"familyName": "CuneidetTest", "styleName": "Regular"})
    builder.setupOS2(sTypoAscender=800, sTypoDescender=-200, usWinAscent=800, usWinDescent=200)
    builder.setupPost()
    builder.save(str(path))
    return path
