"""Segments whose composite photo is framed differently from the one their boxes were drawn on.

The CSDD's boxes (``relative_bbox``) and text lines are in segment coordinates, placed in the
composite photo by the segment's ``bbox``. For a few tablets the photo that the release points to
(and that we read) is another framing of the same photograph than the one the annotators used:
the signs are there, at the same scale, but the segment sits elsewhere in the photo. Moving the
segment's ``bbox`` (and the boxes' photo coordinates) by a fixed shift puts every box back on its
sign; segment coordinates do not change.

Each shift was found by searching translations (and scales, which came out at 1) for the best fit
of the view's box centres to the text lines a line network finds on the photo
(``scripts/register_segment.py``), and then checked by eye on the overlay of boxes and line
annotations that the script writes. Views whose fit stays ambiguous are not listed; they are left to
``data.exclude_train_tablets`` / ``evaluate.set_aside_tablets`` (P336663b Obv: its boxes fit no
position of the photo we have).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import pandas as pd


@dataclass(frozen=True)
class SegmentShift:
    """Move segment ``segm_idx`` of ``tablet`` (``collection``) by ``(dx, dy)`` photo pixels."""

    collection: str
    tablet: str
    segm_idx: int
    dx: int
    dy: int
    photo_size: tuple[int, int]  # (width, height) of the photo the shift was measured on
    evidence: str


SEGMENT_SHIFTS: tuple[SegmentShift, ...] = (
    SegmentShift(
        collection="test",
        tablet="K09237Vs",
        segm_idx=26,
        dx=373,
        dy=60,
        photo_size=(1772, 2779),
        evidence=(
            "fat-cross photo; the released bbox [27, 0, 965, 837] holds the left edge and half "
            "the obverse (0.175 of the 120 box centres on detected text lines, mean p(line) "
            "0.24 at them). At (+373, +60) the mean p(line) is 0.96, every box sits on its sign "
            "and every annotated line on its text line; layout scales 0.85-1.15 and rotations "
            "of ±4° fit worse than 1 and 0°. x is certain to about ±8 px (p ≥ 0.95 over "
            "+365…+381)."
        ),
    ),
)
"""The known shifts. Photo frame only: segment and scaled coordinates are unchanged."""


def _matches(frame: pd.DataFrame, shift: SegmentShift) -> pd.Series:
    return (
        (frame["collection"] == shift.collection)
        & (frame["tablet_CDLI"] == shift.tablet)
        & (frame["segm_idx"] == shift.segm_idx)
    )


def shift_columns(
    frame: pd.DataFrame,
    x_columns: Sequence[str],
    y_columns: Sequence[str],
    shifts: Sequence[SegmentShift] = SEGMENT_SHIFTS,
) -> tuple[pd.DataFrame, list[SegmentShift]]:
    """``frame`` with the photo-pixel columns of every listed segment shifted; the shifts used.

    ``frame`` needs ``collection``, ``tablet_CDLI`` and ``segm_idx`` columns; a copy is returned.
    """
    frame = frame.copy()
    used = []
    for shift in shifts:
        rows = _matches(frame, shift)
        if not rows.any():
            continue
        used.append(shift)
        for column in x_columns:
            frame.loc[rows, column] += shift.dx
        for column in y_columns:
            frame.loc[rows, column] += shift.dy
    return frame, used
