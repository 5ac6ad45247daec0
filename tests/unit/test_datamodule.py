"""The CSDD datamodule: tablet-level validation split, tiles, whole-segment evaluation."""

import pytest
import torch

from cuneidet.data.datamodule import CSDDDataModule, split_by_tablet
from cuneidet.errors import ConfigError, CuneidetError
from tests.synthetic_csdd import make_synthetic_csdd


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    return make_synthetic_csdd(tmp_path_factory.mktemp("dm"), train_tablets=4, test_tablets=2)


def _module(data_dir, **kwargs):
    defaults = dict(data_dir=str(data_dir), num_workers=0, batch_size=2, progress=False)
    return CSDDDataModule(**{**defaults, **kwargs})


def test_validation_holds_out_whole_training_tablets(data_dir):
    dm = _module(data_dir, val_fraction=0.25)
    dm.setup("fit")
    train_tablets = {s.tablet for s in dm.train_segments}
    val_tablets = {s.tablet for s in dm.val_segments}
    assert len(val_tablets) == 1 and not train_tablets & val_tablets
    assert all(t.startswith("TRAIN") for t in val_tablets)  # never test_full
    again = _module(data_dir, val_fraction=0.25)
    again.setup("fit")
    assert {s.tablet for s in again.val_segments} == val_tablets


def test_explicit_validation_tablets_and_unknown_ones(data_dir):
    dm = _module(data_dir, val_tablets=["TRAIN001"])
    dm.setup("fit")
    assert {s.tablet for s in dm.val_segments} == {"TRAIN001"}
    with pytest.raises(ConfigError, match="TEST000"):
        _module(data_dir, val_tablets=["TEST000"]).setup("fit")


def test_split_rejects_bad_fraction(data_dir):
    dm = _module(data_dir)
    segments = dm._select(["train_full"])
    with pytest.raises(ConfigError, match="val_fraction"):
        split_by_tablet(segments, 1.5)


def test_train_batches_and_evaluation_segments(data_dir):
    dm = _module(data_dir, val_fraction=0.25)
    dm.setup("fit")
    batch = next(iter(dm.train_dataloader()))
    assert batch["images"].shape[1:] == (1, 512, 512)
    assert len(batch["targets"]) == batch["images"].shape[0]
    assert all(t["labels"].dtype == torch.int64 for t in batch["targets"])
    val = next(iter(dm.val_dataloader()))
    assert val["images"].shape == (1, 1, 640, 760)  # whole scaled segment
    dm.setup("test")
    assert len(dm.test_dataloader()) == 2


def test_overlapping_train_and_test_sets_are_rejected(data_dir):
    with pytest.raises(ConfigError, match="both"):
        _module(data_dir, test_sets=["train_full"]).setup("fit")


def test_empty_or_unknown_set_selection(data_dir):
    with pytest.raises(ConfigError):
        _module(data_dir, train_sets=[], test_sets=[])
    with pytest.raises(CuneidetError, match="train_nope"):
        _module(data_dir, train_sets=["train_nope"]).setup("fit")
    with pytest.raises(ConfigError, match="train_sets is empty"):
        _module(data_dir, train_sets=[]).setup("fit")


def test_missing_photos_are_skipped_with_a_count(data_dir, tmp_path, caplog):
    import shutil

    copy = tmp_path / "data"
    shutil.copytree(data_dir, copy)
    (copy / "csdd" / "images" / "TRAIN000.jpg").unlink()
    (copy / "csdd" / "images" / "TRAIN001.jpg").write_bytes(b"\xff\xd8\xff truncated")
    dm = _module(copy, val_fraction=0.0)
    dm.setup("fit")
    assert {s.meta["tablet"] for s in dm.train_samples} == {"TRAIN002", "TRAIN003"}
    assert "skipped 2 segments of 2 photographs" in caplog.text


def test_excluded_tablets_leave_training_after_the_split(data_dir):
    plain = _module(data_dir, val_fraction=0.25)
    plain.setup("fit")
    val_tablet = next(iter({s.tablet for s in plain.val_segments}))
    train_tablet = sorted({s.tablet for s in plain.train_segments})[0]
    dm = _module(data_dir, val_fraction=0.25, exclude_train_tablets=[train_tablet, val_tablet])
    dm.setup("fit")
    assert train_tablet not in {s.tablet for s in dm.train_segments}
    assert dm.val_segments == [] and len(dm.val_samples) == 0
    kept = {s.tablet for s in plain.train_segments} - {train_tablet}
    assert {s.tablet for s in dm.train_segments} == kept  # the split itself did not move


def test_sign_height_scales_images_and_boxes_together(data_dir):
    full = _module(data_dir, val_fraction=0.25)
    half = _module(data_dir, val_fraction=0.25, sign_height=64)
    full.setup("test")
    half.setup("test")
    assert half.scale_factor == 0.5
    for a, b in zip(full.test_samples, half.test_samples, strict=True):
        assert abs(b.image.shape[0] - a.image.shape[0] / 2) <= 1
        assert abs(b.image.shape[1] - a.image.shape[1] / 2) <= 1
        assert torch.allclose(torch.tensor(b.boxes), torch.tensor(a.boxes) / 2, atol=1e-4)
        assert b.meta["scale"] == a.meta["scale"] / 2
    with pytest.raises(ConfigError, match="sign_height"):
        _module(data_dir, sign_height=4)


def test_class_agnostic_labels_every_box_as_a_sign(data_dir):
    dm = _module(data_dir, val_fraction=0.25, class_agnostic=True, num_classes=2)
    dm.setup("test")
    labels = torch.cat([torch.tensor(s.labels) for s in dm.test_samples])
    assert len(labels) and bool((labels == 1).all())
    with pytest.raises(ConfigError, match="num_classes=2"):
        _module(data_dir, class_agnostic=True, num_classes=240)
