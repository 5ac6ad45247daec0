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

import json
import logging
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from cuneidet.data.registration import shift_columns
from cuneidet.errors import ConfigError, DataFormatError, DataNotFoundError

if TYPE_CHECKING:
    from cuneidet.data.sources import PhotoSource

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
MZL_COLUMNS = ("MesZL", "Sign Name", "codepoint_0")
STATS_COLUMNS = ("train_lbl", "width", "height")

REL_COLS = ("rx1", "ry1", "rx2", "ry2")
GLOBAL_COLS = ("gx1", "gy1", "gx2", "gy2")
SEG_COLS = ("x0", "y0", "x1", "y1")

_STRING_COLUMNS = ("tablet_CDLI", "view_desc", "collection", "bbox", "relative_bbox")
_NUM = r"([-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)"
_SEP = r"\s*(?:,\s*|\s+)"
_BBOX_RE = rf"^\s*[\[(]?\s*{_NUM}{_SEP}{_NUM}{_SEP}{_NUM}{_SEP}{_NUM}\s*,?\s*[\])]?\s*$"
_EMPTY_BBOX_RE = r"^\s*(?:[\[(]\s*[\])])?\s*$"
_SEGMENT_KEY_RE = re.compile(r"^\s*([^/\s]+)\s*/\s*(-?\d+)\s*$")


# -- low-level CSV helpers -------------------------------------------------------------------


def read_table(path: Path, required: Sequence[str]) -> pd.DataFrame:
    """Read a CSV, checking that it exists and has the ``required`` columns.

    Text columns stay text (``"NA"`` is not turned into NaN; empty cells are NaN).
    """
    if not path.is_file():
        raise DataNotFoundError(f"CSDD file {path} not found; is the data directory complete?")
    try:
        frame = pd.read_csv(
            path,
            dtype={c: str for c in _STRING_COLUMNS},
            keep_default_na=False,
            na_values=[""],
        )
    except (pd.errors.ParserError, UnicodeDecodeError, pd.errors.EmptyDataError) as exc:
        raise DataFormatError(f"{path}: cannot be parsed as CSV ({exc})") from exc
    missing = [c for c in required if c not in frame.columns]
    if missing:
        raise DataFormatError(
            f"{path}: missing required column(s) {missing}; expected columns: {list(required)}; "
            f"found: {list(frame.columns)}"
        )
    return frame


def _csv_line(position: int) -> int:
    """1-based line number in the CSV (header = line 1) of the data row at ``position``."""
    return int(position) + 2


def int_column(frame: pd.DataFrame, column: str, path: Path) -> np.ndarray:
    """The column as int64; a missing or non-integer value raises naming file, row and value."""
    values = frame[column]
    if pd.api.types.is_integer_dtype(values.dtype):
        return values.to_numpy(dtype=np.int64)
    numbers = pd.to_numeric(values, errors="coerce").to_numpy(dtype=np.float64)
    bad = ~np.isfinite(numbers) | (numbers != np.round(numbers))
    if bad.any():
        position = int(np.flatnonzero(bad)[0])
        raise DataFormatError(
            f"{path}: row {_csv_line(position)} (1-based line incl. header) has "
            f"{column}={values.iloc[position]!r}; expected an integer"
        )
    return numbers.astype(np.int64)


def float_column(frame: pd.DataFrame, column: str, path: Path) -> np.ndarray:
    """The column as float64 (empty cells → NaN); a non-numeric value raises with file and row."""
    values = frame[column]
    numbers = pd.to_numeric(values, errors="coerce").to_numpy(dtype=np.float64)
    bad = np.isnan(numbers) & values.notna().to_numpy()
    if bad.any():
        position = int(np.flatnonzero(bad)[0])
        raise DataFormatError(
            f"{path}: row {_csv_line(position)} (1-based line incl. header) has "
            f"{column}={values.iloc[position]!r}; expected a number"
        )
    return numbers


def bool_column(frame: pd.DataFrame, column: str, path: Path) -> np.ndarray:
    """The column as bool (``True/False``, ``1/0``, ``yes/no``; case-insensitive)."""
    values = frame[column]
    if pd.api.types.is_bool_dtype(values.dtype):
        return values.to_numpy(dtype=bool)
    text = values.astype(str).str.strip().str.lower()
    truthy = text.isin(["true", "1", "1.0", "yes", "y", "t"])
    falsy = text.isin(["false", "0", "0.0", "no", "n", "f"])
    bad = ~(truthy | falsy)
    if bad.any():
        position = int(np.flatnonzero(bad.to_numpy())[0])
        raise DataFormatError(
            f"{path}: row {_csv_line(position)} (1-based line incl. header) has "
            f"{column}={values.iloc[position]!r}; expected True or False"
        )
    return truthy.to_numpy(dtype=bool)


def text_column(frame: pd.DataFrame, column: str) -> np.ndarray:
    """The column as an object array of ``str`` (missing → ``""``)."""
    return frame[column].fillna("").astype(str).str.strip().to_numpy(dtype=object)


def parse_bbox_column(
    values: pd.Series, path: Path | str, column: str, allow_empty: bool = False
) -> np.ndarray:
    """Parse box strings like ``"[805, 1979, 871, 2055]"`` into a float64 array ``[N, 4]``.

    Vectorised (one regex pass). Empty cells / ``"[]"`` become NaN rows when ``allow_empty``;
    otherwise, like any malformed value, they raise :class:`DataFormatError` naming the file,
    the 1-based CSV line (header = line 1) and the value.
    """
    text = values.astype(object).where(values.notna(), "").astype(str)
    parts = text.str.extract(_BBOX_RE)
    out = parts.apply(pd.to_numeric, errors="coerce").to_numpy(dtype=np.float64).reshape(-1, 4)
    failed = np.isnan(out).any(axis=1)
    if allow_empty:
        failed &= ~text.str.match(_EMPTY_BBOX_RE).to_numpy(dtype=bool)
    if failed.any():
        position = int(np.flatnonzero(failed)[0])
        raise DataFormatError(
            f"{path}: malformed {column} {text.iloc[position]!r} in row {_csv_line(position)} "
            f"(1-based line incl. header; {int(failed.sum())} bad value(s) in total); "
            "expected '[x1, y1, x2, y2]'"
        )
    return out


def parse_segment_key(key: str) -> tuple[str, int]:
    """``"saa06/123"`` → ``("saa06", 123)``; raises :class:`ConfigError` when malformed."""
    match = _SEGMENT_KEY_RE.match(str(key))
    if match is None:
        raise ConfigError(
            f"Bad segment key {key!r}: expected '<collection>/<segm_idx>', e.g. test/3"
        )
    return match.group(1), int(match.group(2))


def _names_from_files(folder: Path, prefix: str) -> list[str]:
    if not folder.is_dir():
        return []
    return sorted(p.stem[len(prefix) :] for p in folder.glob(f"{prefix}*.csv"))


def _select(requested: Iterable[str] | None, valid: Sequence[str], what: str) -> list[str]:
    """Validate a selection of names (``None`` = all); duplicates are removed, order kept."""
    if isinstance(requested, str):
        requested = [requested]
    names = list(valid) if requested is None else list(dict.fromkeys(requested))
    if not names:
        raise ConfigError(f"Empty {what} selection; valid names: {', '.join(valid) or '(none)'}")
    unknown = [n for n in names if n not in valid]
    if unknown:
        raise ConfigError(
            f"Unknown {what}(s) {unknown}; valid names: {', '.join(valid) or '(none found)'}"
        )
    return names


def _log_skip(count: int, total: int, what: str, where: str, level: int = logging.WARNING) -> None:
    if count:
        log.log(level, "%s: skipped %d of %d rows (%s)", where, count, total, what)


# -- label map -------------------------------------------------------------------------------


@dataclass(frozen=True)
class LabelMap:
    """MZL sign numbers ↔ ``train_label`` plus sign names and Unicode glyphs.

    ``train_label`` 0 means unmapped / background. Non-zero labels are unique, so the inverse
    map is well defined.
    """

    mzl_to_label: Mapping[int, int]
    label_to_mzl: Mapping[int, int]
    names: Mapping[int, str] = field(default_factory=dict)
    glyphs: Mapping[int, str] = field(default_factory=dict)

    @property
    def max_label(self) -> int:
        """The largest ``train_label`` in use (374 for the CSDD)."""
        return max(self.label_to_mzl, default=0)

    @property
    def num_labels(self) -> int:
        """Number of non-zero labels."""
        return len(self.label_to_mzl)

    def train_label(self, mzl: int) -> int:
        """``train_label`` of an MZL number; 0 when the sign is unmapped."""
        return int(self.mzl_to_label.get(int(mzl), 0))

    def mzl(self, train_label: int) -> int:
        """MZL number of a non-zero ``train_label``."""
        label = self.validate(train_label)
        if label == 0:
            raise ConfigError("train_label 0 (background/unmapped) has no single MZL number")
        return int(self.label_to_mzl[label])

    def name(self, train_label: int) -> str:
        """Sign name: ``"background"`` for 0, ``"MZL<n>"`` when the sign list lacks the sign,
        ``"#<label>"`` for a label the map does not know (no error; see :meth:`validate`)."""
        label = int(train_label)
        if label == 0:
            return "background"
        if label not in self.label_to_mzl:
            return f"#{label}"
        return self.names.get(label) or f"MZL{self.label_to_mzl[label]}"

    def glyph(self, train_label: int) -> str:
        """Unicode string of the sign (code points concatenated); ``""`` if it has none."""
        return self.glyphs.get(int(train_label), "")

    def validate(self, train_label: int) -> int:
        """Return ``train_label`` as int if it is 0 or a known label, else raise ``ConfigError``."""
        try:
            label = int(train_label)
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"train_label {train_label!r} is not an integer") from exc
        if label != train_label or (label != 0 and label not in self.label_to_mzl):
            raise ConfigError(
                f"Unknown train_label {train_label!r}: valid labels are 0 (background/unmapped) "
                f"and {self.num_labels} sign labels in 1…{self.max_label}"
            )
        return label

    @classmethod
    def from_files(cls, new_labels: Path, mzl_csv: Path | None = None) -> LabelMap:
        """Build from ``newLabels.json`` (index = MZL number) and optionally ``cunei_mzl.csv``."""
        mzl_to_label = _read_new_labels(new_labels)
        label_to_mzl = {label: mzl for mzl, label in mzl_to_label.items()}
        names: dict[int, str] = {}
        glyphs: dict[int, str] = {}
        if mzl_csv is not None:
            signs = _read_sign_list(mzl_csv)
            for label, mzl in label_to_mzl.items():
                if mzl in signs:
                    names[label], glyphs[label] = signs[mzl]
        return cls(mzl_to_label, label_to_mzl, names, glyphs)


def _read_new_labels(path: Path) -> dict[int, int]:
    if not path.is_file():
        raise DataNotFoundError(f"CSDD file {path} not found; is the data directory complete?")
    try:
        values = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise DataFormatError(f"{path}: not valid JSON ({exc})") from exc
    if isinstance(values, dict):  # tolerate {"<mzl>": label}
        items = [(int(k), v) for k, v in values.items()]
    elif isinstance(values, list):
        items = list(enumerate(values))
    else:
        raise DataFormatError(f"{path}: expected a JSON list indexed by MZL number")
    mapping: dict[int, int] = {}
    seen: dict[int, int] = {}
    for mzl, label in items:
        if not isinstance(label, int) or isinstance(label, bool) or label < 0:
            raise DataFormatError(f"{path}: entry {mzl} is {label!r}; expected an int ≥ 0")
        if label == 0:
            continue
        if label in seen:
            raise DataFormatError(
                f"{path}: train_label {label} is used by MZL {seen[label]} and {mzl}; "
                "non-zero labels must be unique"
            )
        seen[label] = mzl
        mapping[mzl] = label
    return mapping


def _read_sign_list(path: Path) -> dict[int, tuple[str, str]]:
    """MZL number → (sign name, glyph string); the first row of a repeated MZL number wins."""
    frame = read_table(path, MZL_COLUMNS)
    mzl = int_column(frame, "MesZL", path)
    names = text_column(frame, "Sign Name")
    cp_columns = sorted(
        (c for c in frame.columns if re.fullmatch(r"codepoint_\d+", str(c))),
        key=lambda c: int(str(c).split("_")[1]),
    )
    signs: dict[int, tuple[str, str]] = {}
    for row, number in enumerate(mzl):
        if number in signs:
            continue
        glyph = "".join(_codepoint_char(frame[c].iloc[row], path, row) for c in cp_columns)
        signs[int(number)] = (names[row], glyph)
    return signs


def _codepoint_char(value: Any, path: Path, row: int) -> str:
    if value is None or (isinstance(value, float) and np.isnan(value)) or pd.isna(value):
        return ""
    text = str(value).strip()
    if not text:
        return ""
    match = re.fullmatch(r"(?:U\+|0x)?([0-9A-Fa-f]{4,6})", text)
    if match is None:
        raise DataFormatError(
            f"{path}: row {_csv_line(row)} (1-based line incl. header) has code point "
            f"{text!r}; expected 'U+XXXXX'"
        )
    return chr(int(match.group(1), 16))


# -- the dataset -----------------------------------------------------------------------------


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
        return tuple(_names_from_files(self.root / "segments", "tablet_segments_"))

    @cached_property
    def transliterated_collections(self) -> tuple[str, ...]:
        """Collections with a transliterations file, sorted."""
        return tuple(_names_from_files(self.root / "transliterations", "transliterations_"))

    @cached_property
    def box_sets(self) -> tuple[str, ...]:
        """Box sets with an annotation file: known ones in :data:`BOX_SETS` order, then others."""
        found = _names_from_files(self.root / "annotations", "bbox_annotations_")
        return tuple([s for s in BOX_SETS if s in found] + [s for s in found if s not in BOX_SETS])

    @cached_property
    def line_splits(self) -> tuple[str, ...]:
        """Splits with a line annotation file (``train``, ``test``)."""
        return tuple(_names_from_files(self.root / "annotations", "line_annotations_"))

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
        names = _select(collections, self.collections, "collection")
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
        _log_skip(int(degenerate.sum()), len(frame), "degenerate bbox", str(path))
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
        names = _select(collections, self.transliterated_collections, "transliterated collection")
        frames = [self._cached("transliterations", n, self._load_transliterations) for n in names]
        return pd.concat(frames, ignore_index=True).copy()

    def view_transliteration_rows(
        self, collection: str, segm_idx: int, tablet: str
    ) -> pd.DataFrame:
        """Transliterated signs of one view ``(segm_idx, tablet)`` of ``collection``, in file
        order (a copy; empty when the view has none). Each collection's view index is built
        once, so per-view lookups over thousands of views stay cheap."""
        names = _select([collection], self.transliterated_collections, "transliterated collection")
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
        _log_skip(
            int(unassigned.sum()), len(raw), "segm_idx = -1, no assigned segment", where, level
        )
        kept = raw[~unassigned]
        degenerate = _degenerate(kept, REL_COLS) | _degenerate(kept, GLOBAL_COLS)
        what = "degenerate box, x2 ≤ x1 or y2 ≤ y1"
        _log_skip(int(degenerate.sum()), len(raw), what, where, level)
        return kept[~degenerate].reset_index(drop=True).copy()

    def raw_boxes(self, set_name: str) -> pd.DataFrame:
        """All rows of an annotation set, ``segm_idx = -1`` rows included (rx* NaN there)."""
        _select([set_name], self.box_sets, "box set")
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
                f"{path}: row {_csv_line(position)} (1-based line incl. header) has an empty "
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
        _select([split], self.line_splits, "line split")
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
        _log_skip(int(unmatched.sum()), len(joined), "no matching segment", str(path))
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
        return _read_sign_list(path) if path.is_file() else {}

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
            f"{_csv_line(position)} (1-based line incl. header); segm_idx must be unique"
        )
    scale = frame["scale"].to_numpy()
    bad = frame["assigned"].to_numpy() & ~(np.isfinite(scale) & (scale > 0))
    if bad.any():
        position = int(np.flatnonzero(bad)[0])
        raise DataFormatError(
            f"{path}: row {_csv_line(position)} (1-based line incl. header) is an assigned "
            f"segment with scale={scale[position]!r}; assigned segments need a scale > 0"
        )


def _degenerate(frame: pd.DataFrame, cols: Sequence[str]) -> pd.Series:
    x1, y1, x2, y2 = (frame[c] for c in cols)
    return (x2 <= x1) | (y2 <= y1)


# -- annotated segments ----------------------------------------------------------------------


@dataclass
class AnnotatedSegment:
    """One assigned segment with its ground-truth boxes (relative, *unscaled* coordinates)."""

    collection: str
    segm_idx: int
    tablet: str
    view: str
    bbox: tuple[int, int, int, int]
    scale: float
    boxes: np.ndarray = field(default_factory=lambda: np.zeros((0, 4), np.float32))
    labels: np.ndarray = field(default_factory=lambda: np.zeros((0,), np.int64))

    def __post_init__(self) -> None:
        self.bbox = tuple(int(v) for v in self.bbox)  # type: ignore[assignment]
        self.boxes = np.asarray(self.boxes, dtype=np.float32).reshape(-1, 4)
        self.labels = np.asarray(self.labels, dtype=np.int64).reshape(-1)
        if len(self.boxes) != len(self.labels):
            raise ValueError(f"{self.key}: {len(self.boxes)} boxes but {len(self.labels)} labels")

    @property
    def key(self) -> str:
        """``"collection/segm_idx"``, unique over the whole dataset."""
        return f"{self.collection}/{self.segm_idx}"

    @property
    def name(self) -> str:
        """``"tablet view"`` (just the tablet when the view is unknown)."""
        return f"{self.tablet} {self.view}".strip()

    @property
    def size(self) -> tuple[int, int]:
        """Unscaled segment ``(width, height)``."""
        x0, y0, x1, y1 = self.bbox
        return x1 - x0, y1 - y0

    def scaled_boxes(self) -> np.ndarray:
        """Boxes in scaled segment coordinates (``boxes × scale``), float32 ``[N, 4]``."""
        return (self.boxes.astype(np.float64) * self.scale).astype(np.float32)


def segment_from_row(
    row: Mapping[str, Any] | pd.Series,
    boxes: np.ndarray | None = None,
    labels: np.ndarray | None = None,
) -> AnnotatedSegment:
    """An :class:`AnnotatedSegment` from a :meth:`CSDD.segments` row (no boxes by default)."""
    return AnnotatedSegment(
        collection=str(row["collection"]),
        segm_idx=int(row["segm_idx"]),
        tablet=str(row["tablet_CDLI"]),
        view=str(row["view_desc"]),
        bbox=tuple(int(row[c]) for c in SEG_COLS),  # type: ignore[arg-type]
        scale=float(row["scale"]),
        boxes=np.zeros((0, 4), np.float32) if boxes is None else boxes,
        labels=np.zeros((0,), np.int64) if labels is None else labels,
    )


_BOX_KEY = ["collection", "segm_idx", "mzl_label", "train_label", *REL_COLS, *GLOBAL_COLS]


def union_boxes(csdd: CSDD, sets: Sequence[str]) -> pd.DataFrame:
    """Boxes of several sets as a *multiset union*: a row present in several sets is kept once.

    Each row is keyed by its content plus its occurrence number within its own set, so naming
    a set twice (or ``train_full`` and its part ``saa09``) adds nothing, while genuine repeated
    rows inside one file are kept. Order: first appearance (sets in the given order).
    """
    names = _select(sets, csdd.box_sets, "box set")
    frames = []
    for name in names:
        boxes = csdd.boxes(name)
        boxes["_occurrence"] = boxes.groupby(_BOX_KEY, sort=False).cumcount()
        frames.append(boxes)
    merged = pd.concat(frames, ignore_index=True)
    merged = merged.drop_duplicates([*_BOX_KEY, "_occurrence"], keep="first")
    return merged.drop(columns="_occurrence").reset_index(drop=True)


def annotated_segments(csdd: CSDD, sets: Sequence[str]) -> list[AnnotatedSegment]:
    """Assigned segments carrying boxes of the union of ``sets``, ordered by (collection, segm_idx).

    Boxes of segments that are not assigned (or not in the segments table) are skipped with a
    counted warning; labels are kept unfiltered (0 and ≥ 240 included).
    """
    boxes = union_boxes(csdd, sets)
    if boxes.empty:
        log.warning("box set(s) %s contain no boxes on assigned segments", list(sets))
        return []
    present = sorted(set(boxes["collection"]) & set(csdd.collections))
    if present:
        index = csdd.segments(present, assigned_only=True).set_index(["collection", "segm_idx"])
    else:
        index = pd.DataFrame(index=pd.MultiIndex.from_tuples([], names=["collection", "segm_idx"]))
    result: list[AnnotatedSegment] = []
    skipped_rows = skipped_segments = 0
    for (collection, segm_idx), group in boxes.groupby(["collection", "segm_idx"], sort=True):
        if (collection, segm_idx) not in index.index:
            skipped_rows += len(group)
            skipped_segments += 1
            continue
        row = index.loc[(collection, segm_idx)]
        row = {**row.to_dict(), "collection": collection, "segm_idx": segm_idx}
        result.append(
            segment_from_row(
                row,
                boxes=group[list(REL_COLS)].to_numpy(np.float32),
                labels=group["train_label"].to_numpy(np.int64),
            )
        )
    if skipped_segments:
        log.warning(
            "box set(s) %s: skipped %d boxes on %d segments that are not assigned (or unknown)",
            list(sets),
            skipped_rows,
            skipped_segments,
        )
    return result


# -- summary ---------------------------------------------------------------------------------


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
    names = _select(sets, csdd.box_sets, "box set")
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
    "BOX_SETS",
    "CSDD",
    "LINE_SPLITS",
    "NUM_DETECTOR_CLASSES",
    "WEAK_COLLECTIONS",
    "AnnotatedSegment",
    "LabelMap",
    "annotated_segments",
    "annotated_tablets",
    "box_set_summary",
    "collection_summary",
    "dataset_summary",
    "parse_bbox_column",
    "parse_segment_key",
    "photo_summary",
    "read_table",
    "segment_from_row",
    "union_boxes",
    "weak_set_summary",
]
