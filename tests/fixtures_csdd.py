"""A tiny, self-contained CSDD data directory for tests (no dependency on the real data).

``make_tiny_csdd(root)`` writes ``<root>/csdd/`` with the real file layout and column formats:

Collections (``segments/``, ``transliterations/``):

======  ========  =======  =====  ====================  ======  ========  ==================
coll.   segm_idx  tablet   view   bbox (photo)          scale   assigned  transliterated
======  ========  =======  =====  ====================  ======  ========  ==================
train   0         TAB001   Obv    [10, 20, 110, 100]    2.0     True      4 signs
train   1         TAB001   Rev    [10, 110, 110, 210]   1.5     True      -
train   2         TAB001   ""     [120, 20, 190, 210]   -       False     -
train   3         TAB002   Obv    [5, 5, 125, 85]       0.75    True      2 signs
train   4         TAB002   ""     [5, 88, 125, 98]      -       False     -
saa01   0         W001     Obv    [10, 10, 90, 90]      2.5     True      5 signs
saa01   1         W001     Rev    [10, 100, 90, 180]    2.2     True      3 signs
saa01   2         W001     ""     [95, 10, 120, 180]    -       False     -
saa01   3         W002     Obv    [10, 10, 80, 60]      3.0     True      - (not in weak set)
saa01   4         W003     ""     [0, 0, 50, 50]        -       False     -
======  ========  =======  =====  ====================  ======  ========  ==================

Box sets (``annotations/``): ``train_full`` has 8 rows: train/0 three boxes (labels 1, 2 and
0), train/1 two boxes (label 3 with a sub-pixel float ``relative_bbox``, label 250 ≥ 240),
train/3 two boxes (labels 5, 1) and one ``segm_idx = -1`` row of tablet TAB003 (label 4, empty
``relative_bbox``). ``train_B`` (other column order, like the real subsets) has 3 of those rows
(train/0 labels 1, 2; train/3 label 5). Line annotations: ``train`` has 2 lines on train/0 and
1 line on train/3; ``test`` is header-only.

Meta: ``newLabels.json`` maps MZL 1→1, 11→2, 110→3, 27→4, 839→5, 900→250; ``cunei_mzl.csv``
has those signs (MZL 1 twice: the first row, AŠ, wins; MZL 11 has two code points; MZL 27 has
none); ``unicode_sign_stats.csv`` has priors for labels 1…5.

Photos (``images/``, with ``with_images``): ``TAB001.jpg`` (200×220) and ``TAB002.jpg``
(140×100), RGB JPEGs with the segments shaded and the boxes drawn. TAB003 and the saa01 tablets
have no photo. The expected counts are in :data:`TINY_COUNTS`.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

from PIL import Image, ImageDraw

from cuneidet.data.csdd import TRANSLITERATION_COLUMNS

SEGMENT_HEADER = ["segm_idx", "tablet_CDLI", "view_desc", "collection", "bbox", "scale", "assigned"]

SEGMENTS = {
    "train": [
        (0, "TAB001", "Obv", [10, 20, 110, 100], 2.0, True),
        (1, "TAB001", "Rev", [10, 110, 110, 210], 1.5, True),
        (2, "TAB001", "", [120, 20, 190, 210], None, False),
        (3, "TAB002", "Obv", [5, 5, 125, 85], 0.75, True),
        (4, "TAB002", "", [5, 88, 125, 98], None, False),
    ],
    "saa01": [
        (0, "W001", "Obv", [10, 10, 90, 90], 2.5, True),
        (1, "W001", "Rev", [10, 100, 90, 180], 2.2, True),
        (2, "W001", "", [95, 10, 120, 180], None, False),
        (3, "W002", "Obv", [10, 10, 80, 60], 3.0, True),
        (4, "W003", "", [0, 0, 50, 50], None, False),
    ],
}

PHOTO_SIZES = {"TAB001": (200, 220), "TAB002": (140, 100)}

#: (segm_idx, tablet, view, mzl, train_label, relative bbox string) for collection ``train``.
BOX_ROWS = [
    (0, "TAB001", "Obv", 1, 1, "[10, 10, 40, 40]"),
    (0, "TAB001", "Obv", 11, 2, "[50, 10, 90, 40]"),
    (0, "TAB001", "Obv", 0, 0, "[10, 45, 40, 75]"),
    (1, "TAB001", "Rev", 110, 3, "[12.5, 10.25, 40.0, 50.0]"),
    (1, "TAB001", "Rev", 900, 250, "[50, 10, 90, 50]"),
    (3, "TAB002", "Obv", 839, 5, "[10, 10, 50, 40]"),
    (3, "TAB002", "Obv", 1, 1, "[60, 20, 100, 60]"),
    (-1, "TAB003", "", 27, 4, "[]"),
]
UNASSIGNED_GLOBAL_BBOX = [5, 5, 30, 30]
TRAIN_B_ROWS = (0, 1, 5)

LINES_TRAIN = [  # line_idx, x, y, segm_idx, tablet
    (0, 5, 25, 0, "TAB001"),
    (0, 50, 27, 0, "TAB001"),
    (0, 95, 24, 0, "TAB001"),
    (1, 5, 60, 0, "TAB001"),
    (1, 95, 62, 0, "TAB001"),
    (0, 5, 25, 3, "TAB002"),
    (0, 110, 30, 3, "TAB002"),
]

#: collection → segm_idx → list of (line_idx, pos_idx, train_label, mzl_label, status)
TRANSLITERATIONS = {
    "train": {
        0: [(0, 0, 1, 1, 1), (0, 1, 2, 11, 1), (1, 0, 0, 0, 0), (1, 1, 5, 839, 2)],
        3: [(0, 0, 5, 839, 1), (0, 1, 1, 1, 1)],
    },
    "saa01": {
        0: [
            (0, 0, 1, 1, 1),
            (0, 1, 3, 110, 1),
            (0, 2, 0, 0, 0),
            (1, 0, 2, 11, 1),
            (1, 1, 5, 839, 1),
        ],
        1: [(0, 0, 4, 27, 1), (0, 1, 1, 1, 2), (1, 0, 3, 110, 1)],
    },
}

NEW_LABELS = {1: 1, 11: 2, 110: 3, 27: 4, 839: 5, 900: 250}

MZL_HEADER = [
    "",
    "MesZL",
    "Sign Name",
    "Script/Cuneiform Codepoint",
    "codepoint_0",
    "script_0",
    "codepoint_1",
    "script_1",
    "codepoint_2",
    "script_2",
    "num_cpts",
]
MZL_SIGNS = [  # MesZL, name, code points
    (1, "AŠ", ["U+12038"]),
    (1, "AŠ-variant", ["U+12039"]),
    (11, "AŠ+SUR", ["U+12038", "U+122E9"]),
    (27, "KA×TU", []),
    (110, "NA", ["U+1223E"]),
    (839, "NÍG", ["U+120FB"]),
    (900, "ZIZ", ["U+12000"]),
]
SIGN_STATS = [(1, 0.71875, 0.9375), (2, 0.93, 0.9375), (3, 1.5, 1.0), (4, 1.2, 0.9), (5, 0.8, 1.0)]

#: The counts ``dataset_summary`` must report for the fixture.
TINY_COUNTS = {
    "box_sets": {
        "train_full": {
            "rows": 8,
            "in_range_boxes": 6,
            "in_range_boxes_assigned": 5,
            "label_0": 1,
            "label_out_of_range": 1,
            "unassigned_rows": 1,
            "segments": 3,
            "tablets": 3,
        },
        "train_B": {
            "rows": 3,
            "in_range_boxes": 3,
            "in_range_boxes_assigned": 3,
            "label_0": 0,
            "label_out_of_range": 0,
            "unassigned_rows": 0,
            "segments": 2,
            "tablets": 2,
        },
    },
    "collections": {
        "saa01": {
            "segments": 5,
            "assigned_segments": 3,
            "tablets": 3,
            "transliterated_signs": 8,
            "transliterated_segments": 2,
        },
        "train": {
            "segments": 5,
            "assigned_segments": 3,
            "tablets": 2,
            "transliterated_signs": 6,
            "transliterated_segments": 2,
        },
    },
    "weak_set": {"collections": ["saa01"], "segments": 2, "tablets": 1, "signs": 8},
    "annotated_tablets": ["TAB001", "TAB002"],
}


def _bbox_str(values: list[float]) -> str:
    return "[" + ", ".join(str(v) for v in values) + "]"


def _write_csv(path: Path, header: list[str], rows: list[list[object]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)


def _segment_origin(segm_idx: int) -> tuple[int, int]:
    for row in SEGMENTS["train"]:
        if row[0] == segm_idx:
            return row[3][0], row[3][1]
    raise KeyError(segm_idx)


def box_global_bbox(row: tuple) -> list[int]:
    """Global (photo) bbox of a :data:`BOX_ROWS` row: relative + segment origin, rounded."""
    segm_idx, rel = row[0], row[5]
    if segm_idx < 0:
        return list(UNASSIGNED_GLOBAL_BBOX)
    x0, y0 = _segment_origin(segm_idx)
    values = [float(v) for v in rel.strip("[]").split(",")]
    return [round(v + o) for v, o in zip(values, (x0, y0, x0, y0), strict=True)]


def _write_segments(csdd: Path) -> None:
    for collection, rows in SEGMENTS.items():
        out = [
            [i, tablet, view, collection, _bbox_str(bbox), "" if scale is None else scale, assigned]
            for i, tablet, view, bbox, scale, assigned in rows
        ]
        _write_csv(csdd / "segments" / f"tablet_segments_{collection}.csv", SEGMENT_HEADER, out)


def _write_transliterations(csdd: Path) -> None:
    header = list(TRANSLITERATION_COLUMNS)
    for collection, by_segment in TRANSLITERATIONS.items():
        segments = {row[0]: row for row in SEGMENTS[collection]}
        rows = []
        for segm_idx, signs in by_segment.items():
            _, tablet, view, *_ = segments[segm_idx]
            for rec_idx, (line, pos, label, mzl, status) in enumerate(signs):
                rows.append([segm_idx, tablet, view, rec_idx, line, pos, label, mzl, status])
        path = csdd / "transliterations" / f"transliterations_{collection}.csv"
        _write_csv(path, header, rows)


def _write_boxes(csdd: Path) -> None:
    full_header = [
        "segm_idx",
        "tablet_CDLI",
        "view_desc",
        "collection",
        "mzl_label",
        "train_label",
        "bbox",
        "relative_bbox",
    ]
    full = [
        [segm, tablet, view, "train", mzl, label, _bbox_str(box_global_bbox(row)), rel]
        for row in BOX_ROWS
        for segm, tablet, view, mzl, label, rel in [row]
    ]
    _write_csv(csdd / "annotations" / "bbox_annotations_train_full.csv", full_header, full)
    subset_header = ["segm_idx", "collection", *full_header[1:3], *full_header[4:]]
    subset = [[r[0], r[3], r[1], r[2], *r[4:]] for r in (full[i] for i in TRAIN_B_ROWS)]
    _write_csv(csdd / "annotations" / "bbox_annotations_train_B.csv", subset_header, subset)
    line_header = ["line_idx", "x", "y", "segm_idx", "tablet_CDLI"]
    lines = [list(r) for r in LINES_TRAIN]
    _write_csv(csdd / "annotations" / "line_annotations_train.csv", line_header, lines)
    _write_csv(csdd / "annotations" / "line_annotations_test.csv", line_header, [])


def _write_meta(csdd: Path) -> None:
    meta = csdd / "meta"
    meta.mkdir(parents=True, exist_ok=True)
    labels = [0] * 1000
    for mzl, label in NEW_LABELS.items():
        labels[mzl] = label
    (meta / "newLabels.json").write_text(json.dumps(labels), encoding="utf-8")
    rows = []
    for index, (mzl, name, cps) in enumerate(MZL_SIGNS):
        chars = [chr(int(cp[2:], 16)) for cp in cps]
        combined = " & ".join(f"{cp} {ch}" for cp, ch in zip(cps, chars, strict=True))
        cells: list[object] = [index, mzl, name, combined]
        for slot in range(3):
            cells += [cps[slot], chars[slot]] if slot < len(cps) else ["", ""]
        rows.append([*cells, len(cps)])
    _write_csv(meta / "cunei_mzl.csv", MZL_HEADER, rows)
    _write_csv(meta / "unicode_sign_stats.csv", ["train_lbl", "width", "height"], SIGN_STATS)


def _write_images(csdd: Path) -> None:
    images = csdd / "images"
    images.mkdir(parents=True, exist_ok=True)
    for tablet, size in PHOTO_SIZES.items():
        photo = Image.new("RGB", size, (205, 190, 170))
        draw = ImageDraw.Draw(photo)
        for _, seg_tablet, _, bbox, _, _ in SEGMENTS["train"]:
            if seg_tablet == tablet:
                draw.rectangle([bbox[0], bbox[1], bbox[2] - 1, bbox[3] - 1], fill=(150, 130, 110))
        for row in BOX_ROWS:
            if row[1] == tablet:
                x1, y1, x2, y2 = box_global_bbox(row)
                draw.rectangle([x1, y1, x2 - 1, y2 - 1], outline=(30, 20, 10), width=2)
        photo.save(images / f"{tablet}.jpg", quality=90)


def make_tiny_csdd(root: Path, *, with_images: bool = True) -> Path:
    """Write the tiny CSDD described in the module docstring under ``root``; return ``root``.

    ``root`` is the *data directory* (it gets a ``csdd/`` subfolder), ready for
    ``CSDD(root)`` or ``--data-dir root``.
    """
    root = Path(root)
    csdd = root / "csdd"
    _write_segments(csdd)
    _write_transliterations(csdd)
    _write_boxes(csdd)
    _write_meta(csdd)
    if with_images:
        _write_images(csdd)
    return root
