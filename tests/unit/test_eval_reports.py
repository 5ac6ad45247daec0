"""Reports: per-class table, metrics files, PR plot and segment drawing (atomic writes)."""

from __future__ import annotations

import json

import pandas as pd
import pytest
import torch
from matplotlib.figure import Figure
from PIL import Image

from cuneidet.eval import (
    PaperSignMAP,
    classify_detections,
    draw_segment_detections,
    per_class_table,
    write_metrics,
)


def _case() -> tuple[dict, dict]:
    """Segment with 3 GT (classes 1, 2, 2): one TP, one confusion FP, one background FP."""
    target = {
        "boxes": torch.tensor([[10, 10, 49, 49], [60, 10, 99, 49], [110, 60, 149, 99]]).float(),
        "labels": torch.tensor([1, 2, 2]),
    }
    pred = {
        "boxes": torch.tensor([[10, 10, 49, 49], [60, 10, 99, 49], [150, 100, 190, 140]]).float(),
        "scores": torch.tensor([0.9, 0.8, 0.7]),
        "labels": torch.tensor([1, 3, 2]),
    }
    return pred, target


def _result() -> dict:
    pred, target = _case()
    metric = PaperSignMAP()
    metric.update([pred], [target])
    return metric.compute()


def test_per_class_table_sorted_and_percent():
    frame = per_class_table(_result(), {1: "AŠ", 2: "DIŠ"})
    assert list(frame.columns) == ["train_label", "name", "ap", "num_gt", "num_det", "tp"]
    assert frame["train_label"].tolist() == [2, 1, 3]  # num_gt 2, 1, 0
    assert frame["name"].tolist() == ["DIŠ", "AŠ", ""]
    assert frame["ap"].iloc[1] == 100.0 and frame["ap"].iloc[0] == 0.0
    assert pd.isna(frame["ap"].iloc[2])  # class 3: detections but no GT
    assert per_class_table({"per_class": {}}).empty


def test_write_metrics_files(tmp_path):
    result = _result()
    coco = {"coco_map_50": 0.123456, "coco_num_images_over_cap": 0.0}
    payload = write_metrics(tmp_path / "eval", result, coco=coco, extra={"collection": "test"})
    out = tmp_path / "eval"
    assert sorted(p.name for p in out.iterdir()) == [
        "metrics.json",
        "per_class_ap.csv",
        "pr_curve.png",
    ]
    written = json.loads((out / "metrics.json").read_text(encoding="utf-8"))
    assert written == payload
    # classes 1 (AP 1) and 2 (AP 0, one background FP) -> mAP 50 %;
    # precision 1 / 2: the class-3 FP does not count (no class-3 GT), it is in total_fp_all
    assert written["map"] == 50.0 and written["fractions"]["map"] == 0.5
    assert written["precision"] == 50.0 and written["total_fp_all"] == 2
    assert written["coco_map_50"] == 12.35
    assert written["fractions"]["coco_map_50"] == 0.123456
    assert written["total_tp"] == 1 and written["extra"] == {"collection": "test"}
    table = pd.read_csv(out / "per_class_ap.csv")
    assert table["train_label"].tolist() == [2, 1, 3]
    with Image.open(out / "pr_curve.png") as png:
        assert png.format == "PNG" and png.size == (800, 600)


def test_write_metrics_nan_is_null(tmp_path):
    metric = PaperSignMAP()
    metric.update(
        [{"boxes": torch.zeros(0, 4), "scores": torch.zeros(0), "labels": torch.zeros(0).long()}],
        [{"boxes": torch.zeros(0, 4), "labels": torch.zeros(0).long()}],
    )
    with pytest.warns(UserWarning, match="no GT"):
        result = metric.compute()
    payload = write_metrics(tmp_path, result)
    assert payload["map"] is None and payload["fractions"]["map"] is None
    assert json.loads((tmp_path / "metrics.json").read_text())["map"] is None
    with Image.open(tmp_path / "pr_curve.png") as png:
        assert png.size == (800, 600)


def test_failed_plot_leaves_no_partial_file(tmp_path, monkeypatch):
    def boom(self, fname, *args, **kwargs):
        with open(fname, "wb") as handle:  # write half a file, then fail
            handle.write(b"\x89PNG")
        raise RuntimeError("disk full")

    monkeypatch.setattr(Figure, "savefig", boom)
    with pytest.raises(RuntimeError, match="disk full"):
        write_metrics(tmp_path, _result())
    assert sorted(p.name for p in tmp_path.iterdir()) == ["metrics.json", "per_class_ap.csv"]


@pytest.mark.parametrize("mode", ["L", "RGB"])
def test_draw_segment_detections(tmp_path, mode):
    pred, target = _case()
    image = Image.new(mode, (200, 150), 128 if mode == "L" else (128, 128, 128))
    classification = classify_detections(pred, target)
    path = draw_segment_detections(
        image, pred, target, classification, tmp_path / "seg.png", class_names={1: "AŠ"}
    )
    with Image.open(path) as png:
        band = png.height - 150  # legend band on top
        assert png.width == 200 and band > 0 and png.mode == "RGB"
        # TP box left edge (x=10) is green, the missed class-2 GT bottom-left corner is blue
        assert png.getpixel((10, 30 + band)) == (0, 190, 0)
        assert png.getpixel((110, 99 + band)) == (30, 110, 255)
    # classification computed when omitted gives the same picture
    again = draw_segment_detections(image, pred, target, None, tmp_path / "seg2.png")
    with Image.open(again) as png:
        assert png.size == (200, 150 + band)
        assert png.getpixel((10, 30 + band)) == (0, 190, 0)


def test_failed_drawing_leaves_no_file(tmp_path, monkeypatch):
    pred, target = _case()

    def boom(self, fp, *args, **kwargs):
        raise OSError("cannot write")

    monkeypatch.setattr(Image.Image, "save", boom)
    with pytest.raises(OSError, match="cannot write"):
        draw_segment_detections(Image.new("L", (200, 150)), pred, target, None, tmp_path / "x.png")
    assert list(tmp_path.iterdir()) == []
