"""Iteration stages on a synthetic CSDD: null hypotheses, alignment, placement, label quality."""

import numpy as np
import pandas as pd
import pytest

from cuneidet.data.csdd import CSDD
from cuneidet.data.detection_files import read_paper_csv, write_paper_csv
from cuneidet.data.line_geometry import LineHypotheses, MapGrid, TextLine
from cuneidet.errors import ConfigError
from cuneidet.lines.artifacts import write_view_artifacts
from cuneidet.pipeline.align_stage import (
    AlignSettings,
    align_views,
    aligned_and_placed,
    place_views,
)
from cuneidet.pipeline.detect import write_detections
from cuneidet.pipeline.initial import initial_hypotheses
from cuneidet.pipeline.quality import count_correct, precision_recall, real_truth
from cuneidet.pipeline.views import select_weak_views, to_global, to_scaled
from tests.synthetic_csdd import make_synthetic_csdd

IMAGE = (640, 760)  # (height, width) of every synthetic view, scale 1
ROW_CENTRES = [102.0, 252.0, 402.0, 552.0]  # rows of signs at y = 40 + 150 i, 124 px high


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    return make_synthetic_csdd(
        tmp_path_factory.mktemp("weak"), train_tablets=3, test_tablets=1, with_lines=True
    )


@pytest.fixture(scope="module")
def views(data_dir):
    csdd = CSDD(data_dir)
    return csdd, select_weak_views(csdd, box_sets=["train_full"])


def _hypotheses(centres) -> LineHypotheses:
    lines = [
        TextLine(
            index=i,
            angle=np.pi / 2,
            dist=0.0,
            votes=10.0,
            x_min=20.0,
            x_max=630.0,
            polyline=np.array([[20.0, y], [630.0, y]]),
            slope=0.0,
            intercept=y,
        )
        for i, y in enumerate(centres)
    ]
    grid = MapGrid()
    cells = np.zeros((17, 21), bool)
    for y in centres:
        cells[round(float(grid.to_map(y))), 0:17] = True
    return LineHypotheses(lines, 150.0, np.zeros(cells.shape, np.int32), cells, grid, IMAGE)


def _write_lines(line_dir, view, centres, assigned):
    hypotheses = _hypotheses(centres)
    meta = {"key": view.key}
    probability = hypotheses.line_map.astype(np.float32)
    write_view_artifacts(line_dir, view.stem, meta, hypotheses, np.asarray(assigned), probability)


def _truth(csdd, view):
    truths = real_truth(csdd, ["train_full"], {view.key: view})
    return truths[view.key]


def test_null_hypotheses_follow_the_assigned_lines(views, tmp_path):
    csdd, weak = views
    line_dir = tmp_path / "lines"
    for view in weak:
        _write_lines(line_dir, view, ROW_CENTRES, [0, 1, 2, 3])
    rows, counts = initial_hypotheses(weak, line_dir)
    assert counts["views_used"] == 3 and counts["lines_used"] == 12 and counts["signs"] == 48
    assert (rows["det_score"] == 1).all() and (rows["m_score"] == 1).all()
    boxes = to_scaled(rows[["x1", "y1", "x2", "y2"]].to_numpy(), weak[0].segment)
    assert np.allclose(boxes[:, 3] - boxes[:, 1], 128)  # 128 px high, prior width wide
    assert np.allclose(boxes[:, 2] - boxes[:, 0], 115)  # width ratio 0.9 x 128
    truths = real_truth(csdd, ["train_full"], {v.key: v for v in weak})
    quality = precision_recall(rows, {v.key: v for v in weak}, truths)
    assert quality["truth_boxes"] == 48 and quality["precision"] == 1.0 and quality["recall"] == 1.0


def test_a_view_without_lines_and_one_without_artifacts_are_counted(views, tmp_path):
    _, weak = views
    line_dir = tmp_path / "lines"
    _write_lines(line_dir, weak[0], [], [])
    rows, counts = initial_hypotheses(weak[:2], line_dir)
    assert rows.empty
    assert counts["views_without_lines"] == 1 and counts["views_without_line_artifacts"] == 1


def _detections(csdd, view, drop=(), rng=None):
    """Truth boxes as detections (score 0.9, jittered) plus low-score distractors and detections
    of classes the transliteration cannot name."""
    rng = rng or np.random.default_rng(0)
    truth = _truth(csdd, view)
    keep = np.array([i not in drop for i in range(len(truth.labels))])
    boxes = truth.boxes[keep] + rng.normal(0, 3, (int(keep.sum()), 4))
    distract = truth.boxes[:4] + np.array([60.0, 0, 60, 0])
    unknown = truth.boxes[:2]
    return {
        "boxes": np.concatenate([boxes, distract, unknown]),
        "scores": np.concatenate([np.full(len(boxes), 0.9), np.full(4, 0.05), [0.99, 0.99]]),
        "labels": np.concatenate([truth.labels[keep], truth.labels[:4], [0, 250]]),
    }


def test_alignment_finds_the_detected_signs_and_placement_the_missing_ones(views, tmp_path):
    csdd, weak = views
    line_dir, det_dir = tmp_path / "lines", tmp_path / "detect"
    det_dir.mkdir()
    dropped = {0: (1, 6), 1: (), 2: (13,)}  # signs without a detection, per view
    for n, view in enumerate(weak):
        # an extra detected line below the text: more lines than transliteration lines
        _write_lines(line_dir, view, [*ROW_CENTRES, 610.0], [0, 1, 2, 3, -1])
        write_detections(det_dir / f"{view.stem}.npz", _detections(csdd, view, dropped[n]))
    settings = AlignSettings(placement={"min_anchors": 1, "max_distance": 10})
    aligned, counts = align_views(weak, line_dir, det_dir, settings, workers=1, progress=False)
    assert counts["views"] == 3 and counts["detections_unknown_class"] == 6
    assert counts["views_more_lines_than_text"] == 3 and counts["lines_assigned"] == 12
    assert counts["signs_aligned"] == len(aligned) == 48 - 3
    truths = real_truth(csdd, ["train_full"], {v.key: v for v in weak})
    by_key = {v.key: v for v in weak}
    quality = precision_recall(aligned, by_key, truths)
    assert quality["precision"] == 1.0 and quality["correct"] == 45
    assert np.allclose(aligned["det_score"], 0.9, atol=1e-6)
    assert ((aligned["m_score"] >= 0) & (aligned["m_score"] < 1)).all()
    assert sorted(set(aligned["align_ratio"])) == [14 / 16, 15 / 16, 1.0]  # matched / visible
    # refined80: no box taller than 160 px around its line
    assert ((aligned["y2"] - aligned["y1"]) <= 161).all()

    placed, place_counts = place_views(weak, line_dir, aligned, settings, workers=1, progress=False)
    assert len(placed) == 3 and place_counts["signs_placed"] == 3
    assert ((placed["det_score"] == 1) & (placed["m_score"] == 1)).all()
    assert precision_recall(placed, by_key, truths)["precision"] == 1.0
    # the stage writes aligned.csv, reads it back and writes aligned ∪ placed
    written = read_paper_csv(write_paper_csv(aligned, tmp_path / "aligned.csv", header=False))
    both = aligned_and_placed(written, placed)
    assert precision_recall(both, by_key, truths)["recall"] == 1.0
    again = read_paper_csv(write_paper_csv(both, tmp_path / "generated.csv", header=False))
    assert len(again) == 48 and (again["m_score"] == 1).sum() == 3


def test_alignment_runs_the_same_in_a_process_pool(views, tmp_path):
    csdd, weak = views
    line_dir, det_dir = tmp_path / "lines", tmp_path / "detect"
    det_dir.mkdir()
    for view in weak:
        _write_lines(line_dir, view, ROW_CENTRES, [0, 1, 2, 3])
        write_detections(det_dir / f"{view.stem}.npz", _detections(csdd, view, (2,)))
    settings = AlignSettings()
    one, counts_one = align_views(weak, line_dir, det_dir, settings, workers=1, progress=False)
    two, counts_two = align_views(weak, line_dir, det_dir, settings, workers=2, progress=False)
    pd.testing.assert_frame_equal(one, two)
    assert counts_one == counts_two


def test_views_without_detections_or_with_far_too_many_lines_are_skipped(views, tmp_path):
    csdd, weak = views
    line_dir, det_dir = tmp_path / "lines", tmp_path / "detect"
    det_dir.mkdir()
    _write_lines(line_dir, weak[0], ROW_CENTRES, [0, 1, 2, 3])  # no detections written
    many = [20.0 + 40 * i for i in range(15)]  # 15 lines for 4 transliteration lines
    _write_lines(line_dir, weak[1], many, [-1] * 15)
    write_detections(det_dir / f"{weak[1].stem}.npz", _detections(csdd, weak[1]))
    _write_lines(line_dir, weak[2], [], [])
    rows, counts = align_views(weak, line_dir, det_dir, AlignSettings(), progress=False)
    assert rows.empty and list(rows.columns)[:3] == ["imageName", "folder", "image_path"]
    assert counts["views_without_detections"] == 1
    assert counts["views_line_mismatch_over_10"] == 1
    assert counts["views_without_lines"] == 1


def test_count_correct_is_one_to_one_and_class_aware(views):
    csdd, weak = views
    truth = _truth(csdd, weak[0])
    boxes = np.concatenate([truth.boxes[:3], truth.boxes[:1]])  # a duplicate of box 0
    labels = np.concatenate([truth.labels[:3], truth.labels[:1]])
    assert count_correct(boxes, labels, truth) == 3
    wrong = truth.labels[:3] % 3 + 1  # every label changed
    assert count_correct(truth.boxes[:3], wrong, truth) == 0
    segment = weak[0].segment
    assert np.allclose(to_scaled(to_global(truth.boxes, segment), segment), truth.boxes)


def test_weak_views_per_collection_are_spread_and_test_tablets_excluded(data_dir):
    csdd = CSDD(data_dir)
    every = select_weak_views(csdd, collections=["train", "test"])
    assert [v.key for v in every] == [f"test/{i}" for i in range(1)] + [
        f"train/{i}" for i in range(3)
    ]
    spread = select_weak_views(csdd, collections=["train"], per_collection=2)
    assert [v.key for v in spread] == ["train/0", "train/2"]
    kept = select_weak_views(csdd, collections=["train", "test"], exclude_tablets=["TEST000"])
    assert all(v.segment.tablet != "TEST000" for v in kept)
    with pytest.raises(ConfigError, match="no weak view"):
        select_weak_views(csdd, collections=["test"], exclude_tablets=["TEST000"])


def test_forge_truth_keeps_visible_known_signs_in_scaled_pixels(views):
    from cuneidet.pipeline.quality import forge_truth

    _, weak = views
    view = weak[0]
    frame = pd.DataFrame(
        {
            "collection": ["train"] * 4 + ["other"],
            "segm_idx": [view.segment.segm_idx] * 4 + [0],
            "relative_bbox": [
                "[10, 20, 110, 140]",
                "[0, 0, 5, 5]",
                "[1, 1, 9, 9]",
                "[2, 2, 8, 8]",
                "[0, 0, 1, 1]",
            ],
            "train_label": [3, 2, 0, 250, 1],
            "status": [1, 0, 2, 1, 1],
        }
    )
    truths = forge_truth(frame, {view.key: view})
    assert list(truths) == [view.key]  # the other collection's view is not a weak view
    truth = truths[view.key]
    assert truth.labels.tolist() == [3]  # broken (status 0), label 0 and ≥ 240 left out
    assert np.allclose(truth.boxes, [[10, 20, 110, 140]])  # scale 1
