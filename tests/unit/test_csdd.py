"""Loading, validation and counting of the CSDD tables (cuneidet.data.csdd)."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from cuneidet.data.csdd import CSDD, NUM_DETECTOR_CLASSES, WEAK_COLLECTIONS
from cuneidet.data.location import resolve_data_dir
from cuneidet.data.sources import FolderSource
from cuneidet.data.summaries import (
    annotated_tablets,
    box_set_summary,
    dataset_summary,
    weak_set_summary,
)
from cuneidet.data.tables import parse_bbox_column, parse_segment_key
from cuneidet.data.views import AnnotatedSegment, annotated_segments
from cuneidet.errors import ConfigError, DataFormatError, DataNotFoundError
from tests.fixtures_csdd import BOX_ROWS, TINY_COUNTS, make_tiny_csdd


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    return make_tiny_csdd(tmp_path / "data")


@pytest.fixture
def csdd(data_dir: Path) -> CSDD:
    return CSDD(data_dir)


def _rewrite(path: Path, edit) -> None:
    """Apply ``edit`` (in place, or returning a new frame) to a CSV read as text."""
    frame = pd.read_csv(path, dtype=str, keep_default_na=False)
    edited = edit(frame)
    (frame if edited is None else edited).to_csv(path, index=False)


# -- discovery and errors --------------------------------------------------------------------


def test_discovers_names_from_files(csdd: CSDD) -> None:
    assert csdd.collections == ("saa01", "train")
    assert csdd.box_sets == ("train_full", "train_B")
    assert csdd.line_splits == ("test", "train")


def test_missing_data_dir_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(DataNotFoundError, match="No csdd/ folder"):
        CSDD(tmp_path)


def test_pointing_at_csdd_folder_suggests_parent(data_dir: Path) -> None:
    with pytest.raises(DataNotFoundError, match="use its parent"):
        CSDD(data_dir / "csdd")


def test_unknown_collection_lists_valid_names(csdd: CSDD) -> None:
    with pytest.raises(ConfigError, match=r"Unknown collection.*saa99.*saa01, train"):
        csdd.segments(["saa99"])


def test_unknown_box_set_lists_valid_names(csdd: CSDD) -> None:
    with pytest.raises(ConfigError, match=r"train_Z.*train_full, train_B"):
        csdd.boxes("train_Z")
    with pytest.raises(ConfigError, match="train_Z"):
        annotated_segments(csdd, ["train_full", "train_Z"])


def test_empty_selection_is_an_error(csdd: CSDD) -> None:
    with pytest.raises(ConfigError, match="Empty collection selection"):
        csdd.segments([])
    with pytest.raises(ConfigError, match="Empty box set selection"):
        annotated_segments(csdd, [])


def test_unknown_line_split(csdd: CSDD) -> None:
    with pytest.raises(ConfigError, match="valid names: test, train"):
        csdd.lines("val")


# -- tables and types ------------------------------------------------------------------------


def test_segments_columns_and_types(csdd: CSDD) -> None:
    all_segments = csdd.segments(assigned_only=False)
    assert list(all_segments.columns) == [
        "collection",
        "segm_idx",
        "tablet_CDLI",
        "view_desc",
        "x0",
        "y0",
        "x1",
        "y1",
        "scale",
        "assigned",
    ]
    assert len(all_segments) == 10
    for column in ("segm_idx", "x0", "y0", "x1", "y1"):
        assert all_segments[column].dtype == np.int64
    assert all_segments["scale"].dtype == np.float64
    assert all_segments["assigned"].dtype == bool
    assigned = csdd.segments(["train"])
    assert assigned["segm_idx"].tolist() == [0, 1, 3]
    assert assigned["assigned"].all() and np.isfinite(assigned["scale"]).all()
    first = assigned.iloc[0]
    assert (first.x0, first.y0, first.x1, first.y1, first.scale) == (10, 20, 110, 100, 2.0)
    unassigned = all_segments[~all_segments["assigned"]]
    assert unassigned["scale"].isna().all() and (unassigned["view_desc"] == "").all()


def test_accessors_return_copies(csdd: CSDD) -> None:
    frame = csdd.segments(["train"])
    frame.loc[0, "x0"] = 999
    assert csdd.segments(["train"]).loc[0, "x0"] == 10


def test_segm_idx_is_unique_per_collection_only(csdd: CSDD) -> None:
    both = csdd.segments(assigned_only=False)
    assert both["segm_idx"].duplicated().any()
    assert not both[["collection", "segm_idx"]].duplicated().any()
    assert csdd.segment("saa01", 0)["tablet_CDLI"] == "W001"
    with pytest.raises(ConfigError, match="Unknown segment train/42"):
        csdd.segment("train", 42)


def test_transliterations(csdd: CSDD) -> None:
    signs = csdd.transliterations(["saa01"])
    assert len(signs) == 8
    assert set(signs["collection"]) == {"saa01"}
    assert signs["train_label"].dtype == np.int64
    assert signs["segm_idx"].tolist()[:5] == [0] * 5
    assert len(csdd.transliterations()) == 14


def test_view_transliteration_rows(csdd: CSDD) -> None:
    signs = csdd.transliterations(["saa01"])
    first = signs.iloc[0]
    rows = csdd.view_transliteration_rows("saa01", int(first["segm_idx"]), first["tablet_CDLI"])
    same_view = (signs["segm_idx"] == first["segm_idx"]) & (
        signs["tablet_CDLI"] == first["tablet_CDLI"]
    )
    pd.testing.assert_frame_equal(
        rows.reset_index(drop=True), signs[same_view].reset_index(drop=True)
    )
    rows.loc[rows.index[0], "status"] = 99  # a copy: the cached table is untouched
    assert (csdd.transliterations(["saa01"])["status"] != 99).all()
    assert csdd.view_transliteration_rows("saa01", 12345, "NOPE").empty
    with pytest.raises(ConfigError, match="nope"):
        csdd.view_transliteration_rows("nope", 0, "X")


def test_boxes_drop_unassigned_rows_with_warning(
    csdd: CSDD, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="cuneidet.data.csdd"):
        boxes = csdd.boxes("train_full")
    assert "skipped 1 of 8 rows (segm_idx = -1" in caplog.text
    assert len(boxes) == 7 and (boxes["segm_idx"] >= 0).all()
    assert list(boxes.columns[:6]) == [
        "collection",
        "segm_idx",
        "tablet_CDLI",
        "view_desc",
        "mzl_label",
        "train_label",
    ]
    assert boxes["train_label"].tolist() == [1, 2, 0, 3, 250, 5, 1]  # all labels kept
    assert boxes[["gx1", "gy1", "gx2", "gy2"]].dtypes.eq(np.int64).all()
    sub_pixel = boxes.iloc[3]
    assert (sub_pixel.rx1, sub_pixel.ry1, sub_pixel.rx2, sub_pixel.ry2) == (12.5, 10.25, 40, 50)
    assert (sub_pixel.gx1, sub_pixel.gy1) == (22, 120)
    raw = csdd.raw_boxes("train_full")
    assert len(raw) == 8 and np.isnan(raw.iloc[7][["rx1", "ry1", "rx2", "ry2"]].astype(float)).all()


def test_boxes_column_order_does_not_matter(csdd: CSDD) -> None:
    subset = csdd.boxes("train_B")
    full = csdd.boxes("train_full")
    assert list(subset.columns) == list(full.columns)
    assert subset["train_label"].tolist() == [1, 2, 5]
    assert subset.iloc[0]["tablet_CDLI"] == "TAB001"


def test_degenerate_boxes_are_counted_and_skipped(
    data_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = data_dir / "csdd" / "annotations" / "bbox_annotations_train_full.csv"
    degenerate = ["0", "TAB001", "Obv", "train", "1", "1", "[60, 60, 50, 70]", "[50, 40, 40, 50]"]
    _rewrite(path, lambda f: f.loc.__setitem__(len(f), degenerate))
    with caplog.at_level(logging.WARNING, logger="cuneidet.data.csdd"):
        boxes = CSDD(data_dir).boxes("train_full")
    assert len(boxes) == 7
    assert "skipped 1 of 9 rows (degenerate box" in caplog.text


def test_missing_column_names_file_and_column(data_dir: Path) -> None:
    path = data_dir / "csdd" / "segments" / "tablet_segments_train.csv"
    _rewrite(path, lambda f: f.drop(columns="scale"))
    with pytest.raises(DataFormatError) as info:
        CSDD(data_dir).segments(["train"])
    message = str(info.value)
    assert "tablet_segments_train.csv" in message
    assert "missing required column(s) ['scale']" in message
    assert "expected columns" in message and "'assigned'" in message


def test_malformed_bbox_names_file_row_and_value(data_dir: Path) -> None:
    path = data_dir / "csdd" / "annotations" / "bbox_annotations_train_full.csv"
    _rewrite(path, lambda f: f.loc.__setitem__((2, "bbox"), "[20, 65, fifty, 95]"))
    with pytest.raises(DataFormatError) as info:
        CSDD(data_dir).boxes("train_full")
    message = str(info.value)
    assert "bbox_annotations_train_full.csv" in message
    assert "row 4 " in message  # data row index 2 → line 4 (header = line 1)
    assert "'[20, 65, fifty, 95]'" in message


def test_empty_relative_bbox_on_assigned_row_is_an_error(data_dir: Path) -> None:
    path = data_dir / "csdd" / "annotations" / "bbox_annotations_train_full.csv"
    _rewrite(path, lambda f: f.loc.__setitem__((0, "relative_bbox"), "[]"))
    with pytest.raises(DataFormatError, match=r"row 2 .*empty relative_bbox"):
        CSDD(data_dir).boxes("train_full")


def test_non_integer_values_name_the_row(data_dir: Path) -> None:
    path = data_dir / "csdd" / "segments" / "tablet_segments_saa01.csv"
    _rewrite(path, lambda f: f.loc.__setitem__((1, "segm_idx"), "one"))
    with pytest.raises(DataFormatError, match=r"tablet_segments_saa01.csv: row 3 .*'one'"):
        CSDD(data_dir).segments(["saa01"])


def test_assigned_segment_without_scale_is_an_error(data_dir: Path) -> None:
    path = data_dir / "csdd" / "segments" / "tablet_segments_train.csv"
    _rewrite(path, lambda f: f.loc.__setitem__((0, "scale"), ""))
    with pytest.raises(DataFormatError, match="assigned segment with scale"):
        CSDD(data_dir).segments(["train"])


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("[805, 1979, 871, 2055]", [805, 1979, 871, 2055]),
        ("[ 1.5 ,2,3.25, 4 ]", [1.5, 2, 3.25, 4]),
        ("(1, 2, 3, 4)", [1, 2, 3, 4]),
        ("[1 2 3 4]", [1, 2, 3, 4]),
        ("[-1, 2e1, 3., 4]", [-1, 20, 3, 4]),
    ],
)
def test_parse_bbox_variants(text: str, expected: list[float]) -> None:
    parsed = parse_bbox_column(pd.Series([text]), "x.csv", "bbox")
    np.testing.assert_allclose(parsed[0], expected)


def test_parse_bbox_empty_allowed_only_when_asked() -> None:
    values = pd.Series(["[1, 2, 3, 4]", "[]", None])
    parsed = parse_bbox_column(values, "x.csv", "relative_bbox", allow_empty=True)
    assert np.isnan(parsed[1:]).all() and not np.isnan(parsed[0]).any()
    with pytest.raises(DataFormatError, match=r"x.csv: malformed bbox '\[\]' in row 3"):
        parse_bbox_column(values, "x.csv", "bbox")
    with pytest.raises(DataFormatError, match="row 2"):
        parse_bbox_column(pd.Series(["[1, 2, 3]"]), "x.csv", "bbox")


def test_parse_segment_key() -> None:
    assert parse_segment_key("saa06/123") == ("saa06", 123)
    assert parse_segment_key(" test / 3 ") == ("test", 3)
    with pytest.raises(ConfigError, match="expected '<collection>/<segm_idx>'"):
        parse_segment_key("test-3")


def test_lines_join_collection_and_keep_point_order(csdd: CSDD) -> None:
    lines = csdd.lines("train")
    assert list(lines.columns) == ["collection", "segm_idx", "tablet_CDLI", "line_idx", "x", "y"]
    assert set(lines["collection"]) == {"train"}
    first = lines[(lines["segm_idx"] == 0) & (lines["line_idx"] == 0)]
    assert first["x"].tolist() == [5, 50, 95] and first["y"].tolist() == [25, 27, 24]
    assert lines["x"].dtype == np.int64
    assert csdd.lines("test").empty


# -- labels ----------------------------------------------------------------------------------


def test_label_map_round_trip_names_and_glyphs(csdd: CSDD) -> None:
    labels = csdd.labels
    assert labels.max_label == 250 and labels.num_labels == 6
    for mzl, label in {1: 1, 11: 2, 110: 3, 27: 4, 839: 5, 900: 250}.items():
        assert labels.train_label(mzl) == label
        assert labels.mzl(label) == mzl
    assert labels.train_label(2) == 0 and labels.train_label(5000) == 0
    assert labels.name(1) == "AŠ" and labels.glyph(1) == "\U00012038"  # first row of MZL 1
    assert labels.glyph(2) == "\U00012038\U000122e9"  # two code points concatenated
    assert labels.name(4) == "KA×TU" and labels.glyph(4) == ""
    assert labels.name(0) == "background" and labels.glyph(0) == ""
    assert labels.name(7) == "#7"  # unknown labels are named, not fatal


def test_label_validate(csdd: CSDD) -> None:
    labels = csdd.labels
    assert labels.validate(0) == 0 and labels.validate(np.int64(250)) == 250
    for bad in (251, 7, -1, 2.5):
        with pytest.raises(ConfigError, match="train_label"):
            labels.validate(bad)
    with pytest.raises(ConfigError, match=r"valid labels are 0 .* 1…250"):
        labels.validate(999)


def test_duplicate_train_label_is_rejected(data_dir: Path) -> None:
    path = data_dir / "csdd" / "meta" / "newLabels.json"
    values = json.loads(path.read_text())
    values[2] = 1  # MZL 2 also → label 1
    path.write_text(json.dumps(values))
    with pytest.raises(DataFormatError, match="train_label 1 is used by MZL 1 and 2"):
        _ = CSDD(data_dir).labels


def test_sign_width_priors(csdd: CSDD) -> None:
    priors = csdd.sign_width_priors
    assert priors[1] == (0.71875, 0.9375) and sorted(priors) == [1, 2, 3, 4, 5]


# -- annotated segments ----------------------------------------------------------------------


def test_annotated_segments(csdd: CSDD) -> None:
    segments = annotated_segments(csdd, ["train_full"])
    assert [s.key for s in segments] == ["train/0", "train/1", "train/3"]
    first = segments[0]
    assert isinstance(first, AnnotatedSegment)
    assert (first.tablet, first.view, first.name) == ("TAB001", "Obv", "TAB001 Obv")
    assert first.bbox == (10, 20, 110, 100) and first.scale == 2.0 and first.size == (100, 80)
    assert first.boxes.dtype == np.float32 and first.labels.dtype == np.int64
    np.testing.assert_array_equal(first.boxes[0], [10, 10, 40, 40])
    np.testing.assert_array_equal(first.scaled_boxes()[0], [20, 20, 80, 80])
    assert first.labels.tolist() == [1, 2, 0]
    assert segments[1].labels.tolist() == [3, NUM_DETECTOR_CLASSES + 10]
    np.testing.assert_allclose(segments[1].boxes[0], [12.5, 10.25, 40, 50])
    assert sum(len(s.labels) for s in segments) == len(BOX_ROWS) - 1


def test_annotated_segments_union_is_deduplicated(csdd: CSDD) -> None:
    def flat(segments: list[AnnotatedSegment]) -> list[tuple]:
        return [(s.key, s.boxes.tobytes(), s.labels.tolist()) for s in segments]

    full = annotated_segments(csdd, ["train_full"])
    assert flat(annotated_segments(csdd, ["train_full", "train_B"])) == flat(full)
    assert flat(annotated_segments(csdd, ["train_B", "train_full"])) == flat(full)
    subset = annotated_segments(csdd, ["train_B", "train_B"])
    assert flat(subset) == flat(annotated_segments(csdd, ["train_B"]))
    assert sum(len(s.labels) for s in subset) == 3


def test_boxes_on_unassigned_segments_are_skipped(
    data_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = data_dir / "csdd" / "annotations" / "bbox_annotations_train_B.csv"
    row = ["2", "train", "TAB001", "", "1", "1", "[130, 30, 160, 60]", "[10, 10, 40, 40]"]
    _rewrite(path, lambda f: f.loc.__setitem__(len(f), row))
    with caplog.at_level(logging.WARNING, logger="cuneidet.data.csdd"):
        segments = annotated_segments(CSDD(data_dir), ["train_B"])
    assert [s.key for s in segments] == ["train/0", "train/3"]
    assert "skipped 1 boxes on 1 segments that are not assigned" in caplog.text


def test_annotated_segment_validates_shapes() -> None:
    with pytest.raises(ValueError, match="2 boxes but 1 labels"):
        AnnotatedSegment("c", 1, "T", "Obv", (0, 0, 1, 1), 1.0, np.zeros((2, 4)), np.zeros(1))


# -- summary ---------------------------------------------------------------------------------


def test_dataset_summary_matches_the_fixture(csdd: CSDD, data_dir: Path) -> None:
    summary = dataset_summary(csdd, FolderSource(data_dir / "csdd" / "images"))
    assert summary["box_sets"] == TINY_COUNTS["box_sets"]
    assert summary["collections"] == TINY_COUNTS["collections"]
    assert summary["weak_set"] == TINY_COUNTS["weak_set"]
    assert summary["photos"]["tablets"] == 2 and summary["photos"]["missing"] == []
    assert annotated_tablets(csdd) == TINY_COUNTS["annotated_tablets"]
    json.dumps(summary)  # JSON-serialisable


def test_dataset_summary_reports_missing_photos(csdd: CSDD, data_dir: Path) -> None:
    (data_dir / "csdd" / "images" / "TAB002.jpg").unlink()
    photos = dataset_summary(csdd, FolderSource(data_dir / "csdd" / "images"))["photos"]
    assert photos["missing_count"] == 1 and photos["missing"] == ["TAB002"]


def test_real_dataset_counts_match_the_readme() -> None:
    """train_full 4,663 / 67 / 47, test_full 3,446 / 57 / 34, weak set 2,983 / 1,745."""
    try:
        data_dir = resolve_data_dir()
    except DataNotFoundError:
        pytest.skip("no CSDD data directory (set CUNEIDET_DATA_DIR to run this test)")
    csdd = CSDD(data_dir)
    if not {"train_full", "test_full"} <= set(csdd.box_sets):
        pytest.skip(f"{data_dir} has no train_full/test_full box sets")
    train, test = box_set_summary(csdd, "train_full"), box_set_summary(csdd, "test_full")
    assert (train["in_range_boxes"], train["segments"], train["tablets"]) == (4663, 67, 47)
    assert (test["in_range_boxes"], test["segments"], test["tablets"]) == (3446, 57, 34)
    weak = weak_set_summary(csdd)
    assert weak["collections"] == list(WEAK_COLLECTIONS)
    assert (weak["segments"], weak["tablets"]) == (2983, 1745)
    assert len(annotated_segments(csdd, ["train_full"])) == 67
    assert len(annotated_segments(csdd, ["test_full"])) == 57
