"""Exports: the paper's detection CSV (round trip, reference files) and COCO JSON."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from pycocotools.coco import COCO

from cuneidet.errors import ConfigError, DataFormatError
from cuneidet.inference import (
    OPTIONAL_COLUMNS,
    PAPER_COLUMNS,
    PREDICTION_COLUMNS,
    categories_from_label_map,
    from_coco,
    read_paper_csv,
    to_coco,
    write_coco_json,
    write_paper_csv,
)

REFERENCE_LINES = (
    "P336009, saa01/images/, ../data/images/saa01/P336009.jpg, 839, 5, 1234.5, 567.8, 1300.1, "
    "690.2, 66.6, 123.4, 3, 2, 7, 0.873112, 0.4512, 0.75\n"
    "P336009, saa01/images/, ../data/images/saa01/P336009.jpg, 2, 14, 1400.0, 560.0, 1480.0, "
    "688.0, 81.0, 129.0, 3, 2, 8, 1.0, 1.0, 0.75\n"
)


class FakeLabelMap:
    def mzl(self, train_label: int) -> int:
        return 1000 + train_label

    def name(self, train_label: int) -> str:
        return f"SIGN{train_label}"


def _detections() -> pd.DataFrame:
    """Three detections on two photos, in the layout of ``predict_photos``."""
    frame = pd.DataFrame(
        {
            "imageName": ["P1", "P1", "K2"],
            "folder": ["saa01/images/", "saa01/images/", ""],
            "image_path": ["/data/P1.jpg", "/data/P1.jpg", ""],
            "segm_idx": [4, 4, -1],
            "train_label": [5, 17, 239],
            "det_score": [0.8731120228767395, 0.011, 0.5],
            "x1": [120.04, 300.0, 10.0],
            "y1": [56.96, 80.5, 20.0],
            "x2": [180.44, 364.25, 74.0],
            "y2": [120.0, 150.0, 100.0],
            "sx1": [40.08, 400.0, 20.0],
            "sy1": [13.92, 61.0, 40.0],
            "sx2": [160.88, 528.5, 148.0],
            "sy2": [140.0, 200.0, 200.0],
            "scale": [2.0, 2.0, 2.0],
        },
        columns=list(PREDICTION_COLUMNS),
    )
    frame.attrs["images"] = [
        {"id": 1, "file_name": "P1", "width": 800, "height": 600},
        {"id": 2, "file_name": "K2", "width": 200, "height": 150},
    ]
    return frame


@pytest.mark.parametrize("header", [True, False])
def test_paper_csv_round_trip(tmp_path: Path, header: bool) -> None:
    path = write_paper_csv(_detections(), tmp_path / "dets.csv", FakeLabelMap(), header=header)
    back = read_paper_csv(path)
    assert list(back.columns) == [*PAPER_COLUMNS, *OPTIONAL_COLUMNS]
    assert back.imageName.tolist() == ["P1", "P1", "K2"]
    assert back.folder.tolist() == ["saa01/images/", "saa01/images/", ""]
    assert back.image_path.tolist() == ["/data/P1.jpg", "/data/P1.jpg", ""]
    assert back.mzl_label.tolist() == [1005, 1017, 1239]
    assert back.train_label.tolist() == [5, 17, 239]
    assert back.segm_idx.tolist() == [4, 4, -1]
    np.testing.assert_array_equal(back.x1, [120.0, 300.0, 10.0])  # one decimal, as the paper
    np.testing.assert_array_equal(back.x2, [180.4, 364.2, 74.0])
    np.testing.assert_array_equal(back.width, [61.4, 65.2, 65.0])  # x2 - x1 + 1
    np.testing.assert_array_equal(back.height, [64.0, 70.5, 81.0])
    assert back.det_score.tolist() == _detections().det_score.tolist()  # exact
    # raw detections: not aligned
    assert (back[["line_idx", "pos_idx"]] == -1).all().all()
    assert (back[["m_score", "align_ratio"]] == -1.0).all().all()
    assert back.nms_keep.tolist() == [True] * 3
    assert back.compl.tolist() == [50.0] * 3 and back.ncompl.tolist() == [100.0] * 3
    for column in ("mzl_label", "train_label", "segm_idx", "line_idx", "pos_idx"):
        assert back[column].dtype == np.int64


def test_headerless_file_has_reference_layout_and_rewrites_identically(tmp_path: Path) -> None:
    first = write_paper_csv(_detections(), tmp_path / "a.csv", header=False)
    lines = first.read_text().splitlines()
    assert len(lines) == 3
    fields = lines[0].split(", ")
    assert len(fields) == len(PAPER_COLUMNS)
    assert fields[:5] == ["P1", "saa01/images/", "/data/P1.jpg", "-1", "5"]
    assert fields[5:11] == ["120.0", "57.0", "180.4", "120.0", "61.4", "64.0"]
    assert fields[11:] == ["4", "-1", "-1", "0.8731120228767395", "-1.0", "-1.0"]
    back = read_paper_csv(first)
    second = write_paper_csv(back, tmp_path / "b.csv", header=False)
    lines_again = second.read_text().splitlines()
    # the re-written file carries the filled reader-only columns (1/50/100) at the end
    assert [line.rsplit(", ", 3)[0] for line in lines_again] == lines
    assert all(line.endswith(", 1, 50.0, 100.0") for line in lines_again)
    pd.testing.assert_frame_equal(read_paper_csv(second), back)


def test_read_reference_headerless_lines(tmp_path: Path) -> None:
    path = tmp_path / "line_generated_bboxes_refined80_saa01.csv"
    path.write_text(REFERENCE_LINES)
    frame = read_paper_csv(path)
    assert len(frame) == 2
    row = frame.iloc[0]
    assert row.imageName == "P336009"
    assert row.folder == "saa01/images/"
    assert row.image_path == "../data/images/saa01/P336009.jpg"
    assert (row.mzl_label, row.train_label, row.segm_idx, row.line_idx, row.pos_idx) == (
        839,
        5,
        3,
        2,
        7,
    )
    assert (row.x1, row.y1, row.x2, row.y2) == (1234.5, 567.8, 1300.1, 690.2)
    assert (row.width, row.height) == (66.6, 123.4)
    assert (row.det_score, row.m_score, row.align_ratio) == (0.873112, 0.4512, 0.75)
    assert (row.nms_keep, row.compl, row.ncompl) == (True, 50.0, 100.0)
    placed = frame.iloc[1]
    assert placed.det_score == placed.m_score == 1.0


def test_read_reference_header_names_and_plain_commas(tmp_path: Path) -> None:
    header = (
        "imageName, folder, image_path, label, train_label, x1, y1, x2, y2, width, height, "
        "segm_idx, line_number, sign_position_in_line, score, m_score, align_ratio\n"
    )
    path = tmp_path / "with_header.csv"
    path.write_text(header + REFERENCE_LINES.replace(", ", ","))
    frame = read_paper_csv(path)
    assert list(frame.columns) == [*PAPER_COLUMNS, *OPTIONAL_COLUMNS]
    assert frame.mzl_label.tolist() == [839, 2]
    assert frame.pos_idx.tolist() == [7, 8]
    assert frame.det_score.tolist() == [0.873112, 1.0]


def test_read_reference_lines_with_optional_columns(tmp_path: Path) -> None:
    path = tmp_path / "twenty.csv"
    path.write_text(REFERENCE_LINES.splitlines()[0] + ", 0, 3.5, 12.0\n")
    frame = read_paper_csv(path)
    assert frame.nms_keep.tolist() == [False]
    assert (frame.compl.iloc[0], frame.ncompl.iloc[0]) == (3.5, 12.0)


def test_paper_csv_rejects_what_the_format_cannot_hold(tmp_path: Path) -> None:
    commas = _detections()
    commas.loc[0, "image_path"] = "/data/a,b.jpg"
    with pytest.raises(DataFormatError, match="comma"):
        write_paper_csv(commas, tmp_path / "x.csv")
    with pytest.raises(DataFormatError, match="det_score"):
        write_paper_csv(_detections().drop(columns="det_score"), tmp_path / "x.csv")
    assert not (tmp_path / "x.csv").exists()
    too_wide = tmp_path / "wide.csv"
    too_wide.write_text(REFERENCE_LINES.splitlines()[0] + ", 1, 2, 3, 4\n")
    with pytest.raises(DataFormatError, match="fields"):
        read_paper_csv(too_wide)


def test_paper_csv_empty(tmp_path: Path) -> None:
    path = write_paper_csv(_detections().iloc[:0], tmp_path / "empty.csv", header=False)
    assert path.read_text() == ""
    frame = read_paper_csv(path)
    assert frame.empty and list(frame.columns) == [*PAPER_COLUMNS, *OPTIONAL_COLUMNS]


def test_coco_json_loads_in_pycocotools(tmp_path: Path) -> None:
    detections = _detections()
    categories = categories_from_label_map(FakeLabelMap())
    path = write_coco_json(detections, tmp_path / "dets.json", None, categories)
    coco = COCO(str(path))
    assert len(coco.getImgIds()) == 2
    assert len(coco.getAnnIds()) == 3
    assert len(coco.getCatIds()) == 239
    assert len(coco.getAnnIds(imgIds=[1])) == 2 and len(coco.getAnnIds(imgIds=[2])) == 1
    first = coco.loadAnns(coco.getAnnIds(imgIds=[1], catIds=[5]))[0]
    assert first["bbox"] == pytest.approx([120.04, 56.96, 60.4, 63.04])
    assert first["score"] == pytest.approx(0.8731120228767395)
    assert coco.loadCats([239])[0]["name"] == "SIGN239"
    results = coco.loadRes(json.loads(path.read_text())["annotations"])
    assert len(results.getAnnIds()) == 3


def test_coco_scaled_frame_explicit_images_and_round_trip() -> None:
    detections = _detections()
    images = [
        {"id": 7, "file_name": "P1.jpg", "width": 1600, "height": 1200},
        {"id": 9, "file_name": "K2.png", "width": 400, "height": 300},
    ]
    coco = to_coco(detections, images, {5: "a", 17: "b", 239: "c"}, frame="scaled")
    assert [a["image_id"] for a in coco["annotations"]] == [7, 7, 9]
    assert coco["annotations"][1]["bbox"] == pytest.approx([400.0, 61.0, 128.5, 139.0])
    back = from_coco(coco)
    assert back.imageName.tolist() == ["P1", "P1", "K2"]
    np.testing.assert_allclose(
        back[["x1", "y1", "x2", "y2"]], detections[["sx1", "sy1", "sx2", "sy2"]]
    )
    assert back.train_label.tolist() == [5, 17, 239]


def test_coco_rejects_unknown_images_and_categories() -> None:
    detections = _detections()
    with pytest.raises(DataFormatError, match="K2"):
        to_coco(detections, detections.attrs["images"][:1], {5: "a", 17: "b", 239: "c"})
    with pytest.raises(DataFormatError, match="239"):
        to_coco(detections, None, {5: "a", 17: "b"})


class PartialLabelMap(FakeLabelMap):
    """A sign list that knows only labels below 100 (a model with more classes than it)."""

    def mzl(self, train_label: int) -> int:
        if train_label >= 100:
            raise ConfigError(f"Unknown train_label {train_label}")
        return super().mzl(train_label)


def test_labels_the_sign_list_does_not_know_get_mzl_minus_one(tmp_path: Path) -> None:
    path = write_paper_csv(_detections(), tmp_path / "d.csv", label_map=PartialLabelMap())
    assert read_paper_csv(path)["mzl_label"].tolist() == [1005, 1017, -1]
