"""Assignment on the truth lines: what the assignment step reaches with a perfect detector."""

import math

import numpy as np
import pytest

from cuneidet.align import TransliterationLine, ViewTransliteration
from cuneidet.lines.data import LineSample
from cuneidet.lines.evaluate import (
    truth_line_lengths,
    truth_lines_assignment,
    truth_lines_summary,
)
from cuneidet.lines.predict import LinePostprocess


def _line(y: float, x1: float) -> np.ndarray:
    return np.array([[0.0, y], [x1 / 2, y], [x1, y]])


def _signs(y: float, x1: float, labels: list[int]) -> tuple[list[list[float]], list[int]]:
    step = x1 / len(labels)
    return [[k * step, y - 50, (k + 1) * step, y + 50] for k in range(len(labels))], labels


def _text(*lengths: float) -> ViewTransliteration:
    lines = []
    for idx, length in enumerate(lengths):
        labels = [3 * idx + 1, 3 * idx + 2, 3 * idx + 3]
        lines.append(TransliterationLine(idx, labels, labels, [0, 1, 2], [length / 3] * 3))
    return ViewTransliteration(lines)


def _sample(text: ViewTransliteration | None) -> LineSample:
    """Four truth lines; the top one carries signs of no transliteration line, and the second
    line's polyline covers only half of its signs."""
    boxes, labels = [], []
    for y, x1, signs in (
        (100, 400, [30, 31, 32]),
        (220, 1200, [1, 2, 3]),
        (340, 600, [4, 5, 6]),
        (460, 1200, [7, 8, 9]),
    ):
        b, lab = _signs(y, x1, signs)
        boxes += b
        labels += lab
    polylines = [_line(100, 400), _line(220, 600), _line(340, 600), _line(460, 1200)]
    return LineSample(
        key="test/0",
        name="T Obv",
        image=np.zeros((600, 1300), np.uint8),
        polylines=polylines,
        pitch=120.0,
        boxes=np.array(boxes, np.float32),
        labels=np.array(labels),
        transliteration=text,
    )


def test_truth_line_lengths_cover_the_signs_put_on_each_line():
    lengths = truth_line_lengths(_sample(_text(1200, 600, 1200)))
    assert lengths == pytest.approx(np.array([400, 1200, 600, 1200]) / 128)


def test_truth_lines_assignment_by_gale_church_and_by_order():
    counts = truth_lines_assignment(_sample(_text(1200, 600, 1200)), LinePostprocess())
    # Gale–Church leaves the short top line out and assigns the rest; order shifts every line
    assert counts == {
        "truth_lines_correct": 4,
        "truth_lines_order_correct": 0,
        "truth_lines_total": 4,
    }


def test_truth_lines_assignment_without_reference_counts_nothing():
    zero = {"truth_lines_correct": 0, "truth_lines_order_correct": 0, "truth_lines_total": 0}
    assert truth_lines_assignment(_sample(None), LinePostprocess()) == zero
    assert truth_lines_assignment(_sample(ViewTransliteration([])), LinePostprocess()) == zero
    no_boxes = _sample(_text(1200, 600, 1200))
    no_boxes.boxes, no_boxes.labels = np.zeros((0, 4), np.float32), np.zeros(0, np.int64)
    assert truth_lines_assignment(no_boxes, LinePostprocess()) == zero


def test_truth_lines_summary_sums_views():
    rows = [
        {"truth_lines_correct": 4, "truth_lines_order_correct": 0, "truth_lines_total": 4},
        {"truth_lines_correct": 1, "truth_lines_order_correct": 2, "truth_lines_total": 2},
    ]
    summary = truth_lines_summary(rows)
    assert summary["accuracy"] == pytest.approx(5 / 6)
    assert summary["order_accuracy"] == pytest.approx(2 / 6)
    assert (summary["correct"], summary["order_correct"], summary["total"]) == (5, 2, 6)
    assert math.isnan(truth_lines_summary([])["accuracy"])
