"""Visible transliteration lines of one tablet view, with prior sign widths (Dencker et al. 2020).

A transliteration row is one sign: ``status`` 0 = broken/lost, 1 = intact, 2 = damaged. Only the
*visible* signs (``status > 0``) can be found on the photograph, so lines are built from those and
lines left without any visible sign are dropped. Each sign gets a prior width in the scaled segment
frame (signs are :data:`SIGN_HEIGHT` px high) from ``CSDD.sign_width_priors``; a label without a
prior (0, ≥ 240, or simply absent from the table) is as wide as it is high.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from functools import cached_property
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from cuneidet.errors import DataFormatError

if TYPE_CHECKING:
    from cuneidet.data.csdd import CSDD

SIGN_HEIGHT = 128
"""Sign height in px in the scaled segment frame; the width priors are relative to it."""

DEFAULT_WIDTH_RATIO = 1.0
"""Width ratio of a label without a prior."""

DEFAULT_LEN_RANGE = (4, 12)
"""(min, max) signs per line reported for a view without visible lines (reference defaults)."""

VIEW_COLUMNS = ("tablet_CDLI", "segm_idx")
REQUIRED_COLUMNS = (*VIEW_COLUMNS, "line_idx", "pos_idx", "train_label", "mzl_label", "status")


def _frozen_array(values: np.ndarray, dtype: type) -> np.ndarray:
    array = np.array(values, dtype=dtype).reshape(-1)
    array.flags.writeable = False
    return array


@dataclass(frozen=True, eq=False)
class TransliterationLine:
    """The visible signs of one transliteration line, in reading order (``pos_idx``).

    Arrays are copied and made read-only; equality is identity (arrays have no single truth
    value).
    """

    line_idx: int
    labels: np.ndarray
    mzl: np.ndarray
    pos_idx: np.ndarray
    widths: np.ndarray
    # px from the first visible sign's left edge to the last one's right edge, broken signs
    # between them included; None: no broken sign between visible ones (span = length)
    span_length: float | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "line_idx", int(self.line_idx))
        for name, dtype in (("labels", np.int64), ("mzl", np.int64), ("pos_idx", np.int64)):
            object.__setattr__(self, name, _frozen_array(getattr(self, name), dtype))
        object.__setattr__(self, "widths", _frozen_array(self.widths, np.float64))
        sizes = {n: len(getattr(self, n)) for n in ("labels", "mzl", "pos_idx", "widths")}
        if len(set(sizes.values())) > 1:
            raise DataFormatError(
                f"transliteration line {self.line_idx}: arrays differ in length {sizes}"
            )
        if self.span_length is not None:
            span = float(self.span_length)
            if not np.isfinite(span) or span < self.length:
                raise DataFormatError(
                    f"transliteration line {self.line_idx}: span_length {span} must be finite "
                    f"and ≥ the visible length {self.length}"
                )
            object.__setattr__(self, "span_length", span)

    @cached_property
    def centres(self) -> np.ndarray:
        """x offset (px) of each sign centre from the line start: ``round(cumsum(w) - w / 2)``
        (read-only, computed once: alignment lays every line on many detected lines)."""
        return _frozen_array(np.round(np.cumsum(self.widths) - self.widths / 2), np.float64)

    @cached_property
    def length(self) -> float:
        """Prior line length in px: ``round(sum(widths))``."""
        return float(np.round(self.widths.sum()))

    @property
    def span(self) -> float:
        """Prior length in px of the stretch the visible signs occupy, broken signs between
        them included (``span_length``, or :attr:`length` without one)."""
        return self.length if self.span_length is None else float(self.span_length)

    def __len__(self) -> int:
        return len(self.labels)


@dataclass(frozen=True)
class ViewTransliteration:
    """Visible transliteration lines of one view (lines with ≥ 1 visible sign), by ``line_idx``."""

    lines: list[TransliterationLine]

    @property
    def num_lines(self) -> int:
        """Number of visible lines."""
        return len(self.lines)

    @property
    def lengths(self) -> np.ndarray:
        """Number of visible signs of each line (int)."""
        return np.array([len(line) for line in self.lines], dtype=np.int64)

    @property
    def len_min(self) -> int:
        """Fewest visible signs on a line; ``DEFAULT_LEN_RANGE[0]`` without lines."""
        return int(self.lengths.min()) if self.lines else DEFAULT_LEN_RANGE[0]

    @property
    def len_max(self) -> int:
        """Most visible signs on a line; ``DEFAULT_LEN_RANGE[1]`` without lines."""
        return int(self.lengths.max()) if self.lines else DEFAULT_LEN_RANGE[1]

    @property
    def line_indices(self) -> list[int]:
        """``line_idx`` of each visible line, in order."""
        return [line.line_idx for line in self.lines]


def prior_widths(labels: np.ndarray, width_priors: Mapping[int, tuple[float, float]]) -> np.ndarray:
    """Prior sign widths in px, ``round(width_ratio * SIGN_HEIGHT)`` (ratio 1 without a prior)."""
    ratios = [width_priors.get(int(k), (DEFAULT_WIDTH_RATIO,))[0] for k in labels]
    return np.round(np.asarray(ratios, dtype=np.float64) * SIGN_HEIGHT)


def _check_columns(rows: pd.DataFrame) -> None:
    missing = [c for c in REQUIRED_COLUMNS if c not in rows.columns]
    if missing:
        raise DataFormatError(
            f"transliteration rows lack column(s) {missing}; expected {list(REQUIRED_COLUMNS)} "
            "(as returned by CSDD.transliterations)"
        )


def _check_single_view(rows: pd.DataFrame) -> None:
    tablets, segments = rows["tablet_CDLI"].to_numpy(), rows["segm_idx"].to_numpy()
    if (tablets != tablets[0]).any() or (segments != segments[0]).any():
        views = rows[list(VIEW_COLUMNS)].drop_duplicates()
        pairs = sorted((str(t), int(s)) for t, s in views.itertuples(index=False))
        raise DataFormatError(
            f"transliteration rows mix {len(pairs)} views (tablet, segm_idx): {pairs}; "
            "pass the rows of one view only"
        )
    if "collection" in rows.columns and rows["collection"].nunique() > 1:
        names = sorted(map(str, rows["collection"].unique()))
        raise DataFormatError(
            f"transliteration rows of view {(str(tablets[0]), int(segments[0]))} mix "
            f"collections {names}; pass the rows of one collection only"
        )


def _make_line(
    line_idx: int, signs: dict[str, np.ndarray], width_priors: Mapping[int, tuple[float, float]]
) -> TransliterationLine:
    """The visible signs of one line's columns (all statuses, sorted by ``pos_idx``)."""
    all_widths = prior_widths(signs["train_label"], width_priors)
    visible = signs["status"] > 0
    first, last = np.flatnonzero(visible)[[0, -1]]
    broken_inside = not visible[first : last + 1].all()
    return TransliterationLine(
        line_idx=line_idx,
        labels=signs["train_label"][visible],
        mzl=signs["mzl_label"][visible],
        pos_idx=signs["pos_idx"][visible],
        widths=all_widths[visible],
        span_length=float(all_widths[first : last + 1].sum()) if broken_inside else None,
    )


def prepare_transliteration(
    rows: pd.DataFrame, width_priors: Mapping[int, tuple[float, float]]
) -> ViewTransliteration:
    """Visible lines of one view from its transliteration rows.

    Drops signs with ``status == 0`` and lines left empty; sorts lines by ``line_idx`` and signs
    by ``pos_idx`` (stable). Broken signs between visible ones count towards each line's
    ``span``. A frame without rows gives no lines. Raises :class:`DataFormatError` if a
    required column is missing or the rows mix several views.
    """
    if len(rows) == 0:
        return ViewTransliteration(lines=[])
    _check_columns(rows)
    _check_single_view(rows)
    names = ("line_idx", "pos_idx", "train_label", "mzl_label", "status")
    columns = {name: rows[name].to_numpy(dtype=np.int64) for name in names}
    order = np.lexsort((columns["pos_idx"], columns["line_idx"]))  # stable, line_idx first
    columns = {name: values[order] for name, values in columns.items()}
    line_ids, starts = np.unique(columns["line_idx"], return_index=True)
    lines = []
    for line_idx, lo, hi in zip(line_ids, starts, [*starts[1:], len(order)], strict=True):
        signs = {name: values[lo:hi] for name, values in columns.items()}
        if (signs["status"] > 0).any():
            lines.append(_make_line(int(line_idx), signs, width_priors))
    return ViewTransliteration(lines=lines)


def view_transliteration(
    csdd: CSDD, collection: str, segm_idx: int, tablet: str
) -> ViewTransliteration:
    """Visible lines of view ``(tablet, segm_idx)`` of ``collection``, with CSDD width priors.

    A collection without a transliteration file gives an empty transliteration.
    """
    if collection not in csdd.transliterated_collections:
        return ViewTransliteration(lines=[])
    rows = csdd.view_transliteration_rows(collection, segm_idx, tablet)
    return prepare_transliteration(rows, csdd.sign_width_priors)
