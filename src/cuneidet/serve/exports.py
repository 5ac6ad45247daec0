"""Exports of a photo's or a collection's signs: the paper's CSV, COCO JSON, class counts, PNGs
with the boxes drawn, and corrected signs as CSDD training data."""

from __future__ import annotations

import colorsys
import csv
import io
import json
import zipfile
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import numpy as np
import pandas as pd
from PIL import Image, ImageDraw, ImageFont

from cuneidet.data.csdd import BOX_COLUMNS, SEGMENT_COLUMNS
from cuneidet.data.detection_files import PREDICTION_COLUMNS, paper_csv_text, to_coco
from cuneidet.serve.db import Photo, Sign
from cuneidet.serve.detection import SignClass
from cuneidet.serve.uploads import EXTENSIONS, display_path, original_path

#: the view name written for a whole photo in an exported segments table
PHOTO_VIEW = "photo"


@dataclass(frozen=True)
class ClassTable:
    """Class names, MZL numbers and glyphs (those of the loaded model)."""

    classes: Mapping[int, SignClass]

    def get(self, label: int) -> SignClass:
        return self.classes.get(label) or SignClass(label, f"sign_{label}", -1, "")

    def mzl(self, train_label: int) -> int:
        return self.get(train_label).mzl

    def name(self, train_label: int) -> str:
        return self.get(train_label).name


def visible(signs: Iterable[Sign], min_score: float = 0.0) -> list[Sign]:
    """Signs not deleted, scored ≥ ``min_score`` (a user's own boxes always count)."""
    return [s for s in signs if not s.deleted and (s.score >= min_score or s.source == "user")]


def training_signs(photo: Photo) -> list[Sign]:
    """The signs a reviewed photo vouches for: at or above its review threshold, plus every
    sign the user drew or corrected."""
    return [
        s
        for s in photo.signs
        if not s.deleted and (s.score >= photo.review_threshold or s.source == "user" or s.edited)
    ]


def export_names(photos: Sequence[Photo]) -> dict[int, str]:
    """A unique image name per photo (its file name's stem; ``_<id>`` added on a clash)."""
    stems = {p.id: Path(p.name).stem or f"photo_{p.id}" for p in photos}
    counts = Counter(stems.values())
    return {pid: (stem if counts[stem] == 1 else f"{stem}_{pid}") for pid, stem in stems.items()}


def detections_frame(photos: Sequence[Photo], min_score: float) -> pd.DataFrame:
    """One row per visible sign, in :data:`PREDICTION_COLUMNS` (boxes in photo pixels)."""
    names = export_names(photos)
    rows = []
    for photo in photos:
        for sign in visible(photo.signs, min_score):
            box = (sign.x1, sign.y1, sign.x2, sign.y2)
            scale = photo.scale_used or 1.0
            rows.append(
                {
                    "imageName": names[photo.id],
                    "folder": "",
                    "image_path": "",
                    "segm_idx": -1,
                    "train_label": sign.label,
                    "det_score": sign.score,
                    **dict(zip(("x1", "y1", "x2", "y2"), box, strict=True)),
                    **{
                        c: v * scale for c, v in zip(("sx1", "sy1", "sx2", "sy2"), box, strict=True)
                    },
                    "scale": scale,
                }
            )
    frame = pd.DataFrame(rows, columns=list(PREDICTION_COLUMNS))
    frame.attrs["images"] = [
        {"id": i + 1, "file_name": names[p.id], "width": p.width, "height": p.height}
        for i, p in enumerate(photos)
    ]
    return frame


def paper_csv(photos: Sequence[Photo], classes: ClassTable, min_score: float) -> bytes:
    return paper_csv_text(detections_frame(photos, min_score), classes).encode()


def coco_json(photos: Sequence[Photo], classes: ClassTable, min_score: float) -> bytes:
    frame = detections_frame(photos, min_score)
    labels = set(classes.classes) | {int(v) for v in frame["train_label"]}
    categories = {label: classes.name(label) for label in sorted(labels)}
    coco = to_coco(frame, frame.attrs["images"], categories)
    return json.dumps(coco, ensure_ascii=False, indent=1).encode()


def class_counts(photos: Sequence[Photo], classes: ClassTable, min_score: float) -> list[dict]:
    """Signs per class over ``photos``, most frequent first."""
    counts = Counter(s.label for p in photos for s in visible(p.signs, min_score))
    return [
        {**classes.get(label).as_dict(), "count": count}
        for label, count in sorted(counts.items(), key=lambda item: (-item[1], item[0]))
    ]


def counts_csv(rows: Sequence[Mapping[str, Any]]) -> bytes:
    out = io.StringIO()
    writer = csv.DictWriter(out, ["label", "name", "mzl", "glyph", "count"], lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return out.getvalue().encode()


def class_colour(label: int) -> tuple[int, int, int]:
    """A stable, well-spread colour per class (golden-ratio hues)."""
    red, green, blue = colorsys.hsv_to_rgb((label * 0.618034) % 1.0, 0.85, 0.95)
    return round(red * 255), round(green * 255), round(blue * 255)


def drawn_png(
    photo: Photo,
    upload_dir: Path,
    classes: ClassTable,
    min_score: float,
    font_file: Path | None,
) -> bytes:
    """The photo's display rendition with its visible signs drawn (colour by class, name and
    glyph above each box)."""
    with Image.open(display_path(upload_dir, photo.stored_name)) as image:
        canvas = image.convert("RGB")
    factor = canvas.width / photo.width
    draw = ImageDraw.Draw(canvas)
    text_font = ImageFont.load_default(size=max(10, round(14 * canvas.width / 1500)))
    glyph_font = _glyph_font(font_file, text_font.size)
    for sign in visible(photo.signs, min_score):
        box = [v * factor for v in (sign.x1, sign.y1, sign.x2, sign.y2)]
        colour = class_colour(sign.label)
        draw.rectangle(box, outline=colour, width=max(1, round(2 * canvas.width / 1500)))
        cls = classes.get(sign.label)
        x, y = box[0], max(0.0, box[1] - text_font.size - 2)
        draw.text((x, y), cls.name, fill=colour, font=text_font)
        if glyph_font is not None and cls.glyph:
            width = draw.textlength(cls.name + " ", font=text_font)
            draw.text((x + width, y), cls.glyph, fill=colour, font=glyph_font)
    out = io.BytesIO()
    canvas.save(out, "PNG", optimize=False)
    return out.getvalue()


def _glyph_font(font_file: Path | None, size: float) -> Any:
    if font_file is None or not font_file.is_file():
        return None
    try:
        return ImageFont.truetype(str(font_file), round(size))
    except OSError:
        return None


def write_png_zip(
    target: IO[bytes],
    photos: Sequence[Photo],
    upload_dir: Path,
    classes: ClassTable,
    min_score: float,
    font_file: Path | None,
) -> None:
    names = export_names(photos)
    with zipfile.ZipFile(target, "w", zipfile.ZIP_STORED) as archive:
        for photo in photos:
            png = drawn_png(photo, upload_dir, classes, min_score, font_file)
            archive.writestr(f"{names[photo.id]}.png", png)


def training_set_name(collection_id: int) -> str:
    return f"web_{collection_id}"


def write_training_zip(
    target: IO[bytes],
    collection_id: int,
    photos: Sequence[Photo],
    upload_dir: Path,
    classes: ClassTable,
) -> int:
    """The reviewed ``photos`` as a CSDD box set (see ``docs/serve-api.md``); returns the
    number of boxes written."""
    set_name = training_set_name(collection_id)
    segments, boxes, provenance = [], [], []
    for segm_idx, photo in enumerate(photos):
        tablet = f"web{collection_id}-{photo.id}"
        scale = photo.scale_used or photo.scale or photo.scale_auto or 1.0
        segments.append(
            [
                segm_idx,
                tablet,
                PHOTO_VIEW,
                set_name,
                _bbox([0, 0, photo.width, photo.height]),
                round(float(scale), 4),
                True,
            ]
        )
        for sign in training_signs(photo):
            box = np.rint([sign.x1, sign.y1, sign.x2, sign.y2]).astype(int).tolist()
            text = _bbox(box)
            boxes.append(
                [
                    segm_idx,
                    tablet,
                    PHOTO_VIEW,
                    set_name,
                    classes.mzl(sign.label),
                    sign.label,
                    text,
                    text,
                ]
            )
        provenance.append([tablet, photo.name, photo.sha256, photo.review_threshold])
    with zipfile.ZipFile(target, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr(
            f"csdd/segments/tablet_segments_{set_name}.csv", _csv(SEGMENT_COLUMNS, segments)
        )
        archive.writestr(
            f"csdd/annotations/bbox_annotations_{set_name}.csv", _csv(BOX_COLUMNS, boxes)
        )
        archive.writestr(
            f"csdd/{set_name}_photos.csv",
            _csv(("tablet_CDLI", "uploaded_as", "sha256", "review_threshold"), provenance),
        )
        for photo, row in zip(photos, segments, strict=True):
            source = original_path(upload_dir, photo.stored_name, photo.format)
            archive.write(source, f"csdd/images/{row[1]}.{EXTENSIONS[photo.format]}")
        archive.writestr(f"csdd/{set_name}_README.txt", _readme(set_name, len(boxes)))
    return len(boxes)


def _bbox(values: Sequence[int]) -> str:
    return "[" + ", ".join(str(int(v)) for v in values) + "]"


def _csv(columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(columns)
    writer.writerows(rows)
    return out.getvalue()


def _readme(set_name: str, count: int) -> str:
    return (
        f"Box set {set_name}: {count} sign boxes corrected in the cuneidet web app.\n"
        "Unpack this zip into your data folder (the one holding csdd/meta/), then train with\n"
        f"  cuneidet-train data.train_sets=[train_full,{set_name}]\n"
        "Each photo is one segment (the whole photo at its sign scale); boxes are photo pixels.\n"
    )
