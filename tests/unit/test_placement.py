"""Boxes for signs without an aligned detection (cuneidet.align.placement)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from cuneidet.align import TransliterationLine, ViewTransliteration
from cuneidet.align.placement import (
    PLACED_COLUMNS,
    Placement,
    null_hypothesis_boxes,
    place_unaligned,
    place_view,
    refine_boxes,
    spread_run,
)
from cuneidet.data.line_geometry import LineHypotheses, MapGrid, TextLine
from cuneidet.errors import ConfigError, DataFormatError

H = 64.0  # half the sign height


def _line(polyline, x_min=None, x_max=None, index=0) -> TextLine:
    """A text line along ``polyline`` (x-sorted (x, y) points); extent = polyline's by default."""
    points = np.asarray(polyline, dtype=float)
    slope, intercept = np.polyfit(points[:, 0], points[:, 1], 1)
    return TextLine(
        index=index,
        angle=0.0,
        dist=0.0,
        votes=0.0,
        x_min=float(points[0, 0] if x_min is None else x_min),
        x_max=float(points[-1, 0] if x_max is None else x_max),
        polyline=points,
        slope=float(slope),
        intercept=float(intercept),
    )


def _flat(y=500.0, x_min=0.0, x_max=1000.0) -> TextLine:
    return _line([(x_min, y), (x_max, y)])


def _text(widths, line_idx=0, pos_idx=None, labels=None) -> TransliterationLine:
    n = len(widths)
    labels = list(range(1, n + 1)) if labels is None else labels
    pos_idx = list(range(n)) if pos_idx is None else pos_idx
    return TransliterationLine(line_idx, labels, labels, pos_idx, widths)


def _box(x1, x2, cy=500.0) -> list[float]:
    return [x1, cy - H, x2, cy + H]


# -- refine_boxes -------------------------------------------------------------------------------


def test_refine_clips_corners_to_the_band_and_keeps_x() -> None:
    boxes = np.array([[0, 300, 100, 700], [200, 450, 300, 550], [400, 470, 500, 610]], float)
    refined = refine_boxes(boxes, _flat(500.0))
    np.testing.assert_allclose(
        refined, [[0, 420, 100, 580], [200, 450, 300, 550], [400, 470, 500, 580]]
    )


def test_refine_measures_from_the_polyline_at_the_box_centre() -> None:
    sloped = _line([(0, 100), (1000, 600)])  # y = 0.5 x + 100
    np.testing.assert_allclose(refine_boxes([[150, 0, 250, 400]], sloped), [[150, 120, 250, 280]])
    bent = _line([(0, 100), (500, 100), (1000, 300)])  # y(750) = 200
    np.testing.assert_allclose(
        refine_boxes([[700, 0, 800, 400]], bent, clip=50.0), [[700, 150, 800, 250]]
    )


@pytest.mark.parametrize(
    ("box", "expected"),
    [
        ([0, 700, 100, 900], [0, 579, 100, 580]),  # entirely below
        ([0, 100, 100, 300], [0, 420, 100, 421]),  # entirely above
        ([0, 579.5, 100, 900], [0, 579, 100, 580]),  # all but 0.5 px below
    ],
)
def test_refine_never_inverts_a_box_beyond_the_clip(box, expected) -> None:
    refined = refine_boxes([box], _flat(500.0))
    np.testing.assert_allclose(refined, [expected])
    assert refined[0, 3] >= refined[0, 1] + 1


def test_refine_input_checks() -> None:
    assert refine_boxes(np.zeros((0, 4)), _flat()).shape == (0, 4)
    assert refine_boxes([], _flat()).shape == (0, 4)
    with pytest.raises(DataFormatError, match=r"\(K, 4\)"):
        refine_boxes([[0, 1, 2]], _flat())
    with pytest.raises(DataFormatError, match="x2 < x1 or y2 < y1"):
        refine_boxes([[0, 10, 100, 5]], _flat())
    with pytest.raises(DataFormatError, match="non-finite"):
        refine_boxes([[0, np.nan, 100, 5]], _flat())
    with pytest.raises(ConfigError, match="clip"):
        refine_boxes([[0, 0, 1, 1]], _flat(), clip=0.0)


# -- null_hypothesis_boxes ----------------------------------------------------------------------


def test_null_hypothesis_boxes_on_a_sloped_line() -> None:
    line = _line([(100, 150), (700, 450)])  # y = 0.5 x + 100, extent 600
    boxes = null_hypothesis_boxes(line, _text([100, 200, 100]))  # centres 50, 200, 350 of 400
    np.testing.assert_allclose(
        boxes,
        [[125, 123.5, 225, 251.5], [300, 236, 500, 364], [575, 348.5, 675, 476.5]],
    )


def test_null_hypothesis_boxes_follow_a_bent_polyline() -> None:
    line = _line([(0, 100), (500, 100), (1000, 300)])
    boxes = null_hypothesis_boxes(line, _text([250, 250, 250, 250]))
    np.testing.assert_allclose((boxes[:, 0] + boxes[:, 2]) / 2, [125, 375, 625, 875])
    np.testing.assert_allclose((boxes[:, 1] + boxes[:, 3]) / 2, [100, 100, 150, 250])
    np.testing.assert_allclose(boxes[:, 2] - boxes[:, 0], 250)
    np.testing.assert_allclose(boxes[:, 3] - boxes[:, 1], 128)


def test_null_hypothesis_boxes_of_an_empty_line() -> None:
    assert null_hypothesis_boxes(_flat(), _text([])).shape == (0, 4)


# -- place_unaligned ----------------------------------------------------------------------------


def _centres(placement: Placement) -> np.ndarray:
    return (placement.boxes[:, :2] + placement.boxes[:, 2:]) / 2


def test_spread_run_is_proportional_to_prior_widths() -> None:
    np.testing.assert_allclose(spread_run(0.0, 800.0, np.array([100, 300])), [100, 500])


def test_run_between_two_anchors_is_spread_evenly() -> None:
    text = _text([100] * 5)
    anchors = {0: _box(0, 100), 4: _box(700, 800)}  # interval [100, 700]: 2x the prior 300
    placed = place_unaligned(_flat(), text, anchors)
    assert placed.positions.tolist() == [1, 2, 3]
    np.testing.assert_allclose(_centres(placed), [[200, 500], [400, 500], [600, 500]])
    np.testing.assert_allclose(placed.boxes[:, 2] - placed.boxes[:, 0], 100)  # not stretched
    np.testing.assert_allclose(placed.boxes[:, 3] - placed.boxes[:, 1], 128)
    assert (placed.dropped_stretch, placed.dropped_far) == (0, 0)


@pytest.mark.parametrize(
    ("gap", "kept"),
    [
        (59.0, False),
        (60.0, True),
        (1500.0, True),
        (1501.0, False),
    ],  # prior 300 px, bounds inclusive
)
def test_compressed_and_stretched_runs_are_dropped(gap: float, kept: bool) -> None:
    text = _text([100] * 5)
    anchors = {0: _box(0, 100), 4: _box(100 + gap, 200 + gap)}
    placed = place_unaligned(_flat(x_max=3000.0), text, anchors)
    assert len(placed) == (3 if kept else 0)
    assert placed.dropped_stretch == (0 if kept else 3)


@pytest.mark.parametrize(
    "anchors",
    [
        {0: _box(500, 600), 2: _box(100, 200)},  # out of order: negative interval
        {0: _box(100, 300), 2: _box(250, 400)},  # overlapping
        {0: _box(100, 200), 2: _box(200, 300)},  # touching: empty interval
    ],
)
def test_negative_or_empty_interval_drops_the_run(anchors) -> None:
    placed = place_unaligned(_flat(), _text([100] * 3), anchors)
    assert len(placed) == 0
    assert placed.dropped_stretch == 1


def test_runs_before_the_first_and_after_the_last_anchor() -> None:
    text = _text([100] * 5)
    line = _line([(100, 500), (900, 500)])
    placed = place_unaligned(line, text, {2: _box(400, 500)})
    assert placed.positions.tolist() == [0, 1, 3, 4]
    # [x_min 100, 400] for 200 px of prior; [500, max(564, x_max 900)] likewise
    np.testing.assert_allclose(_centres(placed)[:, 0], [175, 325, 600, 800])


def test_run_after_the_last_anchor_spans_at_least_half_a_sign_height() -> None:
    line = _line([(100, 500), (520, 500)])  # x_max 520 < last anchor x2 + 64
    placed = place_unaligned(line, _text([100] * 5), {2: _box(400, 500)})
    np.testing.assert_allclose(_centres(placed)[2:, 0], [516, 548])  # 500 + (50, 150) · 64/200


def test_max_distance_counts_sign_positions() -> None:
    text = _text([100] * 15)
    line = _line([(0, 500), (1500, 500)])
    placed = place_unaligned(line, text, {0: _box(0, 100)})
    assert placed.positions.tolist() == list(range(1, 11))
    assert placed.dropped_far == 4

    wide = _text([50, 400, 400, 400, 400, 400, 50])  # far in px, near in positions
    placed = place_unaligned(
        _line([(0, 500), (3000, 500)]),
        wide,
        {0: _box(0, 50), 6: _box(2050, 2100)},
        max_distance=2,
    )
    assert placed.positions.tolist() == [1, 2, 4, 5]
    assert placed.dropped_far == 1


@pytest.mark.parametrize(
    ("anchors", "min_anchors"),
    [
        ({}, 1),
        ({i: _box(100 * i, 100 * i + 100) for i in range(4)}, 1),  # all anchored
        ({0: _box(0, 100)}, 2),  # too few anchors
    ],
)
def test_nothing_placed(anchors, min_anchors: int) -> None:
    placed = place_unaligned(_flat(), _text([100] * 4), anchors, min_anchors=min_anchors)
    assert len(placed) == 0
    assert placed.boxes.shape == (0, 4)
    assert (placed.dropped_stretch, placed.dropped_far) == (0, 0)


def test_y_fit_pulls_placed_signs_towards_the_anchors_line() -> None:
    line = _line([(0, 100), (1000, 600)])  # y = 0.5 x + 100
    anchor_y = lambda x: 0.5 * x + 140  # noqa: E731 — anchors sit 40 px below the detected line
    anchors = {
        0: _box(0, 100, anchor_y(50)),
        2: _box(200, 300, anchor_y(250)),
        4: _box(400, 500, anchor_y(450)),
    }
    placed = place_unaligned(line, _text([100] * 5), anchors)
    xs = _centres(placed)[:, 0]
    np.testing.assert_allclose(xs, [150, 350])
    fit_x = np.r_[50, 250, 450, xs]
    fit_y = np.r_[anchor_y(np.array([50, 250, 450])), line.polyline_y_at(xs)]
    slope, intercept = np.polyfit(fit_x, fit_y, 1, w=np.sqrt([2, 2, 2, 1, 1]))
    np.testing.assert_allclose(_centres(placed)[:, 1], slope * xs + intercept)
    # weight 6 on the anchors' line vs 2 on the detected line: 3/4 of the way to the anchors
    np.testing.assert_allclose(_centres(placed)[:, 1], line.polyline_y_at(xs) + 30)


def test_y_fit_through_one_anchor_and_one_placed_sign_keeps_both() -> None:
    bent = _line([(0, 500), (200, 500), (300, 560), (500, 560)])
    placed = place_unaligned(bent, _text([100, 100]), {0: _box(0, 100, 480)})
    x = _centres(placed)[0, 0]
    assert x == pytest.approx(300)  # [100, max(164, x_max 500)] for one 100-px sign
    assert _centres(placed)[0, 1] == pytest.approx(bent.polyline_y_at(x))  # 560


def test_stretch_dropped_runs_do_not_enter_the_y_fit() -> None:
    anchors = {1: _box(400, 500, 520), 3: _box(505, 605, 530)}  # run [2] squeezed into 5 px
    placed = place_unaligned(_flat(500.0), _text([100] * 4), anchors)
    assert placed.positions.tolist() == [0]
    assert placed.dropped_stretch == 1
    x = _centres(placed)[0, 0]
    assert x == pytest.approx(200)  # [x_min 0, 400] for one 100-px sign
    slope, intercept = np.polyfit([450, 555, x], [520, 530, 500], 1, w=np.sqrt([2, 2, 1]))
    assert _centres(placed)[0, 1] == pytest.approx(slope * x + intercept)


@pytest.mark.parametrize(
    ("anchors", "message"),
    [
        ({5: _box(0, 100)}, "out of range"),
        ({-1: _box(0, 100)}, "out of range"),
        ({1.5: _box(0, 100)}, "not an integer"),
        ({1: [0, 436, 100]}, r"shape \(4,\)"),
        ({1: [[0, 436, 100, 564]]}, r"shape \(4,\)"),
        ({1: ["a", 436, 100, 564]}, "not numeric"),
        ({1: [100, 436, 0, 564]}, "x2 < x1"),
        ({1: [0, np.inf, 100, 564]}, "non-finite"),
    ],
)
def test_malformed_anchors_raise(anchors, message: str) -> None:
    with pytest.raises(DataFormatError, match=message):
        place_unaligned(_flat(), _text([100] * 5), anchors)


def test_bad_widths_and_settings_raise() -> None:
    with pytest.raises(DataFormatError, match="prior widths"):
        place_unaligned(_flat(), _text([100, 0, 100]), {0: _box(0, 100)})
    for settings in ({"min_anchors": 0}, {"max_distance": -1}, {"min_stretch": 6.0}):
        with pytest.raises(ConfigError):
            place_unaligned(_flat(), _text([100] * 3), {0: _box(0, 100)}, **settings)


# -- place_view ---------------------------------------------------------------------------------


def _hypotheses() -> LineHypotheses:
    """Two horizontal detected lines at y = 300 and y = 500, 200 px apart."""
    lines = [_line([(0, 300), (1000, 300)], index=0), _line([(0, 500), (1000, 500)], index=1)]
    return LineHypotheses(
        lines=lines,
        pitch=200.0,
        label_map=np.zeros((4, 4), np.int32),
        line_map=np.zeros((4, 4), bool),
        grid=MapGrid(),
        image_size=(800, 1100),
    )


def _view() -> ViewTransliteration:
    """Line 3: five visible signs (pos_idx 3 lost); line 7: four signs."""
    return ViewTransliteration(
        [
            _text([100] * 5, line_idx=3, pos_idx=[0, 1, 2, 4, 5], labels=[11, 12, 13, 14, 15]),
            _text([100] * 4, line_idx=7, labels=[21, 22, 23, 24]),
        ]
    )


def _aligned(rows) -> pd.DataFrame:
    """Aligned signs from (line_idx, pos_idx, x1, x2, centre y)."""
    return pd.DataFrame(
        [
            {"line_idx": li, "pos_idx": p, "x1": x1, "y1": cy - H, "x2": x2, "y2": cy + H}
            for li, p, x1, x2, cy in rows
        ]
    )


ALIGNED = [
    (3, 0, 100, 200, 300),
    (3, 5, 500, 600, 300),
    *[(7, p, 100 * p, 100 * p + 100, 500) for p in range(4)],
]


def test_place_view_on_two_lines() -> None:
    placed, counts = place_view(_hypotheses(), _view(), np.array([3, 7]), _aligned(ALIGNED))
    assert list(placed.columns) == list(PLACED_COLUMNS)
    assert placed["line"].tolist() == [0, 0, 0]
    assert placed["line_idx"].tolist() == [3, 3, 3]
    assert placed["pos_idx"].tolist() == [1, 2, 4]
    assert placed["train_label"].tolist() == [12, 13, 14]
    np.testing.assert_allclose(placed[["x1", "x2"]], [[200, 300], [300, 400], [400, 500]])
    np.testing.assert_allclose(placed[["y1", "y2"]], [[236, 364]] * 3)
    assert placed["line"].dtype == np.int64 and placed["x1"].dtype == np.float64
    assert counts["lines_placed"] == 1
    assert counts["signs_placed"] == 3
    assert counts["lines_complete"] == 1
    assert counts["lines_without_anchors"] == 0
    assert counts["dropped_stretch"] == counts["dropped_far"] == 0


def test_place_view_needs_anchors_in_the_line_band() -> None:
    placed, counts = place_view(_hypotheses(), _view(), np.array([7, 3]), _aligned(ALIGNED))
    assert len(placed) == 0
    assert counts["anchors_outside_band"] == 6
    assert counts["lines_without_anchors"] == 2


def test_place_view_does_not_place_a_sign_aligned_outside_the_band() -> None:
    rows = [*ALIGNED[:2], (3, 2, 300, 400, 700)]  # pos_idx 2 aligned far below line 0
    placed, counts = place_view(_hypotheses(), _view(), np.array([3, -1]), _aligned(rows))
    assert placed["pos_idx"].tolist() == [1, 4]
    assert counts["anchors_outside_band"] == 1
    assert counts["dropped_aligned"] == 1

    placed, counts = place_view(
        _hypotheses(), _view(), np.array([3, -1]), _aligned(rows), band_filter=False
    )
    assert placed["pos_idx"].tolist() == [1, 4]
    assert counts["anchors_outside_band"] == counts["dropped_aligned"] == 0


def test_place_view_without_aligned_signs_or_with_shared_lines() -> None:
    placed, counts = place_view(_hypotheses(), _view(), np.array([3, 7]), pd.DataFrame())
    assert list(placed.columns) == list(PLACED_COLUMNS) and len(placed) == 0
    assert counts["lines_without_anchors"] == 2

    placed, counts = place_view(_hypotheses(), _view(), np.array([3, 3]), _aligned(ALIGNED))
    assert len(placed) == 0
    assert counts["lines_shared"] == 2

    placed, counts = place_view(_hypotheses(), _view(), np.array([-1, -1]), _aligned(ALIGNED))
    assert len(placed) == 0 and sum(counts.values()) == 0


def test_place_view_counts_dropped_signs() -> None:
    rows = [(3, 0, 100, 200, 300), (3, 5, 220, 320, 300)]  # run of 3 squeezed into 20 px
    placed, counts = place_view(
        _hypotheses(), _view(), np.array([3, -1]), _aligned(rows), max_distance=0
    )
    assert len(placed) == 0
    assert counts["dropped_stretch"] == 3
    rows = [(3, 0, 100, 200, 300)]
    placed, counts = place_view(
        _hypotheses(), _view(), np.array([3, -1]), _aligned(rows), max_distance=2
    )
    assert placed["pos_idx"].tolist() == [1, 2]
    assert counts["dropped_far"] == 2


@pytest.mark.parametrize(
    ("assignment", "rows", "message"),
    [
        (np.array([3]), ALIGNED, "one entry per detected line"),
        (np.array([3.0, 7.0]), ALIGNED, "int array"),
        (np.array([3, 5]), ALIGNED, r"line\(s\) \[5\]"),
        (np.array([3, 7]), [(3, 3, 0, 100, 300)], r"pos_idx \[3\]"),
        (np.array([3, 7]), [(3, 1, 0, 100, 300), (3, 1, 0, 100, 300)], "repeat pos_idx"),
        (np.array([3, 7]), [(3.5, 1, 0, 100, 300)], "integers"),
        (np.array([3, 7]), [(3, 1, 100, 0, 300)], "x2 < x1"),
    ],
)
def test_place_view_malformed_input_raises(assignment, rows, message: str) -> None:
    with pytest.raises(DataFormatError, match=message):
        place_view(_hypotheses(), _view(), assignment, _aligned(rows))


def test_place_view_missing_column_raises() -> None:
    with pytest.raises(DataFormatError, match="lack column"):
        place_view(_hypotheses(), _view(), np.array([3, 7]), _aligned(ALIGNED).drop(columns="y2"))
