"""Generated annotations as training data: filters, frames, views held out, line ignore maps."""

import json
import logging

import numpy as np
import pandas as pd
import pytest

from cuneidet.data.csdd import CSDD
from cuneidet.data.datamodule import CSDDDataModule
from cuneidet.data.detection_files import write_paper_csv
from cuneidet.data.generated import generated_segments, read_generated
from cuneidet.data.segments import view_stem
from cuneidet.errors import ConfigError, DataFormatError
from tests.synthetic_csdd import make_synthetic_csdd


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    return make_synthetic_csdd(tmp_path_factory.mktemp("gen"), train_tablets=4, test_tablets=2)


def _truth_rows(data_dir, sets=("train_full", "test_full")) -> pd.DataFrame:
    """The synthetic truth boxes as generated rows (global px; segments sit at the origin)."""
    csdd = CSDD(data_dir)
    frames = []
    for name in sets:
        boxes = csdd.boxes(name)
        xyxy = boxes[["gx1", "gy1", "gx2", "gy2"]].to_numpy(np.float64)
        frames.append(
            pd.DataFrame(
                {
                    "imageName": boxes["tablet_CDLI"],
                    "folder": boxes["collection"] + "/images/",
                    "train_label": boxes["train_label"],
                    "x1": xyxy[:, 0],
                    "y1": xyxy[:, 1],
                    "x2": xyxy[:, 2],
                    "y2": xyxy[:, 3],
                    "segm_idx": boxes["segm_idx"],
                    "det_score": 1.0,
                    "m_score": 1.0,
                    "align_ratio": 0.9,
                }
            )
        )
    return pd.concat(frames, ignore_index=True)


def test_read_generated_applies_the_reference_filters(data_dir, tmp_path):
    rows = _truth_rows(data_dir, ["train_full"]).head(6).copy()
    rows.loc[0, "align_ratio"] = 0.2  # not > 0.2: dropped
    rows.loc[1, "train_label"] = 250  # ≥ 240: dropped
    rows.loc[2, "train_label"] = 0  # background box: kept
    path = write_paper_csv(rows, tmp_path / "gen.csv", header=False)
    kept = read_generated([path])
    assert len(kept) == 4 and set(kept["collection"]) == {"train"}
    assert 0 in set(kept["train_label"])
    assert len(read_generated([path], min_align_ratio=0.95)) == 0


def test_read_generated_names_the_file_of_a_row_without_collection(data_dir, tmp_path):
    rows = _truth_rows(data_dir, ["train_full"]).head(2).copy()
    rows["folder"] = ""
    path = write_paper_csv(rows, tmp_path / "bad.csv")
    with pytest.raises(DataFormatError, match=r"bad\.csv"):
        read_generated([path])


def test_generated_segments_are_segment_local_and_skip_unknown_views(data_dir, caplog):
    csdd = CSDD(data_dir)
    rows = _truth_rows(data_dir, ["train_full"])
    rows["collection"] = "train"
    stray = rows.head(2).copy()
    stray["segm_idx"] = 99
    with caplog.at_level(logging.WARNING):
        segments = generated_segments(csdd, pd.concat([rows, stray], ignore_index=True))
    assert "skipped 2 generated rows" in caplog.text
    truth = {s.key: s for s in csdd_segments(csdd)}
    assert {s.key for s in segments} == set(truth)
    for segment in segments:
        assert np.allclose(segment.boxes, truth[segment.key].boxes)
        assert np.array_equal(segment.labels, truth[segment.key].labels)


def csdd_segments(csdd):
    from cuneidet.data.views import annotated_segments

    return annotated_segments(csdd, ["train_full"])


def _write_line_artifacts(line_dir, key, name, image_size, rows):
    """A line stage's minimal artifacts: the grid, image size and binary cells."""
    line_dir.mkdir(parents=True, exist_ok=True)
    stem = view_stem(key, name)
    record = {"grid": {"stride": 32.0, "offset": 113.0}, "image_size": list(image_size)}
    (line_dir / f"{stem}.json").write_text(json.dumps(record))
    cells = np.zeros((12, 14), bool)
    cells[rows] = True
    np.savez_compressed(line_dir / f"{stem}.npz", line_map=cells)


def _weak_module(data_dir, csv_path, **kwargs) -> CSDDDataModule:
    """A datamodule training on ``csv_path``'s generated labels, validating on TRAIN001."""
    settings = dict(num_workers=0, progress=False, val_tablets=["TRAIN001"])
    return CSDDDataModule(
        data_dir=str(data_dir), generated=[str(csv_path)], **{**settings, **kwargs}
    )


def test_weak_only_training_uses_generated_views_with_line_maps(data_dir, tmp_path, caplog):
    path = write_paper_csv(_truth_rows(data_dir), tmp_path / "gen.csv", header=False)
    line_dir = tmp_path / "lines"
    for index in range(4):
        _write_line_artifacts(line_dir, f"train/{index}", f"TRAIN{index:03d} Obv", (640, 760), 2)
    dm = _weak_module(
        data_dir, path, batch_size=4, generated_line_dir=str(line_dir), train_on_boxes=False
    )
    dm.setup("fit")
    tablets = sorted(s.meta["tablet"] for s in dm.train_samples)
    assert tablets == ["TRAIN000", "TRAIN002", "TRAIN003"]  # no validation or test tablet
    assert all(s.line_cells is not None for s in dm.train_samples)
    assert {s.tablet for s in dm.val_segments} == {"TRAIN001"}
    batch = next(iter(dm.train_dataloader()))
    maps = batch["line_maps"]
    assert len(maps) == batch["images"].shape[0]
    assert all(m.shape == (512, 512) and m.dtype.is_floating_point is False for m in maps)
    assert any(bool(m.any()) for m in maps)


def test_generated_views_without_line_artifacts_are_counted(data_dir, tmp_path, caplog):
    path = write_paper_csv(_truth_rows(data_dir, ["train_full"]), tmp_path / "gen.csv")
    line_dir = tmp_path / "lines"
    _write_line_artifacts(line_dir, "train/0", "TRAIN000 Obv", (640, 760), 2)
    _write_line_artifacts(line_dir, "train/2", "TRAIN002 Obv", (320, 380), 2)  # other size
    dm = _weak_module(data_dir, path, generated_line_dir=str(line_dir))
    with caplog.at_level(logging.WARNING):
        dm.setup("fit")
    assert "1 generated views have no line artifacts" in caplog.text
    assert "1 were lined at another size" in caplog.text
    generated = [s for s in dm.train_samples if s.line_cells is not None]
    assert [s.key for s in generated] == ["train/0"]
    # real boxes are trained on too (train_on_boxes default): 3 real + 3 generated views
    assert len(dm.train_samples) == 6
    batch = next(iter(dm.train_dataloader()))
    assert "line_maps" in batch


def test_weak_only_without_generated_views_is_refused(data_dir, tmp_path):
    rows = _truth_rows(data_dir, ["test_full"])  # only test tablets: all left out
    path = write_paper_csv(rows, tmp_path / "gen.csv")
    dm = _weak_module(data_dir, path, train_on_boxes=False)
    with pytest.raises(ConfigError, match="nothing to train on"):
        dm.setup("fit")
