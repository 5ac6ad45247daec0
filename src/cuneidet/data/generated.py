"""Generated annotations (the weak pipeline's aligned and placed signs) as training segments.

The files are the paper's generated-annotation CSVs (method-pipeline.md §1.5, read with
:func:`cuneidet.data.detection_files.read_paper_csv`): global composite-photo pixels, the collection
in ``folder`` (``<collection>/images/``). As the reference trainer does (§1.6), rows with
``align_ratio <= min_align_ratio`` or ``train_label >= num_classes`` are dropped; label 0 stays
(a box taught as background). Each view's boxes become an :class:`AnnotatedSegment` in
segment-local unscaled pixels, and the view's text-line cells (from the pipeline's line stage)
travel with it so the detector can ignore unlabelled anchors on text lines.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from cuneidet.data.csdd import CSDD
from cuneidet.data.detection_files import read_paper_csv
from cuneidet.data.line_geometry import LineCells, MapGrid
from cuneidet.data.views import AnnotatedSegment, segment_from_row
from cuneidet.errors import DataFormatError, DataNotFoundError

log = logging.getLogger(__name__)


def collection_of(folder: str) -> str:
    """The collection named by a generated row's ``folder`` (the part before the first "/")."""
    return str(folder).split("/", 1)[0].strip()


def read_generated(
    paths: Sequence[str | Path], min_align_ratio: float = 0.2, num_classes: int = 240
) -> pd.DataFrame:
    """The rows of all generated CSVs that the trainer uses, with a ``collection`` column."""
    frames = []
    for path in paths:
        frame = read_paper_csv(path)
        frame["collection"] = frame["folder"].map(collection_of)
        if (frame["collection"] == "").any():
            row = int(np.flatnonzero((frame["collection"] == "").to_numpy())[0])
            raise DataFormatError(
                f"{path}: row {row} has no collection in its folder field "
                f"({frame['folder'].iloc[row]!r}); expected '<collection>/images/'"
            )
        frames.append(frame)
    if not frames:
        return pd.DataFrame()
    rows = pd.concat(frames, ignore_index=True)
    keep = (rows["align_ratio"] > min_align_ratio) & (rows["train_label"] < num_classes)
    keep &= rows["train_label"] >= 0
    log.info(
        "generated labels: %d of %d rows kept (align_ratio > %g, 0 <= label < %d)",
        int(keep.sum()),
        len(rows),
        min_align_ratio,
        num_classes,
    )
    return rows[keep].reset_index(drop=True)


def generated_segments(csdd: CSDD, rows: pd.DataFrame) -> list[AnnotatedSegment]:
    """One segment per (collection, segm_idx) of ``rows``, its boxes segment-local unscaled.

    Rows naming a view the CSDD does not have as an assigned segment are skipped with a counted
    warning (a CSV from another data release).
    """
    if rows.empty:
        return []
    collections = sorted(set(rows["collection"]) & set(csdd.collections))
    unknown_collections = sorted(set(rows["collection"]) - set(csdd.collections))
    segments = csdd.segments(collections, assigned_only=True) if collections else None
    index = None if segments is None else segments.set_index(["collection", "segm_idx"])
    result, unknown = [], 0
    for (collection, segm_idx), group in rows.groupby(["collection", "segm_idx"], sort=True):
        if index is None or (collection, segm_idx) not in index.index:
            unknown += len(group)
            continue
        row = {**index.loc[(collection, segm_idx)].to_dict()}
        row |= {"collection": collection, "segm_idx": segm_idx}
        origin = np.array([row["x0"], row["y0"], row["x0"], row["y0"]], np.float64)
        boxes = group[["x1", "y1", "x2", "y2"]].to_numpy(np.float64) - origin
        labels = group["train_label"].to_numpy(np.int64)
        result.append(segment_from_row(row, boxes=boxes.astype(np.float32), labels=labels))
    if unknown:
        log.warning(
            "skipped %d generated rows of views that are not assigned segments of this CSDD%s",
            unknown,
            f" (unknown collections {unknown_collections})" if unknown_collections else "",
        )
    return result


def read_line_cells(json_path: str | Path) -> LineCells:
    """The line cells a line stage wrote for one view (``<stem>.json`` + ``<stem>.npz``)."""
    json_path = Path(json_path)
    npz_path = json_path.with_suffix(".npz")
    if not json_path.is_file() or not npz_path.is_file():
        raise DataNotFoundError(
            f"line artifacts {json_path} / {npz_path.name} are missing; rerun the line stage"
        )
    record = json.loads(json_path.read_text())
    with np.load(npz_path) as maps:
        cells = np.asarray(maps["line_map"], dtype=bool)
    return LineCells(cells=cells, grid=MapGrid(**record["grid"]))


__all__ = [
    "collection_of",
    "generated_segments",
    "read_generated",
    "read_line_cells",
]
