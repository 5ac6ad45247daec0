"""Inference: normalisation, whole-image vs tiled detection, photo-frame mapping, failed photos."""

from __future__ import annotations

import logging
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from PIL import Image
from scipy import ndimage
from torch import Tensor, nn
from torchvision import transforms

from cuneidet.errors import ConfigError
from cuneidet.inference import (
    PREDICTION_COLUMNS,
    PhotoRequest,
    detect_image,
    predict_paths,
    predict_photos,
    tile_starts,
    to_tensor,
)


class SquareDetector(nn.Module):
    """Follows the SignDetector protocol; "detects" bright squares on a dark background.

    Pixels > 128 form connected components; a box is the component's bounding box (continuous
    xyxy). Label 2 / score 0.8 if the component reaches 255, else label 1 / score 0.9.
    """

    def __init__(self, strides: tuple[int, ...] = (32, 64)) -> None:
        super().__init__()
        self.fpn = SimpleNamespace(strides=list(strides))
        self.calls: list[tuple[int, ...]] = []
        self.modes: list[bool] = []

    def detect(self, images: Tensor, score_thresh: float = 0.01, **_: object) -> list[dict]:
        self.calls.append(tuple(images.shape))
        self.modes.append(self.training)
        return [self._detect_one(image[0].numpy(), score_thresh) for image in images]

    def _detect_one(self, image: np.ndarray, score_thresh: float) -> dict[str, Tensor]:
        pixels = np.rint((image + 0.5) * 255)
        components, _ = ndimage.label(pixels > 128)
        boxes, scores, labels = [], [], []
        for index, found in enumerate(ndimage.find_objects(components), start=1):
            ys, xs = found
            bright = pixels[found][components[found] == index].max() > 250
            boxes.append(self._box(xs.start, ys.start, xs.stop, ys.stop))
            labels.append(2 if bright else 1)
            scores.append(0.8 if bright else 0.9)
        out = {
            "boxes": torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4),
            "scores": torch.tensor(scores, dtype=torch.float32),
            "labels": torch.tensor(labels, dtype=torch.int64),
        }
        keep = out["scores"] > score_thresh
        return {k: v[keep] for k, v in out.items()}

    def _box(self, x1: float, y1: float, x2: float, y2: float) -> list[float]:
        return [float(x1), float(y1), float(x2), float(y2)]


class JitteryDetector(SquareDetector):
    """Shifts its boxes 5 px left (with a lower score) in the given calls, as a real detector
    might disagree with itself on the two sides of a tile border."""

    def __init__(self, jitter_calls: set[int]) -> None:
        super().__init__()
        self.jitter_calls = jitter_calls

    def _detect_one(self, image: np.ndarray, score_thresh: float) -> dict[str, Tensor]:
        out = super()._detect_one(image, score_thresh)
        if len(self.calls) - 1 in self.jitter_calls:
            out["boxes"] = out["boxes"] - torch.tensor([5.0, 0.0, 5.0, 0.0])
            out["scores"] = out["scores"] - 0.3
        return out


def _canvas(width: int, height: int, squares: list[tuple[int, int, int, int, int]]) -> Image.Image:
    array = np.zeros((height, width), dtype=np.uint8)
    for x1, y1, x2, y2, value in squares:
        array[y1:y2, x1:x2] = value
    return Image.fromarray(array, "L")


def _sorted_rows(dets: dict[str, Tensor]) -> list[tuple[float, ...]]:
    rows = torch.cat([dets["boxes"], dets["labels"][:, None].float(), dets["scores"][:, None]], 1)
    return sorted(tuple(round(v, 4) for v in row.tolist()) for row in rows)


# --------------------------------------------------------------------------- normalisation


def test_to_tensor_values() -> None:
    image = Image.fromarray(np.array([[0, 128, 255]], dtype=np.uint8), "L")
    tensor = to_tensor(image)
    assert tensor.shape == (1, 1, 3)
    assert tensor.dtype == torch.float32
    torch.testing.assert_close(tensor, torch.tensor([[[-0.5, 128 / 255 - 0.5, 0.5]]]))


def test_to_tensor_is_reference_grayscale_normalisation() -> None:
    rng = np.random.default_rng(0)
    rgb = Image.fromarray(rng.integers(0, 256, (5, 7, 3), dtype=np.uint8), "RGB")
    reference = transforms.Compose([transforms.ToTensor(), transforms.Normalize([0.5], [1.0])])
    tensor = to_tensor(rgb)
    assert tensor.shape == (1, 5, 7)
    assert torch.equal(tensor, reference(rgb.convert("L")))


# --------------------------------------------------------------------------- whole image / tiles

SQUARES = [
    (470, 100, 560, 180, 220),  # crosses the x border of two tiles
    (100, 230, 180, 300, 255),  # crosses the y border
    (340, 330, 430, 420, 220),  # centre just past the split of the first overlap
    (740, 360, 800, 420, 255),  # near a tile corner
    (1000, 600, 1080, 680, 220),  # in the last, clipped tile
]


def test_whole_image_calls_detector_once_at_full_size() -> None:
    detector = SquareDetector()
    detector.train()
    dets = detect_image(detector, _canvas(300, 200, [(10, 20, 60, 70, 220)]))
    assert detector.calls == [(1, 1, 200, 300)]
    assert detector.modes == [False]  # run in eval mode ...
    assert detector.training  # ... and the mode restored
    assert dets["boxes"].tolist() == [[10.0, 20.0, 60.0, 70.0]]
    assert dets["labels"].tolist() == [1]
    assert dets["boxes"].dtype == torch.float32 and dets["labels"].dtype == torch.int64


def test_tiled_equals_whole_image_and_border_signs_reported_once() -> None:
    image = _canvas(1100, 700, SQUARES)
    whole_detector, tiled_detector = SquareDetector(), SquareDetector()
    whole = detect_image(whole_detector, image)
    tiled = detect_image(tiled_detector, image, tile_size=512, tile_overlap=256)
    assert len(whole_detector.calls) == 1
    assert len(tiled_detector.calls) == 4 * 2  # x starts 0/256/512/768, y starts 0/256
    assert len(tiled["boxes"]) == len(SQUARES)
    assert _sorted_rows(tiled) == _sorted_rows(whole)
    expected = sorted((float(x1), float(y1), float(x2), float(y2)) for x1, y1, x2, y2, _ in SQUARES)
    assert sorted(tuple(b) for b in tiled["boxes"].tolist()) == expected


def test_tiled_nms_merges_duplicates_kept_by_two_tiles() -> None:
    # (340..430) has its centre at 385, just right of the split at 384: with the first tile's
    # boxes shifted 5 px left both tiles keep it; the cross-tile "+1" NMS keeps the better one.
    image = _canvas(1100, 700, SQUARES)
    tiled = detect_image(JitteryDetector({0}), image, tile_size=512, tile_overlap=256)
    assert len(tiled["boxes"]) == len(SQUARES)
    near = (tiled["boxes"][:, 0] > 300) & (tiled["boxes"][:, 2] < 450)
    assert tiled["boxes"][near].tolist() == [[340.0, 330.0, 430.0, 420.0]]
    assert tiled["scores"][near].tolist() == pytest.approx([0.9])


def test_tiled_passes_detect_kwargs_and_caps_detections() -> None:
    image = _canvas(1100, 700, SQUARES)
    dets = detect_image(SquareDetector(), image, tile_size=512, tile_overlap=256, max_detections=2)
    assert dets["scores"].tolist() == pytest.approx([0.9, 0.9])
    none = detect_image(SquareDetector(), image, tile_size=512, score_thresh=0.95)
    assert len(none["boxes"]) == 0 and none["boxes"].shape == (0, 4)


def test_auto_tiling_above_max_pixels() -> None:
    image = _canvas(2600, 300, [(2000, 100, 2100, 200, 220)])
    small_budget = SquareDetector()
    dets = detect_image(small_budget, image, max_pixels=500_000)
    assert [call[-1] for call in small_budget.calls] == [2048, 2600 - 1792]
    default = SquareDetector()
    detect_image(default, image)
    assert len(default.calls) == 1
    assert dets["boxes"].tolist() == [[2000.0, 100.0, 2100.0, 200.0]]


def test_tiles_are_stride_aligned() -> None:
    detector = SquareDetector(strides=(32, 64))
    detect_image(detector, _canvas(1000, 300, []), tile_size=500, tile_overlap=200)
    # size 500 -> 448, overlap 200 -> 256: starts 0, 192, 384, 576 (576 + 448 >= 1000)
    assert [call[-1] for call in detector.calls] == [448, 448, 448, 1000 - 576]
    assert tile_starts(1000, 448, 256) == [0, 192, 384, 576]
    assert tile_starts(300, 448, 256) == [0]
    with pytest.raises(ConfigError, match="tile_overlap"):
        detect_image(detector, _canvas(100, 100, []), tile_size=256, tile_overlap=256)


# --------------------------------------------------------------------------- photos


def test_predict_photos_maps_boxes_to_photo_frame() -> None:
    photo = _canvas(800, 600, [(300, 200, 340, 240, 220)])
    segment = PhotoRequest(
        name="P1", image=photo, scale=2.0, bbox=(100, 50, 500, 450), segm_idx=3, folder="f/"
    )
    whole = PhotoRequest(name="P1", image=photo, scale=0.5)
    frame = predict_photos(SquareDetector(), [segment, whole], progress=False)
    assert list(frame.columns) == list(PREDICTION_COLUMNS)
    assert len(frame) == 2
    first, second = frame.iloc[0], frame.iloc[1]
    assert (first.imageName, first.folder, first.segm_idx, first.scale) == ("P1", "f/", 3, 2.0)
    # scaled frame: (photo - origin) * scale = (400, 300, 480, 380), up to bilinear blur
    np.testing.assert_allclose(
        first[["sx1", "sy1", "sx2", "sy2"]].astype(float), [400, 300, 480, 380], atol=2
    )
    np.testing.assert_allclose(
        first[["x1", "y1", "x2", "y2"]].astype(float), [300, 200, 340, 240], atol=1
    )
    np.testing.assert_allclose(first.x1, first.sx1 / 2 + 100)
    np.testing.assert_allclose(first.y2, first.sy2 / 2 + 50)
    assert second.segm_idx == -1
    np.testing.assert_allclose(
        second[["x1", "y1", "x2", "y2"]].astype(float), [300, 200, 340, 240], atol=2
    )
    assert frame.attrs["images"] == [{"id": 1, "file_name": "P1", "width": 800, "height": 600}]
    assert frame.attrs["n_failed"] == 0


def _write_photos(folder: Path) -> list[Path]:
    good = folder / "good.png"
    _canvas(200, 100, [(10, 10, 50, 50, 220)]).save(good)
    corrupt = folder / "corrupt.jpg"
    corrupt.write_bytes(b"this is not an image")
    jpeg = folder / "full.jpg"
    Image.fromarray(np.random.default_rng(1).integers(0, 255, (256, 256), np.uint8)).save(jpeg)
    truncated = folder / "truncated.jpg"
    truncated.write_bytes(jpeg.read_bytes()[:2000])
    return [folder / "missing.png", corrupt, good, truncated]


def test_predict_paths_skips_and_counts_unreadable_photos(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    paths = _write_photos(tmp_path)
    with caplog.at_level(logging.WARNING, logger="cuneidet.inference.predict"):
        frame = predict_paths(SquareDetector(), paths, scale=1.0, progress=True)
    assert frame.imageName.tolist() == ["good"]
    assert frame.image_path.tolist() == [str(paths[2])]
    assert frame.attrs["n_requests"] == 4
    assert frame.attrs["n_failed"] == 3
    assert frame.attrs["failed"] == ["missing", "corrupt", "truncated"]
    messages = [r.getMessage() for r in caplog.records]
    assert sum("skipping" in m for m in messages) == 3
    assert any("3 of 4 photos/segments skipped" in m for m in messages)


def test_predict_paths_scale_mapping(tmp_path: Path) -> None:
    paths = _write_photos(tmp_path)[2:3]
    frame = predict_paths(SquareDetector(), paths, scale={"good": 2.0}, progress=False)
    np.testing.assert_allclose(
        frame[["sx1", "sy1", "sx2", "sy2"]].iloc[0], [20, 20, 100, 100], atol=2
    )
    np.testing.assert_allclose(frame[["x1", "y1", "x2", "y2"]].iloc[0], [10, 10, 50, 50], atol=1)
    with pytest.raises(ConfigError, match="no scale"):
        predict_paths(SquareDetector(), paths, scale={"other": 1.0}, progress=False)


def test_predict_photos_without_detections_has_all_columns() -> None:
    frame = predict_photos(
        SquareDetector(), [PhotoRequest(name="P0", image=_canvas(64, 64, []))], progress=False
    )
    assert frame.empty and list(frame.columns) == list(PREDICTION_COLUMNS)
