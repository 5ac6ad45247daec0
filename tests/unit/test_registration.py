"""Segments moved to where their view is in the photo (cuneidet.data.registration)."""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from cuneidet.data.csdd import CSDD
from cuneidet.data.line_geometry import MapGrid
from cuneidet.data.location import resolve_data_dir
from cuneidet.data.registration import SEGMENT_SHIFTS, SegmentShift, shift_columns
from cuneidet.errors import DataNotFoundError
from cuneidet.lines.audit import shift_scores

SHIFT = SegmentShift("test", "T1", 3, dx=10, dy=-4, photo_size=(100, 100), evidence="test")


def _frame() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "collection": ["test", "test", "train"],
            "tablet_CDLI": ["T1", "T1", "T1"],
            "segm_idx": [3, 4, 3],  # only the first row is segment test/3 of T1
            "x0": [5, 5, 5],
            "y0": [6, 6, 6],
            "x1": [50, 50, 50],
            "y1": [60, 60, 60],
        }
    )


def test_shift_moves_only_the_listed_segment() -> None:
    frame = _frame()
    moved, used = shift_columns(frame, ["x0", "x1"], ["y0", "y1"], [SHIFT])
    assert used == [SHIFT]
    assert moved.iloc[0][["x0", "y0", "x1", "y1"]].tolist() == [15, 2, 60, 56]
    pd.testing.assert_frame_equal(moved.iloc[1:], frame.iloc[1:])
    assert frame["x0"].tolist() == [5, 5, 5]  # the input is left alone


def test_no_matching_segment_uses_no_shift() -> None:
    frame = _frame().iloc[1:]
    moved, used = shift_columns(frame, ["x0", "x1"], ["y0", "y1"], [SHIFT])
    assert used == []
    pd.testing.assert_frame_equal(moved, frame)


def test_listed_shifts_are_unique_and_documented() -> None:
    keys = [(s.collection, s.tablet, s.segm_idx) for s in SEGMENT_SHIFTS]
    assert len(keys) == len(set(keys))
    assert all(s.evidence and (s.dx, s.dy) != (0, 0) for s in SEGMENT_SHIFTS)


def _real_csdd(fixes: bool) -> CSDD:
    try:
        return CSDD(resolve_data_dir(), registration_fixes=fixes)
    except DataNotFoundError:
        pytest.skip("no CSDD data directory (set CUNEIDET_DATA_DIR to run this test)")


@pytest.mark.parametrize("shift", SEGMENT_SHIFTS, ids=lambda s: f"{s.tablet}-{s.segm_idx}")
def test_real_segment_and_boxes_are_moved(
    shift: SegmentShift, caplog: pytest.LogCaptureFixture
) -> None:
    raw = _real_csdd(False)
    with caplog.at_level(logging.INFO, logger="cuneidet.data.csdd"):
        fixed = _real_csdd(True)
        segment = fixed.segment(shift.collection, shift.segm_idx)
    before = raw.segment(shift.collection, shift.segm_idx)
    offsets = np.array([shift.dx, shift.dy, shift.dx, shift.dy])
    corners = ["x0", "y0", "x1", "y1"]
    np.testing.assert_array_equal(segment[corners].to_numpy() - before[corners].to_numpy(), offsets)
    assert f"moved by ({shift.dx:+d}, {shift.dy:+d}) px" in caplog.text
    # the moved segment lies inside the photo the shift was measured on
    width, height = shift.photo_size
    assert (
        0 <= segment["x0"] < segment["x1"] <= width and 0 <= segment["y0"] < segment["y1"] <= height
    )
    photo = fixed.root / "images" / f"{shift.tablet}.jpg"
    if photo.is_file():
        with Image.open(photo) as image:
            assert image.size == shift.photo_size
    # boxes: photo coordinates move with the segment, segment coordinates stay
    for name in fixed.box_sets:
        box_rows = fixed.boxes(name)
        here = (box_rows["collection"] == shift.collection) & (
            box_rows["segm_idx"] == shift.segm_idx
        )
        if not here.any():
            continue
        old = raw.boxes(name)
        old = old[(old["collection"] == shift.collection) & (old["segm_idx"] == shift.segm_idx)]
        new = box_rows[here]
        glob = ["gx1", "gy1", "gx2", "gy2"]
        shifted = new[glob].to_numpy() - old[glob].to_numpy()
        np.testing.assert_array_equal(shifted, np.broadcast_to(offsets, shifted.shape))
        rel = ["rx1", "ry1", "rx2", "ry2"]
        np.testing.assert_array_equal(new[rel].to_numpy(), old[rel].to_numpy())


def test_shift_scores_find_the_offset_of_boxes_from_their_lines() -> None:
    grid = MapGrid(stride=8, offset=4)
    probability = np.zeros((60, 80), np.float32)
    probability[[20, 35], 10:70] = 1.0  # two text lines at y = 164 and 284 px
    # box centres on those lines, laid out 24 px too far left and 40 px too high
    centres = np.array([[150.0, 124.0], [300.0, 124.0], [200.0, 244.0], [400.0, 244.0]])
    shifts = np.array([[dx, dy] for dx in range(0, 49, 8) for dy in range(0, 81, 8)])
    scores = shift_scores(probability, grid, centres, shifts)
    assert scores.max() == 1.0
    assert shifts[int(np.argmax(scores))].tolist()[1] == 40
    # a shift that moves every centre off the map scores 0; no centres: NaN
    assert shift_scores(probability, grid, centres, [[10_000, 0]])[0] == 0.0
    assert np.isnan(shift_scores(probability, grid, np.zeros((0, 2)), [[0, 0]])[0])


def test_a_photo_that_does_not_fit_the_moved_segment_names_the_switch() -> None:
    from cuneidet.data.segments import crop_segment
    from cuneidet.errors import DataFormatError

    shift = SEGMENT_SHIFTS[0]
    small = Image.new("L", (900, 850))  # e.g. the framing the release was annotated on
    with pytest.raises(DataFormatError, match="registration_fixes=false"):
        crop_segment(small, (27 + shift.dx, shift.dy, 965 + shift.dx, 837 + shift.dy), shift.tablet)
    with pytest.raises(DataFormatError) as error:
        crop_segment(small, (0, 0, 1000, 10), "P000001")
    assert "registration" not in str(error.value)
