"""Ground-truth lines (joining pieces, distances) and line metrics (matching, assignment)."""

import numpy as np
import pandas as pd
import pytest

from cuneidet.lines.metrics import (
    UNKNOWN,
    LineScores,
    boxes_to_lines,
    lcs_length,
    match_lines,
    monotone_matching,
    reference_assignment,
)
from cuneidet.lines.truth import (
    distance_to_lines,
    lines_pitch,
    sort_polyline,
    truth_from_points,
    truth_from_signs,
)


def _line(y: float, x0: float = 0.0, x1: float = 1000.0, slope: float = 0.0) -> np.ndarray:
    xs = np.array([x0, (x0 + x1) / 2, x1])
    return np.stack([xs, y + slope * (xs - x0)], axis=1)


def test_sort_polyline_orders_by_x_and_averages_duplicates():
    poly = sort_polyline(np.array([[5, 1], [0, 0], [5, 3]]))
    assert poly.tolist() == [[0, 0], [5, 2]]


def test_truth_from_points_scales_sorts_and_joins_pieces():
    rows = pd.DataFrame(
        {
            "line_idx": [0, 0, 1, 1, 2, 2, 3, 3],
            # line 1 is the right half of line 3's row: they are joined; line 2 overlaps
            # line 0 horizontally one pitch lower and stays separate
            "x": [0, 500, 300, 500, 0, 500, 0, 250],
            "y": [300, 300, 150, 150, 400, 400, 148, 148],
        }
    )
    truth = truth_from_points(rows, scale=2.0)
    assert len(truth) == 3
    assert truth.line_idx == [1, 0, 2]  # top to bottom; a joined line keeps its smallest index
    assert truth.polylines[0][:, 0].tolist() == [0, 500, 600, 1000]
    assert truth.pitch == pytest.approx(250, abs=5)


def test_single_point_line_is_kept_as_a_short_line():
    truth = truth_from_points(pd.DataFrame({"line_idx": [0], "x": [10], "y": [20]}), 1.0)
    assert len(truth) == 1 and truth.polylines[0].shape == (2, 2)


def test_pitch_needs_two_lines():
    assert np.isnan(lines_pitch([_line(10)]))
    assert lines_pitch([_line(10), _line(130), _line(250)]) == pytest.approx(120)


def test_distance_to_lines():
    d = distance_to_lines([_line(50, 0, 99)], (100, 100))
    assert d.shape == (100, 100)
    assert d[50, 20] == 0 and d[60, 20] == pytest.approx(10, abs=0.5)
    assert np.isinf(distance_to_lines([], (5, 5))).all()
    assert np.isinf(distance_to_lines([_line(500, 0, 99)], (100, 100))).all()


def test_truth_from_signs_runs_through_sign_centres():
    boxes = np.array([[0, 0, 100, 100], [120, 10, 220, 110], [0, 200, 100, 300]], float)
    truth = truth_from_signs(boxes, np.array([4, 4, 7]))
    assert truth.line_idx == [4, 7]
    first = truth.polylines[0]
    assert first[0, 0] == 0 and first[-1, 0] == 220
    assert np.interp(50, first[:, 0], first[:, 1]) == pytest.approx(50)


def test_match_lines_tolerance_overlap_and_one_to_one():
    truth = [_line(100), _line(220), _line(340)]
    pitch = 120.0
    detected = [_line(110), _line(220 + 31), _line(340 - 20, 0, 300), _line(100)]
    match = match_lines(detected, truth, pitch)
    # 31 px > pitch/4 = 30 px: no match; the short line overlaps 300 of its own 300 px: match;
    # the two detections of line 0 match once (the closer one)
    assert match.pairs == [(2, 2), (3, 0)]
    assert (match.tp, match.fp, match.fn) == (2, 2, 1)
    assert match_lines([], truth, pitch).fn == 3
    assert match_lines(detected, [], pitch).fp == 4
    far = match_lines([_line(100, 2000, 3000)], [_line(100)], pitch)
    assert far.tp == 0, "lines without common extent never match"


def test_line_scores_precision_recall_f1_and_assignment():
    scores = LineScores()
    match = match_lines([_line(100), _line(220)], [_line(100), _line(220), _line(340)], 120)
    scores.add(match)
    assert scores.precision == 1 and scores.recall == pytest.approx(2 / 3)
    assert scores.f1 == pytest.approx(0.8)
    correct, total = scores.add_assignment(match, np.array([5, -1]), np.array([5, 6, 7]), 3)
    assert (correct, total) == (1, 2)
    assert scores.assignment_accuracy == 0.5
    assert scores.order_total == 0 + 1 and scores.order_correct == 0  # 5 ≠ rank 0
    summary = scores.summary()
    assert summary["f1"] == pytest.approx(0.8) and summary["assignment_total"] == 2
    assert np.isnan(LineScores().assignment_accuracy) and LineScores().f1 == 0
    unknown = np.array([UNKNOWN, 6, 7])  # a truth line whose transliteration line is unknown
    assert LineScores().add_assignment(match, np.array([5, 6]), unknown, 3) == (1, 1)


def test_lcs_and_monotone_matching():
    assert lcs_length([1, 2, 3, 4], [2, 4, 5]) == 2
    assert lcs_length([], [1]) == 0
    score = np.array([[0.9, 0.0, 0.0], [0.0, 0.1, 0.8], [0.0, 0.9, 0.0]])
    # order-preserving: row 1 → col 2 and row 2 → col 1 cannot both be taken
    pairs = monotone_matching(score, min_score=0.2)
    assert pairs[0] == (0, 0) and len(pairs) == 2
    assert monotone_matching(np.zeros((2, 2)), 0.2) == []


def test_boxes_to_lines_and_reference_assignment():
    truth = [_line(100), _line(220), _line(340), _line(460)]
    boxes, labels = [], []
    # the second line carries no box; the last one spells no transliteration line
    for y, seq in ((100, [1, 2, 3]), (340, [7, 8, 9]), (460, [20, 21, 22])):
        for k, label in enumerate(seq):
            boxes.append([100 + 150 * k, y - 50, 200 + 150 * k, y + 50])
            labels.append(label)
    boxes = np.array(boxes, float)
    assert boxes_to_lines(boxes, truth, 120).tolist() == [0, 0, 0, 2, 2, 2, 3, 3, 3]
    tl_lines = [(0, [1, 2, 3]), (1, [4, 5]), (2, [7, 8, 9])]
    reference = reference_assignment(truth, 120, boxes, np.array(labels), tl_lines)
    assert reference.tolist() == [0, UNKNOWN, 2, -1]
    assert reference_assignment(truth, 120, np.zeros((0, 4)), np.zeros(0), tl_lines) is None
    assert reference_assignment(truth, 120, boxes, np.array(labels), []) is None


def test_summary_of_rows_sums_views():
    from cuneidet.lines.metrics import summary_of_rows

    rows = [
        {"tp": 8, "fp": 2, "fn": 1, "assigned_correct": 6, "assigned_total": 8},
        {"tp": 2, "fp": 0, "fn": 3, "assigned_correct": 0, "assigned_total": 0},
    ]
    summary = summary_of_rows(rows)
    assert (summary["tp"], summary["fp"], summary["fn"]) == (10, 2, 4)
    assert summary["precision"] == pytest.approx(10 / 12)
    assert summary["recall"] == pytest.approx(10 / 14)
    assert summary["f1"] == pytest.approx(2 * 10 / (2 * 10 + 2 + 4))
    assert summary["assignment_accuracy"] == pytest.approx(0.75)
    assert summary["assignment_total"] == 8
    assert summary_of_rows([])["f1"] == 0.0


def test_scores_of_shards_merge_into_the_whole():
    first = LineScores(tp=3, fp=1, fn=2, assigned_correct=2, assigned_total=3)
    first.order_correct, first.order_total = 1, 2
    second = LineScores(tp=4, fp=0, fn=1, assigned_correct=3, assigned_total=3)
    second.order_correct, second.order_total = 2, 2
    merged = LineScores.merged([first, second])
    assert (merged.tp, merged.fp, merged.fn) == (7, 1, 3)
    assert merged.assignment_accuracy == pytest.approx(5 / 6)
    assert merged.order_accuracy == pytest.approx(3 / 4)
    assert LineScores.merged([]).f1 == 0.0


def test_line_module_sums_the_scores_of_all_ranks(monkeypatch):
    """Under DDP every rank scores its share of the views, padded with repeats; the logged
    figures count each view once."""
    from types import SimpleNamespace

    import torch

    from cuneidet.lines.module import LineModule
    from cuneidet.lines.networks import PaperLineNet

    module = LineModule(net=PaperLineNet(), optimizer=torch.optim.SGD)
    mine = {"test/1": LineScores(tp=2, fp=2, fn=0), "test/2": LineScores(tp=1, fp=0, fn=1)}
    other = {"test/3": LineScores(tp=6, fp=0, fn=2), "test/1": mine["test/1"]}  # a padded repeat
    module.view_scores["val"] = mine
    assert module._all_views("val") is mine  # no trainer: one process
    module._trainer = SimpleNamespace(world_size=2)

    def all_gather_object(out, obj):
        out[0], out[1] = obj, other

    monkeypatch.setattr(torch.distributed, "all_gather_object", all_gather_object)
    views = module._all_views("val")
    assert sorted(views) == ["test/1", "test/2", "test/3"]
    merged = LineScores.merged(list(views.values()))
    assert (merged.tp, merged.fp, merged.fn) == (9, 2, 3)


def test_boxes_to_lines_reach_beyond_the_line_ends():
    truth = [_line(100, 0, 300), _line(220, 0, 1000)]
    far = np.array([[900.0, 50, 1000, 150]])  # on the first line's row, 650 px past its end
    assert boxes_to_lines(far, truth, 120).tolist() == [-1]
    assert boxes_to_lines(far, truth, 120, reach=np.inf).tolist() == [0]


def _row(y: float, xs, rise: float = 0.0, height: float = 120.0) -> list[list[float]]:
    """Sign boxes of one row: left edges ``xs``, 100 px wide, centres rising by ``rise`` px
    per 100 px to the right."""
    return [
        [x, y + rise * x / 100 - height / 2, x + 100, y + rise * x / 100 + height / 2] for x in xs
    ]


def test_truth_from_boxes_finds_the_rows_of_signs():
    from cuneidet.lines.truth import truth_from_boxes

    boxes = np.array(
        _row(200, range(0, 1200, 110), rise=4.0)  # sloped: 44 px over the row
        + _row(330, [0, 110, 220, 900, 1010])  # damaged: a gap of 4.8 sign heights
        + _row(460, range(0, 600, 110))
        + _row(590, [500])  # a single sign
    )
    truth = truth_from_boxes(boxes[np.random.default_rng(0).permutation(len(boxes))])
    assert len(truth) == 4
    first, damaged, third, single = truth.polylines
    assert first[0, 0] == 0 and first[-1, 0] == 1200
    assert first[-1, 1] - first[0, 1] == pytest.approx(44.0)
    assert damaged[0, 0] == 0 and damaged[-1, 0] == 1110 and np.allclose(damaged[:, 1], 330)
    assert np.allclose(third[:, 1], 460)
    assert single[0, 0] == 500 and single[-1, 0] == 600
    assert truth.pitch == pytest.approx(130, abs=10)
    assert len(truth_from_boxes(np.zeros((0, 4)))) == 0


def test_truth_from_boxes_keeps_close_rows_apart():
    """Rows 0.8 sign heights apart, signs staggered: no sign is chained to the other row."""
    from cuneidet.lines.truth import truth_from_boxes

    boxes = np.array(_row(200, range(0, 1000, 110)) + _row(296, range(55, 1000, 110)))
    truth = truth_from_boxes(boxes)
    assert [round(float(p[:, 1].mean())) for p in truth.polylines] == [200, 296]


def test_box_line_views_take_the_views_without_annotated_lines(tmp_path):
    from cuneidet.data.csdd import CSDD
    from cuneidet.errors import DataFormatError
    from cuneidet.lines.truth import box_line_views
    from tests.synthetic_csdd import make_synthetic_csdd

    data = make_synthetic_csdd(
        tmp_path, train_tablets=3, test_tablets=1, with_lines=True, unlined_train_tablets=1
    )
    csdd = CSDD(data)
    views = box_line_views(csdd, ["train_full", "test_full"])
    assert [v.segment.tablet for v in views] == ["TRAIN002"]
    assert len(views[0].truth) == 4, "four rows of signs"
    with pytest.raises(DataFormatError, match="no view without line annotations"):
        box_line_views(csdd, ["train_full"], exclude_tablets=["TRAIN002"])
