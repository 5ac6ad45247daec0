"""Sign and line alignment by exact dynamic programming (cuneidet.align.sign_alignment)."""

from __future__ import annotations

import dataclasses
import itertools
import math

import numpy as np
import pandas as pd
import pytest

from cuneidet.align.costs import (
    GM_DEFAULTS,
    HP04,
    AlignmentParams,
    adjacent_cost,
    box_iou,
    confidence_cost,
    direction_angle,
    long_range_cost,
    offset_cost,
    spacing_cost,
)
from cuneidet.align.layout import null_hypothesis
from cuneidet.align.line_scores import (
    _best_per_class,
    align_view_lines,
    assignment_from_scores,
    line_score_matrices,
    monotone_path,
)
from cuneidet.align.sign_alignment import SIGN_COLUMNS, align_view
from cuneidet.align.solver import align_signs, gm_score, ransac_score
from cuneidet.align.transliteration import TransliterationLine, ViewTransliteration
from cuneidet.data.line_geometry import LineHypotheses, MapGrid, TextLine
from cuneidet.errors import ConfigError, DataFormatError

RIGHT = np.array([1.0, 0.0])


def boxes_at(centres, width: float = 120.0, height: float = 120.0) -> np.ndarray:
    """xyxy boxes of the given size centred on ``centres (n, 2)``."""
    c = np.asarray(centres, dtype=float).reshape(-1, 2)
    half = np.array([width, height]) / 2.0
    return np.concatenate([c - half, c + half], axis=1)


def row_of(n: int, x0: float = 100.0, y: float = 300.0, step: float = 128.0) -> np.ndarray:
    """n expected centres along a horizontal line, ``step`` px apart."""
    return np.stack([x0 + step * np.arange(n), np.full(n, y)], axis=1)


# -- an independent, scalar energy (for the brute force) -------------------------------------------


def _centre(box) -> tuple[float, float]:
    return ((box[0] + box[2]) / 2.0, (box[1] + box[3]) / 2.0)


def _iou(a, b) -> float:
    iw = max(0.0, min(a[2], b[2]) - max(a[0], b[0]) + 1.0)
    ih = max(0.0, min(a[3], b[3]) - max(a[1], b[1]) + 1.0)
    inter = iw * ih
    union = (
        (a[2] - a[0] + 1.0) * (a[3] - a[1] + 1.0)
        + (b[2] - b[0] + 1.0) * (b[3] - b[1] + 1.0)
        - inter
    )
    return inter / union if union > 0 else 0.0


def _expc(x: float, lam: float, sigma: float) -> float:
    return lam * (math.exp(x / sigma) - 1.0)


def _theta(a, b, u) -> float:
    dx, dy = b[0] - a[0], b[1] - a[1]
    return math.atan2(abs(dx * u[1] - dy * u[0]), dx * u[0] + dy * u[1]) / math.pi


def _unary(sign: int, det: int, case: dict, p: AlignmentParams) -> float:
    cx, cy = _centre(case["boxes"][det])
    ex, ey = case["expected"][sign]
    ratio = case["widths"][sign] / 128.0
    offset = math.sqrt((cx - ex) ** 2 / ratio + (cy - ey) ** 2) / 64.0
    return _expc(1.0 - case["scores"][det], p.lambda_score, p.sigma_score) + offset


def _pair(i: int, j: int, k: int, m: int, case: dict, p: AlignmentParams) -> float:
    a, b = _centre(case["boxes"][j]), _centre(case["boxes"][m])
    u = case["direction"] / np.linalg.norm(case["direction"])
    theta = _theta(a, b, u)
    iou = _iou(case["boxes"][j], case["boxes"][m])
    if k == i + 1:
        d = math.sqrt((b[0] - a[0]) ** 2 + (b[1] - a[1]) ** 2 / 0.2)
        return (
            _expc(d / 128.0 - 1.0, p.lambda_spacing, p.sigma_spacing)
            + _expc(theta, p.lambda_angle, p.sigma_angle)
            + _expc(iou, p.lambda_iou, p.sigma_iou)
        )
    return _expc(theta, p.lr_lambda_angle, p.lr_sigma_angle) + _expc(
        iou, p.lr_lambda_iou, p.lr_sigma_iou
    )


def _order_key(det: int, case: dict) -> tuple[float, int]:
    u = case["direction"] / np.linalg.norm(case["direction"])
    cx, cy = _centre(case["boxes"][det])
    return (cx * u[0] + cy * u[1], det)


def feasible(assign, case: dict) -> bool:
    """Own class only, known classes only, detections strictly advancing along the line."""
    for sign, det in enumerate(assign):
        label = case["labels"][sign]
        if det >= 0 and (not 0 < label < 240 or case["det_labels"][det] != label):
            return False
    keys = [_order_key(det, case) for det in assign if det >= 0]
    return all(a < b for a, b in itertools.pairwise(keys))


def energy_of(assign, case: dict, p: AlignmentParams) -> float:
    """Unaries, outlier costs, and the pair term of every two consecutive matched signs."""
    energy = sum(p.outlier_cost if d < 0 else _unary(i, d, case, p) for i, d in enumerate(assign))
    matched = [(i, d) for i, d in enumerate(assign) if d >= 0]
    for (i, j), (k, m) in itertools.pairwise(matched):
        energy += _pair(i, j, k, m, case, p)
    return energy


def brute_force(case: dict, p: AlignmentParams) -> float:
    options = [
        [-1, *[j for j in range(len(case["det_labels"])) if case["det_labels"][j] == label]]
        for label in case["labels"]
    ]
    return min(
        energy_of(assign, case, p)
        for assign in itertools.product(*options)
        if feasible(assign, case)
    )


def random_case(rng: np.random.Generator) -> dict:
    """A small line: ≤ 5 signs of 2-3 classes (sometimes unknown ones), ≤ 6 detections near a
    tilted line, in any order, some stacked on the same centre."""
    n, m = int(rng.integers(1, 6)), int(rng.integers(0, 7))
    classes = rng.choice(np.arange(1, 6), size=int(rng.integers(2, 4)), replace=False)
    labels = rng.choice(classes, size=n)
    if rng.random() < 0.2:
        labels[rng.integers(n)] = rng.choice([0, 250])
    angle = rng.uniform(-0.4, 0.4)
    direction = np.array([math.cos(angle), math.sin(angle)])
    widths = rng.choice([64.0, 96.0, 128.0, 192.0], size=n)
    along = np.cumsum(widths) - widths / 2.0
    expected = np.array([200.0, 300.0]) + along[:, None] * direction
    t = rng.uniform(-100.0, along[-1] + 100.0, size=m)
    centres = np.array([200.0, 300.0]) + t[:, None] * direction
    centres[:, 1] += rng.normal(0.0, 30.0, size=m)
    if m >= 2 and rng.random() < 0.3:
        centres[1] = centres[0]
    sizes = rng.uniform([60.0, 90.0], [180.0, 150.0], size=(m, 2))
    boxes = np.concatenate([centres - sizes / 2, centres + sizes / 2], axis=1).reshape(-1, 4)
    return {
        "labels": labels,
        "widths": widths,
        "expected": expected,
        "direction": direction * rng.uniform(0.5, 3.0),  # not normalised on purpose
        "boxes": boxes,
        "scores": rng.uniform(0.02, 1.0, size=m),
        "det_labels": rng.choice(classes, size=m),
    }


def solve(case: dict, params: AlignmentParams):
    return align_signs(
        case["labels"],
        case["widths"],
        case["expected"],
        case["direction"],
        case["boxes"],
        case["scores"],
        case["det_labels"],
        params,
    )


# -- parameters and energy terms -------------------------------------------------------------------


def test_parameter_sets_match_the_reference_table() -> None:
    assert (GM_DEFAULTS.outlier_cost, HP04.outlier_cost) == (10.0, 25.0)
    assert (HP04.lambda_score, HP04.sigma_score) == (12.0, 0.88)
    assert (GM_DEFAULTS.lambda_score, GM_DEFAULTS.sigma_score) == (0.3, 0.4)
    assert HP04.use_offset and GM_DEFAULTS.use_offset
    assert (HP04.lambda_spacing, HP04.sigma_spacing) == (5.0, 3.0)
    assert (GM_DEFAULTS.lambda_spacing, GM_DEFAULTS.sigma_spacing) == (3.0, 3.0)
    for p in (HP04, GM_DEFAULTS):
        assert (p.lambda_angle, p.sigma_angle) == (2.0, 0.6)
        assert (p.lr_sigma_angle, p.sigma_iou, p.lr_sigma_iou) == (0.1, 0.4, 0.05)
    assert (HP04.lambda_iou, GM_DEFAULTS.lambda_iou) == (0.4, 2.0)
    assert (HP04.lr_lambda_angle, GM_DEFAULTS.lr_lambda_angle) == (0.2, 0.05)
    assert (HP04.lr_lambda_iou, GM_DEFAULTS.lr_lambda_iou) == (1.5, 0.1)


@pytest.mark.parametrize(
    "change", [{"sigma_score": 0.0}, {"lr_sigma_iou": -1.0}, {"outlier_cost": 0.0}]
)
def test_invalid_parameters_raise(change: dict) -> None:
    with pytest.raises(ConfigError):
        AlignmentParams(**change)


def test_worked_magnitudes_under_hp04() -> None:
    scores = np.array([1.0, 0.9, 0.5, 0.3, 0.1, 0.01])
    np.testing.assert_allclose(
        confidence_cost(scores, HP04), [0.0, 1.44, 9.18, 14.6, 21.4, 24.96], rtol=2e-3, atol=0.005
    )
    gaps = np.array([[0.0, 0.0], [128.0, 0.0], [256.0, 0.0], [512.0, 0.0], [768.0, 0.0]])
    np.testing.assert_allclose(
        spacing_cost(np.zeros(2), gaps, HP04), [-1.42, 0.0, 1.98, 8.59, 21.5], rtol=2e-3, atol=0.005
    )
    # directions at θ = 0.25, 0.5, 1 (45°, 90°, 180° off the line), no overlap
    ends = np.array([[200.0, -200.0], [0.0, 200.0], [-200.0, 0.0]])
    theta = direction_angle(np.zeros(2), ends, RIGHT)
    np.testing.assert_allclose(theta, [0.25, 0.5, 1.0])
    long_range = long_range_cost(np.zeros(2), ends, np.zeros(3), RIGHT, HP04)
    np.testing.assert_allclose(long_range, [2.24, 29.5, 4405.0], rtol=2e-3)
    adjacent = adjacent_cost(np.zeros(2), ends, np.zeros(3), RIGHT, HP04)
    np.testing.assert_allclose(
        adjacent - spacing_cost(np.zeros(2), ends, HP04), [1.03, 2.60, 8.59], atol=0.01
    )
    overlap = long_range_cost(
        np.zeros(2), np.array([[1.0, 0.0]] * 2), np.array([0.1, 0.2]), RIGHT, HP04
    )
    np.testing.assert_allclose(overlap, [9.6, 80.0], rtol=6e-3)


def test_offset_cost_forgives_width_and_can_be_switched_off() -> None:
    centres = np.array([[64.0, 0.0], [64.0, 0.0], [0.0, 64.0]])
    ratios = np.array([1.0, 0.25, 0.25])  # Δx² / w: a narrow sign is held closer horizontally
    np.testing.assert_allclose(offset_cost(centres, np.zeros(2), ratios, HP04), [1.0, 2.0, 1.0])
    off = dataclasses.replace(HP04, use_offset=False)
    np.testing.assert_allclose(offset_cost(centres, np.zeros(2), ratios, off), [0.0, 0.0, 0.0])


def test_box_iou_uses_the_plus_one_convention() -> None:
    iou = box_iou(
        np.array([[0.0, 0.0, 9.0, 9.0]]), np.array([[5.0, 0.0, 14.0, 9.0], [20, 0, 29, 9]])
    )
    np.testing.assert_allclose(iou, [[50.0 / 150.0, 0.0]])


# -- align_signs: exact DP against brute force -----------------------------------------------------


@pytest.mark.parametrize("params", [HP04, GM_DEFAULTS], ids=["hp04", "defaults"])
def test_dp_equals_brute_force_minimum(params: AlignmentParams) -> None:
    matched_counts = []
    for seed in range(250):
        case = random_case(np.random.default_rng(seed))
        result = solve(case, params)
        assign = result.matched.tolist()
        assert feasible(assign, case), f"seed {seed}: infeasible labelling {assign}"
        best = brute_force(case, params)
        assert result.energy == pytest.approx(best, abs=1e-9), f"seed {seed}"
        assert energy_of(assign, case, params) == pytest.approx(result.energy, abs=1e-9)
        n = len(case["labels"])
        assert result.line_energy == pytest.approx(result.energy / (n * params.outlier_cost))
        assert result.sign_energy.sum() == pytest.approx(
            result.energy / params.outlier_cost, abs=0.005 * n + 1e-9
        )
        matched_counts.append(int((result.matched >= 0).sum()))
    # the cases are not trivial: lines with several matches and lines with outliers
    assert sum(c >= 2 for c in matched_counts) > 40
    assert sum(c == 0 for c in matched_counts) > 10


def test_perfect_line_matches_every_sign_in_order() -> None:
    expected = row_of(5, step=120.0)
    order = np.array([3, 0, 4, 1, 2])  # detections given out of order
    result = align_signs(
        [7, 3, 9, 3, 12],
        np.full(5, 128.0),
        expected,
        RIGHT,
        boxes_at(expected[order], width=100.0),
        np.ones(5),
        np.array([7, 3, 9, 3, 12])[order],
    )
    assert result.matched.tolist() == np.argsort(order).tolist()
    assert result.energy < 0.0  # gaps tighter than 128 px are rewarded
    assert np.all(result.sign_energy <= 0.0)


def test_swapped_detections_cannot_both_be_matched() -> None:
    expected = row_of(3)
    centres = expected[[0, 2, 1]]  # label 2 sits where label 3 should be, and vice versa
    result = align_signs(
        [1, 2, 3], np.full(3, 128.0), expected, RIGHT, boxes_at(centres), np.ones(3), [1, 2, 3]
    )
    assert result.matched[0] == 0
    assert (result.matched[1:] >= 0).sum() == 1


def test_one_detection_serves_one_of_two_same_class_signs() -> None:
    expected = row_of(2)
    result = align_signs(
        [5, 5], np.full(2, 128.0), expected, RIGHT, boxes_at(expected[:1]), [0.9], [5]
    )
    assert sorted(result.matched.tolist()) == [-1, 0]


def test_low_scores_far_away_are_outliers() -> None:
    expected = row_of(3)
    far = expected + np.array([0.0, 2000.0])
    result = align_signs(
        [1, 2, 3], np.full(3, 128.0), expected, RIGHT, boxes_at(far), np.full(3, 0.02), [1, 2, 3]
    )
    assert result.matched.tolist() == [-1, -1, -1]
    assert result.energy == pytest.approx(3 * HP04.outlier_cost)
    assert result.line_energy == pytest.approx(1.0)
    np.testing.assert_allclose(result.sign_energy, [1.0, 1.0, 1.0])


def test_unknown_classes_are_outliers() -> None:
    expected = row_of(3)
    result = align_signs(
        [0, 250, 3], np.full(3, 128.0), expected, RIGHT, boxes_at(expected), np.ones(3), [0, 250, 3]
    )
    assert result.matched.tolist() == [-1, -1, 2]


def test_no_signs_and_no_candidates() -> None:
    empty = align_signs([], [], np.zeros((0, 2)), RIGHT, np.zeros((0, 4)), [], [])
    assert empty.matched.shape == (0,) and empty.energy == 0.0
    expected = row_of(4)
    none = align_signs(
        [1, 2, 3, 4], np.full(4, 128.0), expected, RIGHT, boxes_at(expected), np.ones(4), [9] * 4
    )
    assert none.matched.tolist() == [-1] * 4
    assert none.energy == pytest.approx(4 * HP04.outlier_cost)
    assert none.line_energy == pytest.approx(1.0)


def test_sign_energy_on_a_hand_computed_pair() -> None:
    expected = np.array([[100.0, 100.0], [228.0, 100.0]])
    centres = np.array([[100.0, 100.0], [292.0, 110.0]])
    result = align_signs(
        [1, 2], [128.0, 64.0], expected, RIGHT, boxes_at(centres, 128.0, 128.0), [0.9, 0.5], [1, 2]
    )
    u0 = 12.0 * (math.exp(0.1 / 0.88) - 1.0)
    u1 = 12.0 * (math.exp(0.5 / 0.88) - 1.0) + math.sqrt(64.0**2 / 0.5 + 10.0**2) / 64.0
    spacing = 5.0 * (math.exp((math.sqrt(192.0**2 + 10.0**2 / 0.2) / 128.0 - 1.0) / 3.0) - 1.0)
    angle = 2.0 * (math.exp(math.atan2(10.0, 192.0) / math.pi / 0.6) - 1.0)
    pair = spacing + angle  # the boxes do not overlap
    assert result.matched.tolist() == [0, 1]
    assert result.energy == pytest.approx(u0 + u1 + pair)
    assert result.line_energy == pytest.approx((u0 + u1 + pair) / 50.0)
    nE = [round((u0 + pair / 2) / 25.0, 2), round((u1 + pair / 2) / 25.0, 2)]
    assert result.sign_energy.tolist() == nE == [0.08, 0.44]


@pytest.mark.parametrize(
    "change",
    [
        {"widths": np.full(2, 128.0)},
        {"expected": np.zeros((3, 3))},
        {"det_scores": np.ones(3)},
        {"det_labels": np.ones(1, dtype=int)},
        {"det_boxes": np.zeros((2, 5))},
        {"direction": np.zeros(2)},
        {"widths": np.array([128.0, 0.0, 128.0])},
    ],
)
def test_malformed_input_raises(change: dict) -> None:
    args = {
        "labels": [1, 2, 3],
        "widths": np.full(3, 128.0),
        "expected": row_of(3),
        "direction": RIGHT,
        "det_boxes": boxes_at(row_of(2)),
        "det_scores": np.ones(2),
        "det_labels": [1, 2],
    }
    args.update(change)
    with pytest.raises(DataFormatError):
        align_signs(**args)


# -- line scores -----------------------------------------------------------------------------------


def test_ransac_score_by_hand() -> None:
    expected = np.array([[0.0, 0.0], [300.0, 0.0]])
    boxes = boxes_at([[64.0, 0.0], [10.0, 0.0], [300.0, 500.0]])
    # sign 0: d = 1 → 1 − 0.8 + 1 = 1.2 (the label-2 box at d = 0.16 is another class);
    # sign 1: its only detection is 500 px away (d > 2) → 3
    score = ransac_score([1, 3], [128.0, 128.0], expected, boxes, [0.8, 1.0, 1.0], [1, 2, 3])
    assert score == pytest.approx(1.0 - (1.2 + 3.0) / 6.0)
    assert ransac_score([0], [128.0], expected[:1], boxes, np.ones(3), [0, 0, 0]) == 0.0
    assert ransac_score([], [], np.zeros((0, 2)), boxes, np.ones(3), [1, 2, 3]) == 0.0


def test_gm_score() -> None:
    expected = row_of(3)
    boxes = boxes_at(expected)
    perfect = gm_score([1, 2, 3], np.full(3, 128.0), expected, RIGHT, boxes, np.ones(3), [1, 2, 3])
    assert perfect > 0.9
    other = gm_score([1, 2, 3], np.full(3, 128.0), expected, RIGHT, boxes, np.ones(3), [7, 8, 9])
    assert other == 0.0


# -- monotone path ---------------------------------------------------------------------------------


def _all_monotone_matchings(rows: int, cols: int):
    for k in range(min(rows, cols) + 1):
        for rs in itertools.combinations(range(rows), k):
            for cs in itertools.combinations(range(cols), k):
                yield list(zip(rs, cs, strict=True))


def test_monotone_path_is_optimal_and_skips_non_positive_pairs() -> None:
    rng = np.random.default_rng(0)
    for _ in range(300):
        rows, cols = int(rng.integers(0, 5)), int(rng.integers(0, 5))
        scores = np.round(rng.uniform(-1.0, 1.0, size=(rows, cols)), 1)  # rounding makes ties
        path = monotone_path(scores)
        assert all(a[0] < b[0] and a[1] < b[1] for a, b in itertools.pairwise(path))
        best = max(sum(scores[p] for p in m) for m in _all_monotone_matchings(rows, cols))
        assert sum(scores[p] for p in path) == pytest.approx(best)
        assert all(scores[p] > 0 for p in path)


def test_monotone_path_tie_rule() -> None:
    # skip a row first, then a column: a tie goes to the earliest match
    assert monotone_path(np.array([[1.0, 1.0]])) == [(0, 0)]
    assert monotone_path(np.array([[1.0], [1.0]])) == [(0, 0)]
    assert monotone_path(np.array([[0.0, 0.0], [0.0, 0.0]])) == []


def test_intersection_keeps_only_agreeing_pairs() -> None:
    ransac = np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]])
    gm = np.array([[1.0, 0.0, 0.0], [0.0, 0.0, 1.0], [0.0, 0.0, 0.0]])
    assert assignment_from_scores(ransac, gm, [4, 6, 7]).tolist() == [4, -1, -1]
    with pytest.raises(DataFormatError):
        assignment_from_scores(ransac, gm[:2], [4, 6, 7])


# -- synthetic view --------------------------------------------------------------------------------


def _text_line(y: float, index: int) -> TextLine:
    return TextLine(
        index=index,
        angle=math.pi / 2,
        dist=y,
        votes=1.0,
        x_min=100.0,
        x_max=1300.0,
        polyline=np.array([[100.0, y], [1300.0, y]]),
        slope=0.0,
        intercept=y,
    )


def synthetic_view(missing: int = 0):
    """4 detected lines at y = 200 (spurious, empty), 400, 600, 800 and transliteration lines
    0, 1, 2 whose signs are detected exactly at their null-hypothesis positions on lines 1-3
    (sharing classes across lines), plus low-score clutter. ``missing`` signs of line 2 lack a
    detection."""
    rng = np.random.default_rng(1)
    lines = [_text_line(y, i) for i, y in enumerate([200.0, 400.0, 600.0, 800.0])]
    hypotheses = LineHypotheses(
        lines=lines,
        pitch=200.0,
        label_map=np.zeros((4, 4), np.int32),
        line_map=np.zeros((4, 4), bool),
        grid=MapGrid(),
        image_size=(1000, 1500),
    )
    texts = []
    for idx in range(3):
        n = 7 + idx
        labels = rng.integers(1, 8, size=n)
        widths = rng.choice([96.0, 128.0, 160.0], size=n)
        texts.append(TransliterationLine(idx, labels, labels, np.arange(n), widths))
    boxes, scores, det_labels = [], [], []
    for text, line in zip(texts, lines[1:], strict=True):
        keep = len(text) - (missing if text.line_idx == 2 else 0)
        centres = null_hypothesis(line, text)[:keep]
        boxes.append(boxes_at(centres, 100.0, 120.0))
        scores.append(np.full(keep, 0.9))
        det_labels.append(text.labels[:keep])
    clutter = rng.uniform([100.0, 150.0], [1300.0, 850.0], size=(40, 2))
    boxes.append(boxes_at(clutter, 100.0, 120.0))
    scores.append(rng.uniform(0.01, 0.1, size=40))
    det_labels.append(rng.integers(1, 8, size=40))
    detections = (np.concatenate(boxes), np.concatenate(scores), np.concatenate(det_labels))
    return hypotheses, ViewTransliteration(texts), detections


@pytest.mark.parametrize("window", [None, 0, 2])
def test_align_view_lines_finds_the_true_assignment(window: int | None) -> None:
    hypotheses, text, dets = synthetic_view()
    assert align_view_lines(hypotheses, text, *dets, window=window).tolist() == [-1, 0, 1, 2]


def test_window_leaves_far_pairs_unscored() -> None:
    hypotheses, text, dets = synthetic_view()
    ransac, gm = line_score_matrices(hypotheses, text, *dets, window=0)  # reach 0 + |4 − 3| = 1
    far = np.abs(np.arange(4)[:, None] - np.arange(3)[None, :]) > 1
    assert not ransac[far].any() and not gm[far].any()
    full_ransac, full_gm = line_score_matrices(hypotheses, text, *dets)
    np.testing.assert_array_equal(ransac[~far], full_ransac[~far])
    np.testing.assert_array_equal(gm[~far], full_gm[~far])
    assert np.argmax(full_gm, axis=0).tolist() == [1, 2, 3]


def test_align_view_matches_every_detected_sign() -> None:
    hypotheses, text, dets = synthetic_view(missing=2)
    result = align_view(hypotheses, text, *dets)
    assert result.assignment.tolist() == [-1, 0, 1, 2]
    assert list(result.signs.columns) == list(SIGN_COLUMNS)
    assert len(result.signs) == 7 + 8 + 9
    matched = result.signs[result.signs.det_idx >= 0]
    # detections were generated line by line, sign by sign: their index is the running count
    expected_det = {(0, p): p for p in range(7)} | {(1, p): 7 + p for p in range(8)}
    expected_det |= {(2, p): 15 + p for p in range(7)}
    got = {(int(r.line_idx), int(r.pos_idx)): int(r.det_idx) for r in matched.itertuples()}
    assert got == expected_det
    assert (result.signs.det_score[result.signs.det_idx >= 0] == 0.9).all()
    assert result.align_ratio == pytest.approx(22 / 24)
    assert (result.signs.nE[result.signs.det_idx < 0] >= 1.0).all()


def test_align_view_with_a_given_assignment() -> None:
    hypotheses, text, dets = synthetic_view()
    result = align_view(hypotheses, text, *dets, assignment=np.array([-1, -1, 1, -1]))
    assert result.signs.hyp_line.unique().tolist() == [2]
    assert result.align_ratio == pytest.approx(1.0)
    with pytest.raises(DataFormatError):
        align_view(hypotheses, text, *dets, assignment=np.array([-1, 5, 1, -1]))
    with pytest.raises(DataFormatError):
        align_view(hypotheses, text, *dets, assignment=np.array([0, 1, 2]))
    nothing = align_view(hypotheses, text, *dets, assignment=np.full(4, -1))
    assert len(nothing.signs) == 0 and nothing.align_ratio == 0.0


def cluttered_view(seed: int):
    """The synthetic view with noisy sign positions and 300 random detections of its classes."""
    hypotheses, text, (boxes, scores, labels) = synthetic_view()
    rng = np.random.default_rng(seed)
    jitter = rng.normal(0.0, [40.0, 10.0], size=(len(boxes), 2))
    boxes = boxes + np.tile(jitter, 2)
    extra = boxes_at(rng.uniform([50.0, 100.0], [1350.0, 900.0], size=(300, 2)), 110.0, 120.0)
    return (
        hypotheses,
        text,
        (
            np.concatenate([boxes, extra]),
            np.concatenate([scores, rng.uniform(0.01, 1.0, 300)]),
            np.concatenate([labels, rng.integers(1, 8, 300)]),
        ),
    )


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_batched_line_scores_equal_per_pair_scores(seed: int) -> None:
    hypotheses, text, (boxes, scores, labels) = cluttered_view(seed)
    ransac, gm = line_score_matrices(hypotheses, text, boxes, scores, labels)
    centres = (boxes[:, :2] + boxes[:, 2:]) / 2.0
    for h, line in enumerate(hypotheses.lines):
        band = hypotheses.band_contains(h, centres)
        direction = np.array([1.0, line.slope])
        for t, tl in enumerate(text.lines):
            expected = null_hypothesis(line, tl)
            args = (boxes[band], scores[band], labels[band])
            single_ransac = ransac_score(tl.labels, tl.widths, expected, *args)
            single_gm = gm_score(tl.labels, tl.widths, expected, direction, *args)
            assert ransac[h, t] == pytest.approx(single_ransac, abs=1e-12)
            assert gm[h, t] == pytest.approx(single_gm, abs=1e-9)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_align_view_equals_align_signs_line_by_line(seed: int) -> None:
    hypotheses, text, (boxes, scores, labels) = cluttered_view(seed)
    result = align_view(hypotheses, text, boxes, scores, labels)
    centres = (boxes[:, :2] + boxes[:, 2:]) / 2.0
    for h in np.flatnonzero(result.assignment >= 0):
        line = hypotheses.lines[h]
        tl = next(t for t in text.lines if t.line_idx == result.assignment[h])
        band = np.flatnonzero(hypotheses.band_contains(h, centres))
        single = align_signs(
            tl.labels,
            tl.widths,
            null_hypothesis(line, tl),
            np.array([1.0, line.slope]),
            boxes[band],
            scores[band],
            labels[band],
        )
        rows = result.signs[result.signs.hyp_line == h]
        expected_det = np.where(single.matched >= 0, band[np.maximum(single.matched, 0)], -1)
        assert rows.det_idx.tolist() == expected_det.tolist()
        assert rows.nE.tolist() == single.sign_energy.tolist()
        assert rows.line_energy.iloc[0] == pytest.approx(single.line_energy)


def test_views_without_lines_detections_or_transliteration() -> None:
    hypotheses, text, dets = synthetic_view()
    no_dets = (np.zeros((0, 4)), np.zeros(0), np.zeros(0, dtype=int))
    assert align_view_lines(hypotheses, text, *no_dets).tolist() == [-1] * 4
    empty_view = align_view(hypotheses, text, *no_dets, assignment=np.array([-1, 0, 1, 2]))
    assert len(empty_view.signs) == 24 and empty_view.align_ratio == 0.0
    assert empty_view.signs.det_score.isna().all()
    assert (empty_view.signs.nE == 1.0).all()
    no_text = ViewTransliteration([])
    assert align_view_lines(hypotheses, no_text, *dets).tolist() == [-1] * 4
    assert line_score_matrices(hypotheses, no_text, *dets)[0].shape == (4, 0)
    no_lines = dataclasses.replace(hypotheses, lines=[])
    assert align_view_lines(no_lines, text, *dets).shape == (0,)
    nothing = align_view(no_lines, text, *dets)
    assert len(nothing.signs) == 0 and list(nothing.signs.columns) == list(SIGN_COLUMNS)
    assert nothing.signs.det_idx.dtype == np.int64


def test_negative_window_and_malformed_detections_raise() -> None:
    hypotheses, text, (boxes, scores, labels) = synthetic_view()
    with pytest.raises(ConfigError):
        align_view_lines(hypotheses, text, boxes, scores, labels, window=-1)
    with pytest.raises(DataFormatError):
        align_view(hypotheses, text, boxes, scores[:-1], labels)


def test_best_per_class_keeps_the_highest_scores_of_every_class() -> None:
    labels = np.array([3, 1, 3, 3, 1, 2])
    scores = np.array([0.2, 0.5, 0.9, 0.4, 0.1, 0.3])
    assert _best_per_class(labels, scores, 2).tolist() == [1, 2, 3, 4, 5]  # not 0.2 of class 3
    assert _best_per_class(labels, scores, 1).tolist() == [1, 2, 5]


def test_a_candidate_cap_keeps_the_alignment_of_a_cluttered_view() -> None:
    """Hundreds of faint same-class detections per line (a weak detector): with the cap every
    detected sign still finds its detection; only faint matches of undetected signs may go."""
    hypotheses, text, (boxes, scores, labels) = synthetic_view(missing=2)
    rng = np.random.default_rng(3)
    faint = rng.uniform([100.0, 350.0], [1300.0, 850.0], size=(600, 2))
    boxes = np.concatenate([boxes, boxes_at(faint, 100.0, 120.0)])
    scores = np.concatenate([scores, rng.uniform(0.01, 0.05, size=600)])
    labels = np.concatenate([labels, rng.integers(1, 8, size=600)])
    capped = align_view(hypotheses, text, boxes, scores, labels, max_per_class=4)
    full = align_view(hypotheses, text, boxes, scores, labels)
    assert capped.assignment.tolist() == full.assignment.tolist() == [-1, 0, 1, 2]
    true = np.arange(22)  # the detections of the 22 detected signs come first
    assert set(true) <= set(capped.signs.det_idx) and set(true) <= set(full.signs.det_idx)
    assert set(capped.signs.det_idx) - {-1} <= set(full.signs.det_idx)
    columns = ["hyp_line", "line_idx", "pos_idx", "train_label"]
    pd.testing.assert_frame_equal(capped.signs[columns], full.signs[columns])
    with pytest.raises(ConfigError, match="max_per_class"):
        align_view(hypotheses, text, boxes, scores, labels, max_per_class=0)
