"""A small synthetic CSDD with train_full/test_full sets and photographs of drawable "signs".

Each tablet photo holds one segment (Obv) at scale 1.0 with a grid of 3 sign classes drawn as
dark shapes of about 120 px, so a detector can learn something in a few steps. Used by the
integration tests of the command-line apps; never depends on the real data.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from cuneidet.data.csdd import BOX_COLUMNS, SEGMENT_COLUMNS, TRANSLITERATION_COLUMNS
from tests.fixtures_csdd import MZL_HEADER
from tests.fixtures_csdd import _write_csv as _write

CLASSES = (1, 2, 3)  # train labels; MZL numbers 10, 20, 30


def _bbox(values) -> str:
    return "[" + ", ".join(str(int(v)) for v in values) + "]"


def draw_sign(draw: ImageDraw.ImageDraw, label: int, box: tuple[int, int, int, int]) -> None:
    x1, y1, x2, y2 = box
    if label == 1:
        draw.rectangle((x1 + 10, y1 + 10, x2 - 10, y2 - 10), fill=30)
    elif label == 2:
        cx, cy = (x1 + x2) // 2, (y1 + y2) // 2
        draw.rectangle((cx - 12, y1 + 8, cx + 12, y2 - 8), fill=40)
        draw.rectangle((x1 + 8, cy - 12, x2 - 8, cy + 12), fill=40)
    else:
        draw.polygon([(x1 + 8, y2 - 8), ((x1 + x2) // 2, y1 + 8), (x2 - 8, y2 - 8)], fill=20)


def make_synthetic_csdd(
    root: Path,
    train_tablets: int = 4,
    test_tablets: int = 2,
    size: tuple[int, int] = (760, 640),
    with_lines: bool = False,
    unlined_train_tablets: int = 0,
) -> Path:
    """Write ``<root>/csdd`` (segments, boxes, meta, images); returns ``root`` (the data dir).

    ``with_lines`` also writes line annotations (one polyline per row of signs, its points
    slightly jittered) and transliterations (each row a line, read left to right); the last
    ``unlined_train_tablets`` training tablets get no line annotations (views known by their
    boxes only).
    """
    csdd = root / "csdd"
    rng = np.random.default_rng(0)
    width, height = size
    for collection, set_name, count in (
        ("train", "train_full", train_tablets),
        ("test", "test_full", test_tablets),
    ):
        segments, boxes, lines, signs = [], [], [], []
        for index in range(count):
            tablet = f"{collection.upper()}{index:03d}"
            segments.append(
                [index, tablet, "Obv", collection, _bbox([0, 0, width, height]), 1.0, True]
            )
            image = Image.new("L", size, 200)
            draw = ImageDraw.Draw(image)
            for line_idx, y in enumerate(range(40, height - 140, 150)):
                xs = list(range(40, width - 140, 150))
                for x_end in (xs[0], xs[-1] + 120):
                    jitter = int(rng.integers(-4, 5))
                    if collection == "test" or index < count - unlined_train_tablets:
                        lines.append([line_idx, x_end, y + 62 + jitter, index, tablet])
                for pos_idx, x in enumerate(xs):
                    label = int(rng.choice(CLASSES))
                    box = (x, y, x + 120, y + 124)
                    draw_sign(draw, label, box)
                    signs.append(
                        [index, tablet, "Obv", len(signs), line_idx, pos_idx, label, label * 10, 1]
                    )
                    boxes.append(
                        [
                            index,
                            tablet,
                            "Obv",
                            collection,
                            label * 10,
                            label,
                            _bbox(box),
                            _bbox(box),
                        ]
                    )
            (csdd / "images").mkdir(parents=True, exist_ok=True)
            image.convert("RGB").save(csdd / "images" / f"{tablet}.jpg", quality=95)
        _write(
            csdd / "segments" / f"tablet_segments_{collection}.csv", list(SEGMENT_COLUMNS), segments
        )
        _write(csdd / "annotations" / f"bbox_annotations_{set_name}.csv", list(BOX_COLUMNS), boxes)
        if with_lines:
            _write(
                csdd / "annotations" / f"line_annotations_{collection}.csv",
                ["line_idx", "x", "y", "segm_idx", "tablet_CDLI"],
                lines,
            )
            _write(
                csdd / "transliterations" / f"transliterations_{collection}.csv",
                list(TRANSLITERATION_COLUMNS),
                signs,
            )
    meta = csdd / "meta"
    meta.mkdir(parents=True, exist_ok=True)
    new_labels = [0] * 1000
    for label in CLASSES:
        new_labels[label * 10] = label
    (meta / "newLabels.json").write_text(json.dumps(new_labels))
    _write(
        meta / "cunei_mzl.csv",
        MZL_HEADER,
        [
            [
                i,
                label * 10,
                f"SIGN{label}",
                f"U+{0x12000 + label:X} x",
                f"U+{0x12000 + label:X}",
                "x",
                "",
                "",
                "",
                "",
                1,
            ]
            for i, label in enumerate(CLASSES)
        ],
    )
    _write(
        meta / "unicode_sign_stats.csv",
        ["train_lbl", "width", "height"],
        [[label, 0.9, 0.95] for label in CLASSES],
    )
    return root
