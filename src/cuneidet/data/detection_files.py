"""Export detections: the paper's generated-annotation CSV and COCO detection JSON.

Paper CSV (method-detector.md §3.2, method-pipeline.md §1.5): one row per box, fields separated
by ", " and, in the reference files, no header. Coordinates are **global composite-photo pixels,
unscaled** with one decimal; ``width``/``height`` use the "+1" convention (x2 − x1 + 1).

Raw detections (not aligned to a transliteration) have no line, position, matching energy or
alignment ratio. They are written NaN-free so that the reference parser reads them unchanged:

* ``line_idx = pos_idx = -1`` and ``m_score = align_ratio = -1.0`` (:data:`NOT_ALIGNED`);
  ``det_score`` is the detector score. ``m_score = -1`` keeps them apart from *placed* signs
  (det_score = m_score = 1), and ``align_ratio = -1`` makes the reference training loader
  (``align_ratio > 0.2``) ignore them, as raw detections are not training targets.
* ``mzl_label`` comes from the ``LabelMap`` when one is given, else stays ``-1``;
  ``segm_idx = -1`` for whole photos, empty ``folder``/``image_path`` when unknown.

Columns already present in the frame (e.g. from the alignment) are written as they are.
The optional reader-only columns ``nms_keep/compl/ncompl`` are written only when present and
filled with 1/50/100 (the reference "filter nothing" values) when read without them.

COCO: ``bbox = [x, y, w, h]`` with the continuous convention (w = x2 − x1), ``category_id`` =
train label, ``score`` = det_score.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import pandas as pd

from cuneidet.errors import ConfigError, DataFormatError, DataNotFoundError
from cuneidet.utils.io import atomic_open, write_json

log = logging.getLogger(__name__)

#: Box columns in the original photo frame and in the scaled segment frame.
BOX_COLUMNS = ("x1", "y1", "x2", "y2")
SCALED_BOX_COLUMNS = ("sx1", "sy1", "sx2", "sy2")
#: Columns of the DataFrame returned by :func:`predict_photos` (one row per detection).
PREDICTION_COLUMNS = (
    "imageName",
    "folder",
    "image_path",
    "segm_idx",
    "train_label",
    "det_score",
    *BOX_COLUMNS,
    *SCALED_BOX_COLUMNS,
    "scale",
)

PAPER_COLUMNS = (
    "imageName",
    "folder",
    "image_path",
    "mzl_label",
    "train_label",
    "x1",
    "y1",
    "x2",
    "y2",
    "width",
    "height",
    "segm_idx",
    "line_idx",
    "pos_idx",
    "det_score",
    "m_score",
    "align_ratio",
)
#: Reader-only columns of the reference code and the values that disable their filters.
OPTIONAL_COLUMNS = ("nms_keep", "compl", "ncompl")
OPTIONAL_DEFAULTS: dict[str, Any] = {"nms_keep": True, "compl": 50.0, "ncompl": 100.0}
#: Value of the alignment fields (line_idx, pos_idx, m_score, align_ratio) of raw detections.
NOT_ALIGNED = -1
#: Delimiter regex of the reference readers (accepts ", " and ",").
PAPER_DELIMITER = r",\s*"

_STRING_COLUMNS = ("imageName", "folder", "image_path")
_INT_COLUMNS = ("mzl_label", "train_label", "segm_idx", "line_idx", "pos_idx")
_COORD_COLUMNS = ("x1", "y1", "x2", "y2", "width", "height")
_REQUIRED = ("imageName", "train_label", "x1", "y1", "x2", "y2", "det_score")
_DEFAULTS: dict[str, Any] = {
    "folder": "",
    "image_path": "",
    "mzl_label": NOT_ALIGNED,
    "segm_idx": -1,
    "line_idx": NOT_ALIGNED,
    "pos_idx": NOT_ALIGNED,
    "m_score": float(NOT_ALIGNED),
    "align_ratio": float(NOT_ALIGNED),
}
#: Header names used by the reference writers/readers → our names.
_ALIASES = {
    "label": "mzl_label",
    "newLabel": "train_label",
    "seg_idx": "segm_idx",
    "line_number": "line_idx",
    "sign_position_in_line": "pos_idx",
    "score": "det_score",
}


class _LabelMapLike(Protocol):
    def mzl(self, train_label: int) -> int: ...

    def name(self, train_label: int) -> str: ...


# --------------------------------------------------------------------------- paper CSV


def prediction_frame(
    labels: np.ndarray,
    scores: np.ndarray,
    photo_boxes: np.ndarray,
    scaled_boxes: np.ndarray,
    *,
    name: str,
    scale: float,
    folder: str = "",
    image_path: str = "",
    segm_idx: int = -1,
) -> pd.DataFrame:
    """Detections of one photo (or segment) as rows of :data:`PREDICTION_COLUMNS`: boxes in the
    photo frame (``x1..y2``) and in the scaled segment the detector saw (``sx1..sy2``)."""
    count = len(labels)
    columns: dict[str, Any] = {
        "imageName": [name] * count,
        "folder": [folder] * count,
        "image_path": [image_path] * count,
        "segm_idx": np.full(count, segm_idx, dtype=np.int64),
        "train_label": np.asarray(labels, dtype=np.int64),
        "det_score": np.asarray(scores, dtype=np.float64),
    }
    photo_boxes = np.asarray(photo_boxes, dtype=np.float64).reshape(-1, 4)
    scaled_boxes = np.asarray(scaled_boxes, dtype=np.float64).reshape(-1, 4)
    for i, (photo_col, scaled_col) in enumerate(zip(BOX_COLUMNS, SCALED_BOX_COLUMNS, strict=True)):
        columns[photo_col] = photo_boxes[:, i]
        columns[scaled_col] = scaled_boxes[:, i]
    columns["scale"] = np.full(count, float(scale))
    return pd.DataFrame(columns, columns=list(PREDICTION_COLUMNS))


def to_paper_frame(df: pd.DataFrame, label_map: _LabelMapLike | None = None) -> pd.DataFrame:
    """Detections in :data:`PAPER_COLUMNS` order (+ optional columns present), defaults filled.

    Coordinates are rounded to one decimal and ``width``/``height`` recomputed (+1 convention).
    """
    missing = [c for c in _REQUIRED if c not in df.columns]
    if missing:
        raise DataFormatError(
            f"detections lack column(s) {missing}; expected at least {list(_REQUIRED)} "
            "(the output of predict_photos has them)"
        )
    coords = {c: df[c].astype(float).round(1) for c in ("x1", "y1", "x2", "y2")}
    coords["width"] = (coords["x2"] - coords["x1"] + 1).round(1)
    coords["height"] = (coords["y2"] - coords["y1"] + 1).round(1)
    out = pd.DataFrame(index=df.index)
    for column in PAPER_COLUMNS:
        if column in coords:
            out[column] = coords[column]
        elif column in df.columns:
            out[column] = df[column]
        elif column == "mzl_label" and label_map is not None:
            out[column] = _mzl_numbers(df["train_label"], label_map)
        else:
            out[column] = _DEFAULTS[column]
    for column in OPTIONAL_COLUMNS:
        if column in df.columns:
            out[column] = df[column]
    return out.reset_index(drop=True)


def _mzl_numbers(labels: pd.Series, label_map: _LabelMapLike) -> list[int]:
    """MZL number of every train label; -1 (with a counted warning) where the label map does
    not know the class (a model with more classes than the data's sign list)."""
    numbers, unknown = [], set()
    for label in labels.astype(int):
        try:
            numbers.append(int(label_map.mzl(label)))
        except (ConfigError, KeyError):
            numbers.append(NOT_ALIGNED)
            unknown.add(label)
    if unknown:
        log.warning(
            "%d detections have train labels the sign list does not know (%s): mzl_label -1",
            sum(1 for n in numbers if n == NOT_ALIGNED),
            sorted(unknown)[:10],
        )
    return numbers


def write_paper_csv(
    df: pd.DataFrame,
    path: str | Path,
    label_map: _LabelMapLike | None = None,
    header: bool = True,
) -> Path:
    """Write detections in the paper's CSV format (", "-separated), atomically.

    ``header=False`` gives exactly the reference files' layout; with a header the file is still
    read back by :func:`read_paper_csv`.
    """
    text = paper_csv_text(df, label_map, header)
    with atomic_open(path, "w", encoding="utf-8", newline="") as handle:
        handle.write(text)
    log.info("wrote %d detections to %s", len(df), path)
    return Path(path)


def paper_csv_text(
    df: pd.DataFrame, label_map: _LabelMapLike | None = None, header: bool = True
) -> str:
    """The text :func:`write_paper_csv` writes."""
    frame = to_paper_frame(df, label_map)
    _check_writable(frame)
    lines = [", ".join(frame.columns)] if header else []
    lines.extend(", ".join(row) for row in _formatted_rows(frame))
    return "".join(line + "\n" for line in lines)


def read_paper_csv(path: str | Path) -> pd.DataFrame:
    """Read a paper-format CSV, with or without header, separated by ``,`` or ``, ``.

    Reference header names (``label``, ``line_number``, ``score``, ...) are renamed to ours;
    absent ``nms_keep/compl/ncompl`` are filled with True/50/100 as the reference readers do.
    """
    path = Path(path)
    if not path.is_file():
        raise DataNotFoundError(f"detection CSV {path} does not exist")
    first = _first_line(path)
    all_columns = (*PAPER_COLUMNS, *OPTIONAL_COLUMNS)
    if first is None:
        return _typed(pd.DataFrame({c: [] for c in all_columns}), path)
    has_header = first.split(",", 1)[0].strip() == "imageName"
    n_fields = len(re.split(PAPER_DELIMITER, first.strip()))
    if not has_header and n_fields > len(all_columns):
        raise DataFormatError(
            f"{path}: first row has {n_fields} fields, the paper format has at most "
            f"{len(all_columns)} ({', '.join(all_columns)})"
        )
    frame = pd.read_csv(
        path,
        sep=PAPER_DELIMITER,
        engine="python",
        header=0 if has_header else None,
        names=None if has_header else list(all_columns),
        dtype={c: str for c in _STRING_COLUMNS},
        keep_default_na=False,
        na_values={c: [""] for c in all_columns if c not in _STRING_COLUMNS},
    )
    frame = frame.rename(columns=lambda c: _ALIASES.get(c.strip(), c.strip()))
    return _typed(frame, path)


def _typed(frame: pd.DataFrame, path: Path) -> pd.DataFrame:
    """Check the required columns, give every column its dtype and fill the optional ones."""
    missing = [c for c in PAPER_COLUMNS if c not in frame.columns]
    if missing:
        raise DataFormatError(f"{path}: missing column(s) {missing}")
    for column in _STRING_COLUMNS:
        frame[column] = frame[column].fillna("").astype(str)
    for column in _INT_COLUMNS:
        values = pd.to_numeric(frame[column], errors="coerce")
        if values.isna().any():
            row = int(np.flatnonzero(values.isna().to_numpy())[0])
            raise DataFormatError(f"{path}: column {column!r} is not an integer in data row {row}")
        frame[column] = values.astype(np.int64)
    for column in OPTIONAL_COLUMNS:
        if column not in frame.columns:
            frame[column] = np.nan
    if frame["nms_keep"].dtype == object or pd.api.types.is_string_dtype(frame["nms_keep"]):
        frame["nms_keep"] = frame["nms_keep"].replace({"True": 1, "False": 0})
    numeric = [c for c in frame.columns if c not in (*_STRING_COLUMNS, *_INT_COLUMNS)]
    for column in numeric:
        frame[column] = pd.to_numeric(frame[column], errors="coerce").astype(float)
    for column, default in OPTIONAL_DEFAULTS.items():
        frame[column] = frame[column].fillna(float(default))
    frame["nms_keep"] = frame["nms_keep"].astype(bool)
    return frame


def _first_line(path: Path) -> str | None:
    with open(path, encoding="utf-8") as handle:
        for line in handle:
            if line.strip():
                return line
    return None


def _check_writable(frame: pd.DataFrame) -> None:
    """The format has no quoting: reject commas in text and missing numbers, naming the row."""
    for column in _STRING_COLUMNS:
        bad = frame[column].astype(str).str.contains(",", regex=False)
        if bad.any():
            row = int(np.flatnonzero(bad.to_numpy())[0])
            raise DataFormatError(
                f"{column!r} of row {row} contains a comma ({frame[column].iloc[row]!r}); the "
                "paper CSV format has no quoting, rename the file/folder"
            )
    numeric = frame.drop(columns=list(_STRING_COLUMNS))
    nan_mask = numeric.isna().to_numpy()
    if nan_mask.any():
        row, col = (int(i[0]) for i in np.nonzero(nan_mask))
        raise DataFormatError(f"column {numeric.columns[col]!r} of row {row} is missing (NaN)")


def _formatted_rows(frame: pd.DataFrame) -> Iterable[list[str]]:
    formatters = [_formatter(c) for c in frame.columns]
    for values in frame.itertuples(index=False, name=None):
        yield [fmt(v) for fmt, v in zip(formatters, values, strict=True)]


def _formatter(column: str) -> Any:
    if column in _STRING_COLUMNS:
        return str
    if column in _INT_COLUMNS or column == "nms_keep":
        return lambda v: str(int(v))
    if column in _COORD_COLUMNS:
        return lambda v: f"{float(v):.1f}"
    return lambda v: repr(float(v))


# --------------------------------------------------------------------------- COCO


def to_coco(
    df: pd.DataFrame,
    images: Sequence[Mapping[str, Any]] | None,
    categories: Mapping[int, str],
    *,
    frame: str = "photo",
    image_column: str = "imageName",
) -> dict[str, Any]:
    """COCO detection JSON (``images``, ``annotations``, ``categories``) of the detections.

    ``images`` are dicts ``id, file_name, width, height`` (default: ``df.attrs["images"]`` as
    set by ``predict_photos``); a row belongs to the image whose ``file_name`` or file-name stem
    equals its ``image_column``. ``frame="photo"`` uses ``x1..y2``, ``"scaled"`` ``sx1..sy2``.
    """
    images = _images_or_attrs(df, images)
    boxes = _coco_boxes(df, frame)
    image_ids = _image_ids(df[image_column].astype(str), images)
    labels = df["train_label"].astype(np.int64).to_numpy()
    unknown = sorted(set(labels.tolist()) - {int(k) for k in categories})
    if unknown:
        raise DataFormatError(f"train labels {unknown[:10]} are not in the given categories")
    scores = df["det_score"].astype(float).to_numpy() if "det_score" in df else None
    annotations = [
        _annotation(
            i + 1,
            int(image_ids[i]),
            int(labels[i]),
            boxes[i],
            None if scores is None else float(scores[i]),
        )
        for i in range(len(df))
    ]
    return {
        "info": {"description": "cuneidet sign detections", "version": "1.0"},
        "images": [dict(image) for image in images],
        "annotations": annotations,
        "categories": [
            {"id": int(k), "name": str(v), "supercategory": "sign"}
            for k, v in sorted(categories.items())
        ],
    }


def write_coco_json(
    df: pd.DataFrame,
    path: str | Path,
    images: Sequence[Mapping[str, Any]] | None,
    categories: Mapping[int, str],
    **kwargs: Any,
) -> Path:
    """Write :func:`to_coco` of the detections to ``path`` atomically."""
    coco = to_coco(df, images, categories, **kwargs)
    log.info("wrote %d COCO annotations to %s", len(coco["annotations"]), path)
    return write_json(path, coco)


def from_coco(coco: Mapping[str, Any] | str | Path) -> pd.DataFrame:
    """Boxes of a COCO dict or JSON file as a frame (``imageName`` = file-name stem,
    ``image_id``, ``train_label`` = category_id, ``x1..y2``, ``det_score`` = score or 1)."""
    if not isinstance(coco, Mapping):
        with open(coco, encoding="utf-8") as handle:
            coco = json.load(handle)
    names = {int(img["id"]): Path(str(img["file_name"])).stem for img in coco.get("images", [])}
    rows = []
    for ann in coco.get("annotations", []):
        x, y, w, h = (float(v) for v in ann["bbox"])
        rows.append(
            {
                "imageName": names.get(int(ann["image_id"]), str(ann["image_id"])),
                "image_id": int(ann["image_id"]),
                "train_label": int(ann["category_id"]),
                "x1": x,
                "y1": y,
                "x2": x + w,
                "y2": y + h,
                "det_score": float(ann.get("score", 1.0)),
            }
        )
    columns = ["imageName", "image_id", "train_label", "x1", "y1", "x2", "y2", "det_score"]
    return pd.DataFrame(rows, columns=columns)


def categories_from_label_map(label_map: _LabelMapLike, num_classes: int = 240) -> dict[int, str]:
    """``{train_label: sign name}`` for the detector classes ``1 .. num_classes-1``."""
    return {label: label_map.name(label) for label in range(1, num_classes)}


def _images_or_attrs(
    df: pd.DataFrame, images: Sequence[Mapping[str, Any]] | None
) -> Sequence[Mapping[str, Any]]:
    if images is not None:
        return images
    if "images" in df.attrs:
        return df.attrs["images"]
    raise DataFormatError("to_coco needs `images` (the frame has no attrs['images'])")


def _coco_boxes(df: pd.DataFrame, frame: str) -> np.ndarray:
    columns = {"photo": ["x1", "y1", "x2", "y2"], "scaled": ["sx1", "sy1", "sx2", "sy2"]}
    if frame not in columns:
        raise ValueError(f"frame must be 'photo' or 'scaled', got {frame!r}")
    return df[columns[frame]].astype(float).to_numpy().reshape(-1, 4)


def _image_ids(names: pd.Series, images: Sequence[Mapping[str, Any]]) -> np.ndarray:
    lookup: dict[str, int] = {}
    for image in images:
        file_name = str(image["file_name"])
        lookup[file_name] = int(image["id"])
        lookup.setdefault(Path(file_name).stem, int(image["id"]))
    ids = names.map(lookup)
    if ids.isna().any():
        unknown = sorted(set(names[ids.isna()]))
        raise DataFormatError(
            f"detections of {len(unknown)} image(s) not in `images`, e.g. {unknown[:5]}"
        )
    return ids.to_numpy(dtype=np.int64)


def _annotation(
    ann_id: int, image_id: int, label: int, box: np.ndarray, score: float | None
) -> dict[str, Any]:
    x1, y1, x2, y2 = (float(v) for v in box)
    w, h = x2 - x1, y2 - y1
    ann = {
        "id": ann_id,
        "image_id": image_id,
        "category_id": label,
        "bbox": [x1, y1, w, h],
        "area": w * h,
        "iscrowd": 0,
    }
    if score is not None:
        ann["score"] = score
    return ann
