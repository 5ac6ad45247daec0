"""A picture a person can judge: forged views beside the real photographs of the same views."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from cuneidet.data.segments import extract_segment
from cuneidet.data.sources import PhotoSource
from cuneidet.data.views import annotated_segments
from cuneidet.forge.source import ForgeSource
from cuneidet.forge.store import Forge
from cuneidet.utils.io import atomic_path


def pick_views(
    forge: Forge, real: PhotoSource, count: int, sets: Sequence[str], seed: int = 0
) -> list:
    """``count`` annotated segments with a real photo, spread over tablets (one per tablet)."""
    segments = [s for s in annotated_segments(forge.csdd, list(sets)) if real.has(s.tablet)]
    by_tablet: dict[str, object] = {}
    for segment in segments:
        by_tablet.setdefault(segment.tablet, segment)
    tablets = sorted(by_tablet)
    rng = np.random.default_rng(seed)
    chosen = rng.choice(len(tablets), size=min(count, len(tablets)), replace=False)
    return [by_tablet[tablets[i]] for i in sorted(chosen)]


def forge_vs_real_sheet(
    forge: Forge,
    real: PhotoSource,
    out: str | Path,
    count: int = 6,
    sets: Sequence[str] = ("test_full", "train_full"),
    tile_height: int = 420,
    seed: int = 0,
) -> Path:
    """Write a 2-row gray sheet: forged views on top, the real photos of the same views below.

    Each pair is cut from the composite photos at the segment bbox, brought to the CSDD scale
    (signs ~128 px high) and then shrunk by the same factor, so forged and real signs can be
    compared at the same size.
    """
    views = pick_views(forge, real, count, sets, seed)
    fake = ForgeSource(forge)
    columns = []
    for segment in views:
        pair = [
            extract_segment(source.load(segment.tablet), segment.bbox, segment.scale)
            for source in (fake, real)
        ]
        factor = tile_height / max(p.height for p in pair)
        pair = [
            p.resize(
                (max(1, round(p.width * factor)), max(1, round(p.height * factor))),
                Image.Resampling.LANCZOS,
            )
            for p in pair
        ]
        columns.append((segment, pair))
    gap, label_h = 12, 22
    width = sum(max(p.width for p in pair) for _, pair in columns) + gap * (len(columns) + 1)
    height = 2 * tile_height + 3 * gap + 2 * label_h
    sheet = Image.new("L", (width, height), 255)  # the detector sees gray images, too
    draw = ImageDraw.Draw(sheet)
    x = gap
    for segment, pair in columns:
        for row, (image, kind) in enumerate(zip(pair, ("forge", "real"), strict=True)):
            y = gap + row * (tile_height + gap + label_h)
            draw.text((x, y), f"{kind}: {segment.name}", fill=0)
            sheet.paste(image, (x, y + label_h))
        x += max(p.width for p in pair) + gap
    out = Path(out)
    with atomic_path(out) as tmp:
        sheet.save(tmp, format="PNG", optimize=True)
    return out


__all__ = ["forge_vs_real_sheet", "pick_views"]
