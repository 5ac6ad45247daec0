"""The weak views of a pipeline, their text lines, and the truth that measures their labels.

Weak views are assigned, transliterated views: every view of the chosen collections plus the
views of chosen box sets' tablets (e.g. the train_full views, whose boxes the weak settings do
not train on). Views of excluded tablets (the test tablets) never enter. All geometry is in the
scaled segment frame (signs about 128 px high); generated CSVs are in global composite-photo
pixels (``box / scale + segment origin``).
"""

from __future__ import annotations

import dataclasses
import json
import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from cuneidet.align import ViewTransliteration, view_transliteration
from cuneidet.data.csdd import CSDD
from cuneidet.data.line_geometry import LineHypotheses
from cuneidet.data.segments import view_stem
from cuneidet.data.views import AnnotatedSegment, annotated_segments, segment_from_row
from cuneidet.errors import ConfigError, DataNotFoundError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class WeakView:
    """One weak view: its segment (no boxes) and its visible transliteration lines."""

    segment: AnnotatedSegment
    text: ViewTransliteration

    @property
    def key(self) -> str:
        return self.segment.key

    @property
    def stem(self) -> str:
        """File stem of the view's per-view artifacts."""
        return view_stem(self.segment.key, self.segment.name)


def select_weak_views(
    csdd: CSDD,
    collections: Sequence[str] = (),
    box_sets: Sequence[str] = (),
    exclude_tablets: Iterable[str] = (),
    limit: int | None = None,
    per_collection: int | None = None,
) -> list[WeakView]:
    """Transliterated assigned views of ``collections`` and of ``box_sets``' views, minus the
    excluded tablets, sorted by key; views without a visible sign are left out (counted).

    ``per_collection``: only that many views of each of ``collections``, spread evenly over
    its views (a reduced run; the box sets' views are all kept)."""
    segments = []
    for collection in collections:
        table = csdd.segments([collection], assigned_only=True)
        if per_collection is not None and len(table) > per_collection:
            table = table.iloc[np.linspace(0, len(table) - 1, per_collection).astype(int)]
        segments.extend(segment_from_row(row) for _, row in table.iterrows())
    for segment in annotated_segments(csdd, list(box_sets)) if box_sets else []:
        segments.append(_without_boxes(segment))
    excluded = set(exclude_tablets)
    unique = {s.key: s for s in segments if s.tablet not in excluded}
    dropped = len({s.key for s in segments}) - len(unique)
    views, empty = [], 0
    for key in sorted(unique, key=_key_order):
        segment = unique[key]
        text = view_transliteration(csdd, segment.collection, segment.segm_idx, segment.tablet)
        if text.num_lines == 0:
            empty += 1
            continue
        views.append(WeakView(segment, text))
    log.info(
        "weak views: %d (%d of excluded tablets and %d without a visible transliterated sign "
        "left out)",
        len(views),
        dropped,
        empty,
    )
    if limit:
        views = views[: int(limit)]
    if not views:
        raise ConfigError(
            f"no weak view: collections={list(collections)} box_sets={list(box_sets)} give no "
            "transliterated assigned view outside the excluded tablets"
        )
    return views


def _without_boxes(segment: AnnotatedSegment) -> AnnotatedSegment:
    return dataclasses.replace(
        segment, boxes=np.zeros((0, 4), np.float32), labels=np.zeros(0, np.int64)
    )


def _key_order(key: str) -> tuple[str, int]:
    collection, segm_idx = key.rsplit("/", 1)
    return collection, int(segm_idx)


def to_global(boxes: np.ndarray, segment: AnnotatedSegment) -> np.ndarray:
    """Scaled segment boxes → global composite-photo pixels."""
    x0, y0 = segment.bbox[:2]
    return np.asarray(boxes, np.float64).reshape(-1, 4) / segment.scale + [x0, y0, x0, y0]


def to_scaled(boxes: np.ndarray, segment: AnnotatedSegment) -> np.ndarray:
    """Global composite-photo boxes → scaled segment pixels."""
    x0, y0 = segment.bbox[:2]
    return (np.asarray(boxes, np.float64).reshape(-1, 4) - [x0, y0, x0, y0]) * segment.scale


def row_view_keys(rows: pd.DataFrame) -> pd.Series:
    """``collection/segm_idx`` of every generated row (the collection is ``folder``'s first
    part)."""
    collections = {f: f.split("/", 1)[0] for f in rows["folder"].unique()}
    return rows["folder"].map(collections) + "/" + rows["segm_idx"].astype(str)


def load_view_lines(line_dir: str | Path, view: WeakView) -> tuple[LineHypotheses, np.ndarray]:
    """The line hypotheses and their transliteration line indices written by the line stage."""
    json_path = Path(line_dir) / f"{view.stem}.json"
    npz_path = json_path.with_suffix(".npz")
    if not json_path.is_file() or not npz_path.is_file():
        raise DataNotFoundError(f"no line artifacts for view {view.key} in {line_dir}")
    record = json.loads(json_path.read_text())
    with np.load(npz_path) as maps:
        hypotheses = LineHypotheses.from_dict(record, maps["label_map"], maps["line_map"])
    return hypotheses, np.asarray(record["tl_lines"], np.int64)


def view_rows(
    view: WeakView,
    boxes: np.ndarray,
    labels: np.ndarray,
    mzl: np.ndarray,
    line_idx: np.ndarray,
    pos_idx: np.ndarray,
    det_score: np.ndarray | float,
    m_score: np.ndarray | float,
    align_ratio: float,
) -> pd.DataFrame:
    """Generated-annotation rows (paper CSV columns) of one view from scaled boxes."""
    segment = view.segment
    xyxy = to_global(boxes, segment)
    count = len(xyxy)
    return pd.DataFrame(
        {
            "imageName": [segment.tablet] * count,
            "folder": [f"{segment.collection}/images/"] * count,
            "image_path": [""] * count,
            "mzl_label": np.asarray(mzl, np.int64).reshape(-1),
            "train_label": np.asarray(labels, np.int64).reshape(-1),
            "x1": xyxy[:, 0],
            "y1": xyxy[:, 1],
            "x2": xyxy[:, 2],
            "y2": xyxy[:, 3],
            "segm_idx": np.full(count, segment.segm_idx, np.int64),
            "line_idx": np.asarray(line_idx, np.int64).reshape(-1),
            "pos_idx": np.asarray(pos_idx, np.int64).reshape(-1),
            "det_score": np.broadcast_to(np.asarray(det_score, np.float64), (count,)),
            "m_score": np.broadcast_to(np.asarray(m_score, np.float64), (count,)),
            "align_ratio": np.full(count, float(align_ratio)),
        }
    )


__all__ = [
    "WeakView",
    "load_view_lines",
    "row_view_keys",
    "select_weak_views",
    "to_global",
    "to_scaled",
    "view_rows",
]
