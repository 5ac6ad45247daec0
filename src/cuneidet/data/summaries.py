"""Counts of the CSDD for ``cuneidet-data check``: box sets, collections, the weak set and the
photographs a source lacks (they reproduce the dataset README)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pandas as pd

from cuneidet.data.csdd import CSDD, NUM_DETECTOR_CLASSES, WEAK_COLLECTIONS
from cuneidet.data.sources import PhotoSource
from cuneidet.data.tables import select_names


def _in_range(labels: pd.Series) -> pd.Series:
    return (labels >= 1) & (labels < NUM_DETECTOR_CLASSES)


def box_set_summary(csdd: CSDD, set_name: str) -> dict[str, int]:
    """Counts of one box set (definitions in :func:`dataset_summary`)."""
    raw = csdd.raw_boxes(set_name)
    assigned = csdd.segments(assigned_only=True)[["collection", "segm_idx"]]
    on_segment = raw.merge(assigned, on=["collection", "segm_idx"], how="left", indicator=True)
    on_assigned = (on_segment["_merge"] == "both").to_numpy()
    in_range = _in_range(raw["train_label"]).to_numpy()
    segments = raw.loc[raw["segm_idx"] >= 0, ["collection", "segm_idx"]].drop_duplicates()
    return {
        "rows": len(raw),
        "in_range_boxes": int(in_range.sum()),
        "in_range_boxes_assigned": int((in_range & on_assigned).sum()),
        "label_0": int((raw["train_label"] == 0).sum()),
        "label_out_of_range": int((raw["train_label"] >= NUM_DETECTOR_CLASSES).sum()),
        "unassigned_rows": int((raw["segm_idx"] < 0).sum()),
        "segments": len(segments),
        "tablets": int(raw["tablet_CDLI"].nunique()),
    }


def collection_summary(csdd: CSDD, collection: str) -> dict[str, int]:
    """Counts of one collection (definitions in :func:`dataset_summary`)."""
    segments = csdd.segments([collection], assigned_only=False)
    summary = {
        "segments": len(segments),
        "assigned_segments": int(segments["assigned"].sum()),
        "tablets": int(segments["tablet_CDLI"].nunique()),
        "transliterated_signs": 0,
        "transliterated_segments": 0,
    }
    if collection in csdd.transliterated_collections:
        signs = csdd.transliterations([collection])
        summary["transliterated_signs"] = len(signs)
        summary["transliterated_segments"] = int(signs["segm_idx"].nunique())
    return summary


def weak_set_summary(csdd: CSDD) -> dict[str, Any]:
    """Assigned segments of :data:`WEAK_COLLECTIONS` that have at least one transliterated sign."""
    present = [
        c
        for c in WEAK_COLLECTIONS
        if c in csdd.collections and c in csdd.transliterated_collections
    ]
    if not present:
        return {"collections": [], "segments": 0, "tablets": 0, "signs": 0}
    segments = csdd.segments(present, assigned_only=True)
    signs = csdd.transliterations(present)
    keys = signs[["collection", "segm_idx"]].drop_duplicates()
    weak = segments.merge(keys, on=["collection", "segm_idx"], how="inner")
    used = signs.merge(weak[["collection", "segm_idx"]], on=["collection", "segm_idx"])
    return {
        "collections": present,
        "segments": len(weak),
        "tablets": int(weak["tablet_CDLI"].nunique()),
        "signs": len(used),
    }


def annotated_tablets(csdd: CSDD, sets: Sequence[str] | None = None) -> list[str]:
    """Tablets of the assigned segments with boxes in ``sets`` (all box sets), sorted."""
    names = select_names(sets, csdd.box_sets, "box set")
    keys = pd.concat([csdd.raw_boxes(n)[["collection", "segm_idx"]] for n in names])
    assigned = csdd.segments(assigned_only=True)[["collection", "segm_idx", "tablet_CDLI"]]
    used = keys.drop_duplicates().merge(assigned, on=["collection", "segm_idx"], how="inner")
    return sorted(set(used["tablet_CDLI"]))


def photo_summary(
    csdd: CSDD, source: PhotoSource, sets: Sequence[str] | None = None
) -> dict[str, Any]:
    """Which photographs of the annotated tablets ``source`` lacks."""
    tablets = annotated_tablets(csdd, sets)
    missing = [t for t in tablets if not source.has(t)]
    return {
        "source": source.describe() if hasattr(source, "describe") else repr(source),
        "tablets": len(tablets),
        "missing_count": len(missing),
        "missing": missing,
    }


def dataset_summary(csdd: CSDD, photo_source: PhotoSource | None = None) -> dict[str, Any]:
    """Counts for ``cuneidet-data check``; they reproduce the dataset README.

    Definitions (they give train_full 4,663 / 67 / 47, test_full 3,446 / 57 / 34 and the weak
    set 2,983 segments / 1,745 tablets on the real data):

    - box set ``rows``: all rows of ``bbox_annotations_<set>.csv``;
      ``in_range_boxes``: rows with ``1 ≤ train_label < 240``, counted over *all* rows, the
      ``segm_idx = -1`` rows included (the README's "label 1…240"; no box has label 240);
      ``in_range_boxes_assigned``: the same, restricted to rows on assigned segments (what a
      detector can train on: 4,420 for train_full); ``segments``: distinct
      ``(collection, segm_idx)`` with ``segm_idx ≥ 0``; ``tablets``: distinct ``tablet_CDLI`` over
      all rows (equal to the count over assigned rows on the real data).
    - collection ``segments``: rows of the segments file; ``assigned_segments``: ``assigned``
      rows; ``tablets``: distinct ``tablet_CDLI`` in the segments file (assigned or not);
      ``transliterated_signs``: rows of the transliterations file (every sign position,
      ``train_label`` 0 included); ``transliterated_segments``: distinct segments in it.
    - weak set: assigned segments of :data:`WEAK_COLLECTIONS` with ≥ 1 transliterated sign
      (``segments``), their distinct ``tablet_CDLI`` (``tablets``) and transliteration rows
      (``signs``; 254,369 on the real data, not the README's 185,399, which no simple filter
      reproduces).
    - photos: tablets of the assigned annotated segments of all box sets that ``photo_source``
      does not have.
    """
    summary: dict[str, Any] = {
        "data_dir": str(csdd.data_dir),
        "box_sets": {s: box_set_summary(csdd, s) for s in csdd.box_sets},
        "collections": {c: collection_summary(csdd, c) for c in csdd.collections},
        "weak_set": weak_set_summary(csdd),
    }
    if photo_source is not None:
        summary["photos"] = photo_summary(csdd, photo_source)
    return summary


__all__ = [
    "annotated_tablets",
    "box_set_summary",
    "collection_summary",
    "dataset_summary",
    "photo_summary",
    "weak_set_summary",
]
