"""Segment extraction and coordinate mapping (cuneidet.data.segments)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cuneidet.data.csdd import CSDD
from cuneidet.data.segments import (
    PhotoCache,
    crop_segment,
    extract_segment,
    load_segment_image,
    photo_to_scaled,
    photo_to_segment,
    points_photo_to_scaled,
    points_photo_to_segment,
    points_scaled_to_photo,
    points_scaled_to_segment,
    points_segment_to_photo,
    points_segment_to_scaled,
    scale_segment,
    scaled_size,
    scaled_to_photo,
    scaled_to_segment,
    segment_to_photo,
    segment_to_scaled,
)
from cuneidet.data.sources import FolderSource
from cuneidet.data.views import annotated_segments
from cuneidet.errors import ConfigError, DataFormatError
from tests.fixtures_csdd import make_tiny_csdd

BBOX = (37, 112, 437, 612)
SCALE = 2.37


def _photo(size: tuple[int, int] = (64, 48)) -> Image.Image:
    array = np.arange(size[0] * size[1] * 3, dtype=np.uint32).reshape(size[1], size[0], 3)
    return Image.fromarray((array % 251).astype(np.uint8), "RGB")


# -- images ----------------------------------------------------------------------------------


def test_crop_segment_is_gray_and_exact() -> None:
    photo = _photo()
    crop = crop_segment(photo, (10, 5, 30, 25))
    assert crop.mode == "L" and crop.size == (20, 20)
    expected = np.asarray(photo.convert("L"))[5:25, 10:30]
    np.testing.assert_array_equal(np.asarray(crop), expected)


def test_crop_outside_photo_names_tablet_bbox_and_size() -> None:
    with pytest.raises(DataFormatError) as info:
        crop_segment(_photo(), (10, 5, 70, 25), tablet="P123456")
    message = str(info.value)
    assert "P123456" in message and "[10, 5, 70, 25]" in message and "64×48" in message
    with pytest.raises(DataFormatError, match="or is empty"):
        crop_segment(_photo(), (10, 5, 10, 25))


@pytest.mark.parametrize(
    ("size", "scale", "expected"),
    [
        ((101, 57), 1.5, (151, 85)),  # 151.5, 85.5 → truncated
        ((100, 80), 0.33, (33, 26)),
        ((120, 80), 0.75, (90, 60)),
        ((3, 2), 0.01, (1, 1)),  # at least one pixel
    ],
)
def test_scaled_size_truncates(size, scale, expected) -> None:
    assert scaled_size(*size, scale) == expected
    image = Image.new("L", size, 128)
    assert scale_segment(image, scale).size == expected


def test_scale_must_be_positive() -> None:
    with pytest.raises(ConfigError, match="positive"):
        scale_segment(Image.new("L", (4, 4)), 0)
    with pytest.raises(ConfigError, match="positive"):
        segment_to_scaled([[0, 0, 1, 1]], float("nan"))


def test_extract_segment_size_and_mode() -> None:
    photo = _photo((200, 150))
    segment = extract_segment(photo, (10, 20, 111, 77), 1.5)
    assert segment.mode == "L" and segment.size == (151, 85)
    assert extract_segment(photo, (0, 0, 200, 150), 1.0).size == (200, 150)


# -- coordinate mapping ----------------------------------------------------------------------


def _random_boxes(count: int = 20) -> np.ndarray:
    rng = np.random.default_rng(0)
    xy = rng.uniform(0, 400, size=(count, 2))
    wh = rng.uniform(1, 80, size=(count, 2))
    return np.concatenate([xy, xy + wh], axis=1)


def test_box_mapping_round_trip() -> None:
    photo_boxes = _random_boxes() + np.array(BBOX[:2] * 2)
    segment = photo_to_segment(photo_boxes, BBOX)
    scaled = segment_to_scaled(segment, SCALE)
    np.testing.assert_allclose(
        segment_to_photo(scaled_to_segment(scaled, SCALE), BBOX), photo_boxes
    )
    np.testing.assert_allclose(scaled_to_photo(scaled, BBOX, SCALE), photo_boxes)
    np.testing.assert_allclose(photo_to_scaled(photo_boxes, BBOX, SCALE), scaled)
    np.testing.assert_allclose(segment, photo_boxes - np.array([37, 112, 37, 112]))
    np.testing.assert_allclose(scaled, segment * SCALE)


def test_polyline_mapping_round_trip() -> None:
    points = _random_boxes()[:, :2]
    segment = points_photo_to_segment(points, BBOX)
    scaled = points_segment_to_scaled(segment, SCALE)
    back = points_segment_to_photo(points_scaled_to_segment(scaled, SCALE), BBOX)
    np.testing.assert_allclose(back, points)
    np.testing.assert_allclose(points_scaled_to_photo(scaled, BBOX, SCALE), points)
    np.testing.assert_allclose(points_photo_to_scaled(points, BBOX, SCALE), scaled)
    np.testing.assert_allclose(segment, points - np.array([37, 112]))


def test_mapping_shapes() -> None:
    single = segment_to_scaled([1, 2, 3, 4], 2.0)
    assert single.shape == (1, 4) and single.dtype == np.float64
    assert segment_to_photo(np.zeros((0, 4)), BBOX).shape == (0, 4)
    assert points_segment_to_scaled([], 2.0).shape == (0, 2)
    with pytest.raises(ValueError, match=r"boxes \[N, 4\]"):
        segment_to_scaled(np.zeros((3, 2)), 2.0)
    boxes = np.array([[1.0, 2, 3, 4]])
    segment_to_photo(boxes, BBOX)
    assert boxes.tolist() == [[1, 2, 3, 4]]  # input untouched


def test_scaled_boxes_land_on_the_drawn_signs(tmp_path: Path) -> None:
    """The fixture draws each box on its photo: the scaled image shows it at the scaled box."""
    data_dir = make_tiny_csdd(tmp_path)
    segment = annotated_segments(CSDD(data_dir), ["train_full"])[0]
    image = np.asarray(load_segment_image(FolderSource(data_dir / "csdd" / "images"), segment))
    x1, y1, x2, y2 = segment.scaled_boxes()[0].round().astype(int)
    edge = image[y1 + 1 : y2 - 1, x1 + 1].mean()
    inside = image[(y1 + y2) // 2, (x1 + x2) // 2]
    assert edge < inside - 40


# -- loading ---------------------------------------------------------------------------------


class _CountingSource:
    def __init__(self, inner: FolderSource) -> None:
        self.inner = inner
        self.loads = 0

    def load(self, tablet: str) -> Image.Image:
        self.loads += 1
        return self.inner.load(tablet)

    def has(self, tablet: str) -> bool:
        return self.inner.has(tablet)

    def describe(self) -> str:
        return "counting"


def test_load_segment_image_from_segment_or_row(tmp_path: Path) -> None:
    data_dir = make_tiny_csdd(tmp_path)
    csdd = CSDD(data_dir)
    source = _CountingSource(FolderSource(data_dir / "csdd" / "images"))
    cache = PhotoCache(source, maxsize=1)
    segments = annotated_segments(csdd, ["train_full"])  # train/0, train/1 share TAB001
    first = load_segment_image(cache, segments[0])
    second = load_segment_image(cache, segments[1])
    assert source.loads == 1
    assert first.mode == "L" and first.size == (200, 160)
    assert second.size == (150, 150)
    row = csdd.segments(["train"]).iloc[0]
    np.testing.assert_array_equal(np.asarray(load_segment_image(cache, row)), np.asarray(first))
    load_segment_image(cache, segments[2])  # TAB002 evicts TAB001
    load_segment_image(cache, segments[0])
    assert source.loads == 3


def test_load_segment_image_rejects_unassigned_rows(tmp_path: Path) -> None:
    data_dir = make_tiny_csdd(tmp_path)
    csdd = CSDD(data_dir)
    row = csdd.segments(["train"], assigned_only=False).iloc[2]
    with pytest.raises(ConfigError, match="no scale"):
        load_segment_image(FolderSource(data_dir / "csdd" / "images"), row)
    with pytest.raises(ConfigError, match="lacks"):
        load_segment_image(FolderSource(data_dir / "csdd" / "images"), {"tablet_CDLI": "TAB001"})
