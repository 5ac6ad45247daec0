"""Forge crops for the sign classifier: choice per class, patch geometry, the data module."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import cv2
import numpy as np
import pytest

from cuneidet.classify.data import CropDataModule
from cuneidet.classify.forge_crops import (
    PATCH_MARGIN,
    choose_boxes,
    cut_patch,
    match_real_histograms,
)
from cuneidet.data.crops import crop_windows, warp_crop
from cuneidet.data.datasets import SegmentSample
from cuneidet.errors import ConfigError
from tests.fixtures_csdd import make_tiny_csdd
from tests.fixtures_font import make_cuneiform_font


def test_choose_boxes_caps_each_class_and_spreads_over_tablets():
    # class 5: 6 boxes on tablet A, 2 on B, 1 on C; class 7: 2 boxes; labels 0 and 300 ignored
    labels = [np.array([5, 5, 5, 5, 5, 5, 7, 0]), np.array([5, 5, 7, 300]), np.array([5])]
    tablets = ["A", "B", "C"]
    chosen = choose_boxes(labels, tablets, per_class=4, num_classes=240, seed=1)
    by_class = Counter(int(labels[s][b]) for s, b in chosen)
    assert by_class == {5: 4, 7: 2}
    fives = [tablets[s] for s, b in chosen if labels[s][b] == 5]
    assert set(fives) == {"A", "B", "C"}, "round-robin: every tablet gives one before A gives two"
    assert len(set(chosen)) == len(chosen)
    assert chosen == choose_boxes(labels, tablets, per_class=4, num_classes=240, seed=1)
    assert choose_boxes(labels, tablets, per_class=0, num_classes=240) == []


def test_a_patch_crops_like_the_photo_it_was_cut_from():
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (200, 300), dtype=np.uint8)
    image = cv2.GaussianBlur(image, (7, 7), 2.0)  # smooth: bilinear resampling agrees closely
    sample = SegmentSample(
        key="k",
        name="n",
        image=image,
        boxes=np.array([[120.0, 60.0, 160.0, 110.0], [10.0, 10.0, 30.0, 40.0]], np.float32),
        labels=np.array([12, 40]),
    )
    patch = cut_patch(sample, 0, context=1.3, key="k#0")
    assert patch.labels.tolist() == [12]
    side = crop_windows(sample.boxes[0], 1.3)[0][2]
    assert patch.image.shape[0] == patch.image.shape[1] >= side * PATCH_MARGIN
    (bw, bh) = np.diff(patch.boxes[0].reshape(2, 2), axis=0)[0]
    assert (bw, bh) == pytest.approx((40.0, 50.0))
    original = warp_crop(image, *crop_windows(sample.boxes[0], 1.3)[0], 64)
    from_patch = warp_crop(patch.image, *crop_windows(patch.boxes[0], 1.3)[0], 64)
    assert np.abs(original.astype(int) - from_patch.astype(int)).mean() < 2.0


def test_forge_patches_take_the_grey_levels_of_real_crops():
    rng = np.random.default_rng(3)
    flat = rng.normal(128, 6, (40, 40)).clip(0, 255).astype(np.uint8)  # forge: flat mid grey
    dark = rng.gamma(2.0, 25.0, (64, 64)).clip(0, 255).astype(np.uint8)  # photo: dark, contrasty
    patch = SegmentSample("k", "n", flat.copy(), np.zeros((1, 4), np.float32), np.array([3]))
    match_real_histograms([patch], [dark])
    assert patch.image.dtype == np.uint8 and patch.image.shape == flat.shape
    assert abs(patch.image.mean() - dark.mean()) < 3 and abs(patch.image.std() - dark.std()) < 3
    order = np.argsort(flat, axis=None)  # grey-level order kept: the wedges keep their shapes
    assert np.all(np.diff(patch.image.reshape(-1)[order].astype(int)) >= 0)
    match_real_histograms([patch], [])  # no reference: unchanged
    assert abs(patch.image.mean() - dark.mean()) < 3


@pytest.fixture
def data(tmp_path) -> Path:
    root = make_tiny_csdd(tmp_path / "data")
    make_cuneiform_font(root / "fonts" / "NotoSansCuneiform-Regular.ttf")
    return root


def _module(data: Path, tmp_path: Path, **extra) -> CropDataModule:
    return CropDataModule(
        str(data),
        image_source="folder+forge",
        image_source_options={"forge_dir": str(tmp_path / "forge"), "seed": 2},
        test_sets=[],
        val_fraction=0.0,
        num_workers=0,
        progress=False,
        sign_height=64,
        **extra,
    )


def test_forge_crops_join_the_training_draws_at_their_share(data, tmp_path):
    plain = _module(data, tmp_path)
    plain.setup("fit")
    assert plain.forge_patches == []
    real = len(plain.crop_train_loader().dataset)

    module = _module(
        data,
        tmp_path,
        forge_crop_collections=["saa01"],
        forge_crops_per_class=2,
        forge_crop_share=0.4,
    )
    module.setup("fit")
    patches = module.forge_patches
    assert patches, "the tiny CSDD's saa01 tablet has visible signs"
    counts = Counter(int(p.labels[0]) for p in patches)
    assert max(counts.values()) <= 2
    loader = module.crop_train_loader()
    dataset = loader.dataset
    assert len(dataset) == real + len(patches)
    weights = loader.sampler.weights.numpy()
    assert weights[real:].sum() == pytest.approx(0.4)
    forged = dataset[real]
    assert forged["image"].shape[-2:] == (64, 64)
    assert forged["label"] == int(patches[0].labels[0])


def test_bad_forge_crop_settings_are_clear_errors(data, tmp_path):
    with pytest.raises(ConfigError, match="forge_crop_share"):
        _module(data, tmp_path, forge_crop_collections=["saa01"], forge_crop_share=1.0)
    with pytest.raises(ConfigError, match="forge_crops_per_class"):
        _module(data, tmp_path, forge_crop_collections=["saa01"], forge_crops_per_class=0)
