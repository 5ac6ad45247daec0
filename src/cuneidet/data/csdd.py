"""Typed, validated access to the Cuneiform Sign Detection Dataset (CSDD) CSV files.

Layout of ``<data_dir>/csdd/`` (see ``method-detector.md`` §4):

- ``segments/tablet_segments_<collection>.csv``: one row per view segment of a composite photo
  (``segm_idx`` is unique only *within* a collection; only ``assigned`` rows carry a ``scale``);
- ``transliterations/transliterations_<collection>.csv``: one row per transliterated sign;
- ``annotations/bbox_annotations_<set>.csv``: sign boxes (``bbox`` global, ``relative_bbox`` in
  unscaled segment coordinates; empty ``[]`` for ``segm_idx = -1``, i.e. unassigned segments);
- ``annotations/line_annotations_<split>.csv``: text-line polylines in unscaled segment
  coordinates, keyed by ``(segm_idx, tablet_CDLI)`` (no collection column: it is recovered by
  joining on the segments tables, where that pair is unique);
- ``meta/newLabels.json``, ``meta/cunei_mzl.csv``, ``meta/unicode_sign_stats.csv``.

Quirks handled here: the column order of the annotation files differs between sets;
``relative_bbox`` has sub-pixel floats for part of the ``test`` collection (kept as floats);
``view_desc`` is empty for unassigned segments and two assigned ``train`` segments (read as ``""``);
``cunei_mzl.csv`` lists several rows (sign variants) for some MZL numbers (the first row wins).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from cuneidet.data.labels import LabelMap, read_sign_list
from cuneidet.data.registration import shift_columns
from cuneidet.data.tables import (
    bool_column,
    csv_line,
    degenerate_boxes,
    float_column,
    int_column,
    log_skip,
    names_from_files,
    parse_bbox_column,
    read_table,
    select_names,
    text_column,
)
from cuneidet.errors import ConfigError, DataFormatError, DataNotFoundError

log = logging.getLogger(__name__)

WEAK_COLLECTIONS: tuple[str, ...] = ("saa01", "saa05", "saa08", "saa10", "saa13", "saa16")
"""Collections of the weakly supervised training set (transliterations only)."""

BOX_SETS: tuple[str, ...] = (
    "train_full",
    "test_full",
    "train_A",
    "train_B",
    "train_C",
    "train_D",
    "train_E",
    "train_F",
    "saa05",
    "saa06",
    "saa09",
)
"""The published box sets, in display order; :attr:`CSDD.box_sets` lists those actually present."""

LINE_SPLITS: tuple[str, ...] = ("train", "test")
NUM_DETECTOR_CLASSES = 240
"""Detector outputs: 0 = background, 1…239 = sign classes; labels ≥ 240 are out of range."""

SEGMENT_COLUMNS = (
    "segm_idx",
    "tablet_CDLI",
    "view_desc",
    "collection",
    "bbox",
    "scale",
    "assigned",
)
TRANSLITERATION_COLUMNS = (
    "segm_idx",
    "tablet_CDLI",
    "view_desc",
    "rec_idx",
    "line_idx",
    "pos_idx",
    "train_label",
    "mzl_label",
    "status",
)
BOX_COLUMNS = (
    "segm_idx",
    "tablet_CDLI",
    "view_desc",
    "collection",
    "mzl_label",
    "train_label",
    "bbox",
    "relative_bbox",
)
LINE_COLUMNS = ("line_idx", "x", "y", "segm_idx", "tablet_CDLI")
STATS_COLUMNS = ("train_lbl", "width", "height")

REL_COLS = ("rx1", "ry1", "rx2", "ry2")
GLOBAL_COLS = ("gx1", "gy1", "gx2", "gy2")
SEG_COLS = ("x0", "y0", "x1", "y1")


class CSDD:
    """The CSDD metadata under ``<data_dir>/csdd``; parsed tables are cached per instance.

    Accessors return copies, so callers may modify them freely. With ``registration_fixes``
    (default), the segments listed in :data:`cuneidet.data.registration.SEGMENT_SHIFTS` are
    moved to where their view is in the photo we have (segment bbox and the boxes' photo
    coordinates; segment coordinates are unchanged); ``False`` gives the release as it is.
    """

    def __init__(self, data_dir: str | Path, registration_fixes: bool = True) -> None:
        data_dir = Path(data_dir).expanduser().resolve()
        root = data_dir / "csdd"
        if not root.is_dir():
            hint = ""
            if (data_dir / "segments").is_dir():
                hint = f" It looks like the csdd folder itself: use its parent {data_dir.parent}."
            raise DataNotFoundError(
                f"No csdd/ folder in the data directory {data_dir}; pass --data-dir / "
                "data.data_dir or set CUNEIDET_DATA_DIR to the folder that contains csdd/." + hint
            )
        self.data_dir = data_dir
        self.root = root
        self.registration_fixes = bool(registration_fixes)
        self._cache: dict[tuple[str, str], pd.DataFrame] = {}
        self._warned: set[str] = set()

    def __repr__(self) -> str:
        return f"CSDD({str(self.data_dir)!r})"

    # -- discovery ---------------------------------------------------------------------------

    @cached_property
    def collections(self) -> tuple[str, ...]:
        """Collections with a segments file, sorted."""
        return tuple(names_from_files(self.root / "segments", "tablet_segments_"))

    @cached_property
    def transliterated_collections(self) -> tuple[str, ...]:
        """Collections with a transliterations file, sorted."""
        return tuple(names_from_files(self.root / "transliterations", "transliterations_"))

    @cached_property
    def box_sets(self) -> tuple[str, ...]:
        """Box sets with an annotation file: known ones in :data:`BOX_SETS` order, then others."""
        found = names_from_files(self.root / "annotations", "bbox_annotations_")
        return tuple([s for s in BOX_SETS if s in found] + [s for s in found if s not in BOX_SETS])

    @cached_property
    def line_splits(self) -> tuple[str, ...]:
        """Splits with a line annotation file (``train``, ``test``)."""
        return tuple(names_from_files(self.root / "annotations", "line_annotations_"))

    def _path(self, folder: str, name: str) -> Path:
        return self.root / folder / name

    def _cached(self, kind: str, name: str, loader: Any) -> pd.DataFrame:
        key = (kind, name)
        if key not in self._cache:
            self._cache[key] = loader(name)
        return self._cache[key]

    # -- segments ----------------------------------------------------------------------------

    def segments(
        self, collections: Sequence[str] | None = None, assigned_only: bool = True
    ) -> pd.DataFrame:
        """Segments of ``collections`` (all when ``None``).

        Columns: collection, segm_idx, tablet_CDLI, view_desc, x0, y0, x1, y1 (int, composite
        photo), scale (float, NaN when unassigned), assigned (bool).
        """
        names = select_names(collections, self.collections, "collection")
        frames = [self._cached("segments", n, self._load_segments) for n in names]
        frame = pd.concat(frames, ignore_index=True)
        if assigned_only:
            frame = frame[frame["assigned"]].reset_index(drop=True)
        return frame.copy()

    def segment(self, collection: str, segm_idx: int) -> pd.Series:
        """One segment row (assigned or not); ``ConfigError`` when unknown."""
        frame = self.segments([collection], assigned_only=False)
        hit = frame[frame["segm_idx"] == int(segm_idx)]
        if hit.empty:
            raise ConfigError(
                f"Unknown segment {collection}/{segm_idx}: collection {collection!r} has "
                f"segm_idx {frame['segm_idx'].min()}…{frame['segm_idx'].max()} "
                f"({len(frame)} segments)"
            )
        return hit.iloc[0]

    def _load_segments(self, collection: str) -> pd.DataFrame:
        path = self._path("segments", f"tablet_segments_{collection}.csv")
        raw = read_table(path, SEGMENT_COLUMNS)
        bbox = parse_bbox_column(raw["bbox"], path, "bbox")
        frame = pd.DataFrame(
            {
                "collection": collection,
                "segm_idx": int_column(raw, "segm_idx", path),
                "tablet_CDLI": text_column(raw, "tablet_CDLI"),
                "view_desc": text_column(raw, "view_desc"),
                **{c: np.rint(bbox[:, i]).astype(np.int64) for i, c in enumerate(SEG_COLS)},
                "scale": float_column(raw, "scale", path),
                "assigned": bool_column(raw, "assigned", path),
            }
        )
        _check_collection_column(raw, path, collection)
        _check_segments(frame, path)
        degenerate = (frame["x1"] <= frame["x0"]) | (frame["y1"] <= frame["y0"])
        log_skip(int(degenerate.sum()), len(frame), "degenerate bbox", str(path))
        return self._registered(frame[~degenerate].reset_index(drop=True), SEG_COLS, str(path))

    def _registered(self, frame: pd.DataFrame, columns: Sequence[str], where: str) -> pd.DataFrame:
        """``frame`` with the known segment shifts applied to its photo-pixel ``columns``
        (x0, y0, x1, y1 order), when ``registration_fixes`` is on."""
        if not self.registration_fixes:
            return frame
        frame, used = shift_columns(frame, columns[0::2], columns[1::2])
        for shift in used:
            log.info(
                "%s: segment %s/%s of %s moved by (%+d, %+d) px to where its view is in the "
                "photo (cuneidet.data.registration; CSDD(registration_fixes=False) keeps it)",
                where,
                shift.collection,
                shift.segm_idx,
                shift.tablet,
                shift.dx,
                shift.dy,
            )
        return frame

    # -- transliterations --------------------------------------------------------------------

    def transliterations(self, collections: Sequence[str] | None = None) -> pd.DataFrame:
        """Transliterated signs, in file order.

        Columns: collection, segm_idx, tablet_CDLI, view_desc, rec_idx, line_idx, pos_idx,
        train_label, mzl_label, status (ints except the text columns).
        """
        names = select_names(
            collections, self.transliterated_collections, "transliterated collection"
        )
        frames = [self._cached("transliterations", n, self._load_transliterations) for n in names]
        return pd.concat(frames, ignore_index=True).copy()

    def view_transliteration_rows(
        self, collection: str, segm_idx: int, tablet: str
    ) -> pd.DataFrame:
        """Transliterated signs of one view ``(segm_idx, tablet)`` of ``collection``, in file
        order (a copy; empty when the view has none). Each collection's view index is built
        once, so per-view lookups over thousands of views stay cheap."""
        names = select_names(
            [collection], self.transliterated_collections, "transliterated collection"
        )
        frame = self._cached("transliterations", names[0], self._load_transliterations)
        key = ("transliteration_views", names[0])
        if key not in self._cache:
            self._cache[key] = frame.groupby(["segm_idx", "tablet_CDLI"], sort=False).indices
        positions = self._cache[key].get((int(segm_idx), str(tablet)))
        if positions is None:
            return frame.iloc[0:0].copy()
        return frame.iloc[positions].copy()

    def _load_transliterations(self, collection: str) -> pd.DataFrame:
        path = self._path("transliterations", f"transliterations_{collection}.csv")
        raw = read_table(path, TRANSLITERATION_COLUMNS)
        ints = ("segm_idx", "rec_idx", "line_idx", "pos_idx", "train_label", "mzl_label", "status")
        frame = pd.DataFrame(
            {
                "collection": collection,
                "segm_idx": int_column(raw, "segm_idx", path),
                "tablet_CDLI": text_column(raw, "tablet_CDLI"),
                "view_desc": text_column(raw, "view_desc"),
            }
        )
        for column in ints[1:]:
            frame[column] = int_column(raw, column, path)
        return frame

    # -- boxes -------------------------------------------------------------------------------

    def boxes(self, set_name: str) -> pd.DataFrame:
        """Sign boxes of one annotation set, file order.

        Columns: collection, segm_idx, tablet_CDLI, view_desc, mzl_label, train_label (int),
        rx1, ry1, rx2, ry2 (float, relative *unscaled* segment coordinates; integral except a few
        sub-pixel ``test`` boxes), gx1, gy1, gx2, gy2 (int, composite photo). Rows with
        ``segm_idx = -1`` (no assigned segment) and degenerate boxes are dropped with a counted
        warning. All labels are kept (0 and ≥ 240 included).
        """
        raw = self.raw_boxes(set_name)
        where = f"bbox_annotations_{set_name}.csv"
        level = logging.DEBUG if set_name in self._warned else logging.WARNING
        self._warned.add(set_name)  # warn once per set and instance
        unassigned = raw["segm_idx"] < 0
        log_skip(
            int(unassigned.sum()), len(raw), "segm_idx = -1, no assigned segment", where, level
        )
        kept = raw[~unassigned]
        degenerate = degenerate_boxes(kept, REL_COLS) | degenerate_boxes(kept, GLOBAL_COLS)
        what = "degenerate box, x2 ≤ x1 or y2 ≤ y1"
        log_skip(int(degenerate.sum()), len(raw), what, where, level)
        return kept[~degenerate].reset_index(drop=True).copy()

    def raw_boxes(self, set_name: str) -> pd.DataFrame:
        """All rows of an annotation set, ``segm_idx = -1`` rows included (rx* NaN there)."""
        select_names([set_name], self.box_sets, "box set")
        return self._cached("boxes", set_name, self._load_boxes).copy()

    def _load_boxes(self, set_name: str) -> pd.DataFrame:
        path = self._path("annotations", f"bbox_annotations_{set_name}.csv")
        raw = read_table(path, BOX_COLUMNS)
        segm_idx = int_column(raw, "segm_idx", path)
        glob = parse_bbox_column(raw["bbox"], path, "bbox")
        rel = parse_bbox_column(raw["relative_bbox"], path, "relative_bbox", allow_empty=True)
        missing_rel = np.isnan(rel).any(axis=1) & (segm_idx >= 0)
        if missing_rel.any():
            position = int(np.flatnonzero(missing_rel)[0])
            raise DataFormatError(
                f"{path}: row {csv_line(position)} (1-based line incl. header) has an empty "
                f"relative_bbox but segm_idx={segm_idx[position]}; only segm_idx = -1 rows may "
                "lack it"
            )
        frame = pd.DataFrame(
            {
                "collection": text_column(raw, "collection"),
                "segm_idx": segm_idx,
                "tablet_CDLI": text_column(raw, "tablet_CDLI"),
                "view_desc": text_column(raw, "view_desc"),
                "mzl_label": int_column(raw, "mzl_label", path),
                "train_label": int_column(raw, "train_label", path),
                **{c: rel[:, i] for i, c in enumerate(REL_COLS)},
                **{c: np.rint(glob[:, i]).astype(np.int64) for i, c in enumerate(GLOBAL_COLS)},
            }
        )
        return self._registered(frame, GLOBAL_COLS, str(path))

    # -- lines -------------------------------------------------------------------------------

    def lines(self, split: str) -> pd.DataFrame:
        """Text-line polyline points of ``split`` (``train`` or ``test``), file order kept.

        Columns: collection, segm_idx, tablet_CDLI, line_idx, x, y (int, unscaled segment
        coordinates). The collection comes from joining ``(segm_idx, tablet_CDLI)`` with the
        segments tables; points matching no segment are dropped with a warning.
        """
        select_names([split], self.line_splits, "line split")
        return self._cached("lines", split, self._load_lines).copy()

    def _load_lines(self, split: str) -> pd.DataFrame:
        path = self._path("annotations", f"line_annotations_{split}.csv")
        raw = read_table(path, LINE_COLUMNS)
        frame = pd.DataFrame(
            {
                "segm_idx": int_column(raw, "segm_idx", path),
                "tablet_CDLI": text_column(raw, "tablet_CDLI"),
                "line_idx": int_column(raw, "line_idx", path),
                "x": int_column(raw, "x", path),
                "y": int_column(raw, "y", path),
            }
        )
        keys = self._segment_collections(preferred=split)
        joined = frame.merge(keys, on=["segm_idx", "tablet_CDLI"], how="left", sort=False)
        unmatched = joined["collection"].isna()
        log_skip(int(unmatched.sum()), len(joined), "no matching segment", str(path))
        joined = joined[~unmatched].reset_index(drop=True)
        columns = ["collection", "segm_idx", "tablet_CDLI", "line_idx", "x", "y"]
        return joined[columns].astype({"collection": str})

    def _segment_collections(self, preferred: str) -> pd.DataFrame:
        """``(segm_idx, tablet_CDLI) → collection``, one row per pair (``preferred`` first)."""
        order = sorted(self.collections, key=lambda c: c != preferred)
        frame = self.segments(order, assigned_only=False)
        keys = frame[["segm_idx", "tablet_CDLI", "collection"]]
        return keys.drop_duplicates(["segm_idx", "tablet_CDLI"], keep="first")

    # -- meta --------------------------------------------------------------------------------

    @cached_property
    def labels(self) -> LabelMap:
        """MZL ↔ train_label map with sign names and glyphs."""
        mzl_csv = self._path("meta", "cunei_mzl.csv")
        return LabelMap.from_files(
            self._path("meta", "newLabels.json"), mzl_csv if mzl_csv.is_file() else None
        )

    @cached_property
    def sign_list(self) -> dict[int, tuple[str, str]]:
        """MZL number → (sign name, glyph string) from ``meta/cunei_mzl.csv`` (empty if absent)."""
        path = self._path("meta", "cunei_mzl.csv")
        return read_sign_list(path) if path.is_file() else {}

    @cached_property
    def sign_width_priors(self) -> dict[int, tuple[float, float]]:
        """train_label → (width, height) relative to a 128-px sign height."""
        path = self._path("meta", "unicode_sign_stats.csv")
        raw = read_table(path, STATS_COLUMNS)
        labels = int_column(raw, "train_lbl", path)
        width = float_column(raw, "width", path)
        height = float_column(raw, "height", path)
        return {int(k): (float(w), float(h)) for k, w, h in zip(labels, width, height, strict=True)}


def _check_collection_column(raw: pd.DataFrame, path: Path, collection: str) -> None:
    values = set(text_column(raw, "collection")) - {""}
    if values - {collection}:
        log.warning(
            "%s: collection column has %s, expected %r from the file name; using the file name",
            path,
            sorted(values),
            collection,
        )


def _check_segments(frame: pd.DataFrame, path: Path) -> None:
    duplicated = frame["segm_idx"].duplicated()
    if duplicated.any():
        position = int(np.flatnonzero(duplicated.to_numpy())[0])
        raise DataFormatError(
            f"{path}: segm_idx {frame['segm_idx'].iloc[position]} repeats in row "
            f"{csv_line(position)} (1-based line incl. header); segm_idx must be unique"
        )
    scale = frame["scale"].to_numpy()
    bad = frame["assigned"].to_numpy() & ~(np.isfinite(scale) & (scale > 0))
    if bad.any():
        position = int(np.flatnonzero(bad)[0])
        raise DataFormatError(
            f"{path}: row {csv_line(position)} (1-based line incl. header) is an assigned "
            f"segment with scale={scale[position]!r}; assigned segments need a scale > 0"
        )


__all__ = [
    "BOX_SETS",
    "CSDD",
    "LINE_SPLITS",
    "NUM_DETECTOR_CLASSES",
    "WEAK_COLLECTIONS",
]
