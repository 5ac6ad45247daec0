"""Reading and validating CSV tables: required columns, typed columns whose bad cells are
reported by file and line, bbox strings, ``<collection>/<segm_idx>`` keys and name selections.

Used by :class:`cuneidet.data.csdd.CSDD` for the CSDD files; errors name the file, the 1-based
line (header = line 1) and what a valid value looks like.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from cuneidet.errors import ConfigError, DataFormatError, DataNotFoundError

log = logging.getLogger(__name__)

_STRING_COLUMNS = ("tablet_CDLI", "view_desc", "collection", "bbox", "relative_bbox")
_NUM = r"([-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)"
_SEP = r"\s*(?:,\s*|\s+)"
_BBOX_RE = rf"^\s*[\[(]?\s*{_NUM}{_SEP}{_NUM}{_SEP}{_NUM}{_SEP}{_NUM}\s*,?\s*[\])]?\s*$"
_EMPTY_BBOX_RE = r"^\s*(?:[\[(]\s*[\])])?\s*$"
_SEGMENT_KEY_RE = re.compile(r"^\s*([^/\s]+)\s*/\s*(-?\d+)\s*$")


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


def csv_line(position: int) -> int:
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
            f"{path}: row {csv_line(position)} (1-based line incl. header) has "
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
            f"{path}: row {csv_line(position)} (1-based line incl. header) has "
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
            f"{path}: row {csv_line(position)} (1-based line incl. header) has "
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
            f"{path}: malformed {column} {text.iloc[position]!r} in row {csv_line(position)} "
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


def names_from_files(folder: Path, prefix: str) -> list[str]:
    if not folder.is_dir():
        return []
    return sorted(p.stem[len(prefix) :] for p in folder.glob(f"{prefix}*.csv"))


def select_names(requested: Iterable[str] | None, valid: Sequence[str], what: str) -> list[str]:
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


def log_skip(count: int, total: int, what: str, where: str, level: int = logging.WARNING) -> None:
    if count:
        log.log(level, "%s: skipped %d of %d rows (%s)", where, count, total, what)


def degenerate_boxes(frame: pd.DataFrame, cols: Sequence[str]) -> pd.Series:
    x1, y1, x2, y2 = (frame[c] for c in cols)
    return (x2 <= x1) | (y2 <= y1)


__all__ = [
    "bool_column",
    "csv_line",
    "degenerate_boxes",
    "float_column",
    "int_column",
    "log_skip",
    "names_from_files",
    "parse_bbox_column",
    "parse_segment_key",
    "read_table",
    "select_names",
    "text_column",
]
