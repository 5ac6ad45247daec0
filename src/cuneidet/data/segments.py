"""Segment extraction and the three coordinate frames (``method-detector.md`` §0, §4.2).

Frames:

- *photo*: pixels of the composite CDLI photograph (``bbox`` columns of the CSVs);
- *segment*: unscaled pixels of the segment crop, origin at the segment bbox's top-left
  (``relative_bbox``, line annotations);
- *scaled*: the segment resized by its ``scale`` (≈128-px sign height), where the detector works.

``segment = photo − origin``, ``scaled = segment × scale``. The scaled image itself has size
``int(w·scale) × int(h·scale)`` (truncation), so its effective factor differs from ``scale`` by
less than one pixel over the image; the box mapping uses ``scale`` exactly, as the reference
code does. Boxes are ``[N, 4]`` ``(x1, y1, x2, y2)``, points ``[N, 2]`` ``(x, y)``; every mapping
takes array-likes and returns new float64 arrays.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from PIL import Image

from cuneidet.data.csdd import SEG_COLS
from cuneidet.data.registration import SEGMENT_SHIFTS
from cuneidet.data.views import AnnotatedSegment
from cuneidet.errors import ConfigError, DataFormatError

if TYPE_CHECKING:
    from numpy.typing import ArrayLike

    from cuneidet.data.sources import PhotoSource

log = logging.getLogger(__name__)

BBox = Sequence[float]


# -- images ----------------------------------------------------------------------------------


def view_stem(key: str, name: str) -> str:
    """A file name for a view: ``<collection>_<segm_idx>_<tablet>_<view>``."""
    text = f"{key.replace('/', '_')}_{name}".replace(" ", "_")
    return "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in text)


def _int_bbox(bbox: BBox) -> tuple[int, int, int, int]:
    values = [float(v) for v in bbox]
    if len(values) != 4:
        raise ConfigError(f"bbox must have 4 values (x0, y0, x1, y1), got {list(bbox)!r}")
    x0, y0, x1, y1 = (round(v) for v in values)
    return x0, y0, x1, y1


def crop_segment(photo: Image.Image, bbox: BBox, tablet: str | None = None) -> Image.Image:
    """Cut ``bbox`` (x0, y0, x1, y1; photo pixels) out of ``photo`` as a grayscale ``L`` image.

    No context padding. A bbox that is empty or not fully inside the photo raises
    :class:`DataFormatError` naming the tablet, the bbox and the photo size.
    """
    x0, y0, x1, y1 = _int_bbox(bbox)
    width, height = photo.size
    if not (0 <= x0 < x1 <= width and 0 <= y0 < y1 <= height):
        name = f"tablet {tablet}" if tablet else "the photo"
        shifted = [s for s in SEGMENT_SHIFTS if s.tablet == tablet]
        hint = (
            f" Its segment was moved for a {shifted[0].photo_size[0]}×"
            f"{shifted[0].photo_size[1]} photo (cuneidet.data.registration); for the photo the "
            "release was annotated on, set registration_fixes=false."
            if shifted
            else ""
        )
        raise DataFormatError(
            f"Segment bbox {[x0, y0, x1, y1]} of {name} does not lie inside its photograph "
            f"of size {width}×{height} (or is empty): the photo does not match the CSDD "
            "composite image frame (wrong or re-sized file?)." + hint
        )
    crop = photo.crop((x0, y0, x1, y1))
    return crop if crop.mode == "L" else crop.convert("L")


def scaled_size(width: int, height: int, scale: float) -> tuple[int, int]:
    """``(int(width·scale), int(height·scale))`` with truncation, at least 1 px each."""
    if not np.isfinite(scale) or scale <= 0:
        raise ConfigError(f"scale must be a positive number, got {scale!r}")
    return max(1, int(width * scale)), max(1, int(height * scale))


def scale_segment(image: Image.Image, scale: float) -> Image.Image:
    """Resize by ``scale`` with PIL bilinear to :func:`scaled_size` (truncated, ≥ 1 px)."""
    size = scaled_size(image.width, image.height, scale)
    if size == image.size:
        return image.copy()
    return image.resize(size, Image.Resampling.BILINEAR)


def extract_segment(
    photo: Image.Image, bbox: BBox, scale: float, tablet: str | None = None
) -> Image.Image:
    """Crop, grayscale and scale a segment: the detector's input image (mode ``L``)."""
    return scale_segment(crop_segment(photo, bbox, tablet=tablet), scale)


# -- coordinate mapping ----------------------------------------------------------------------


def _array(values: ArrayLike, width: int) -> np.ndarray:
    array = np.asarray(values, dtype=np.float64)
    if array.size == 0:
        return np.zeros((0, width), dtype=np.float64)
    if array.ndim == 1 and array.shape[0] == width:
        array = array[None, :]
    if array.ndim != 2 or array.shape[1] != width:
        what = "boxes [N, 4]" if width == 4 else "points [N, 2]"
        raise ValueError(f"expected {what}, got an array of shape {array.shape}")
    return array.copy()


def _origin(bbox: BBox, width: int) -> np.ndarray:
    x0, y0 = float(bbox[0]), float(bbox[1])
    return np.array([x0, y0] * (width // 2), dtype=np.float64)


def _positive(scale: float) -> float:
    scale = float(scale)
    if not np.isfinite(scale) or scale <= 0:
        raise ConfigError(f"scale must be a positive number, got {scale!r}")
    return scale


def segment_to_scaled(boxes: ArrayLike, scale: float) -> np.ndarray:
    """Unscaled segment boxes → scaled segment boxes (``× scale``)."""
    return _array(boxes, 4) * _positive(scale)


def scaled_to_segment(boxes: ArrayLike, scale: float) -> np.ndarray:
    """Scaled segment boxes → unscaled segment boxes (``÷ scale``)."""
    return _array(boxes, 4) / _positive(scale)


def segment_to_photo(boxes: ArrayLike, bbox: BBox) -> np.ndarray:
    """Unscaled segment boxes → photo boxes (``+ origin`` of the segment ``bbox``)."""
    return _array(boxes, 4) + _origin(bbox, 4)


def photo_to_segment(boxes: ArrayLike, bbox: BBox) -> np.ndarray:
    """Photo boxes → unscaled segment boxes (``− origin``)."""
    return _array(boxes, 4) - _origin(bbox, 4)


def scaled_to_photo(boxes: ArrayLike, bbox: BBox, scale: float) -> np.ndarray:
    """Scaled segment boxes → photo boxes."""
    return segment_to_photo(scaled_to_segment(boxes, scale), bbox)


def photo_to_scaled(boxes: ArrayLike, bbox: BBox, scale: float) -> np.ndarray:
    """Photo boxes → scaled segment boxes."""
    return segment_to_scaled(photo_to_segment(boxes, bbox), scale)


def points_segment_to_scaled(points: ArrayLike, scale: float) -> np.ndarray:
    """Unscaled segment points ``[N, 2]`` → scaled segment points."""
    return _array(points, 2) * _positive(scale)


def points_scaled_to_segment(points: ArrayLike, scale: float) -> np.ndarray:
    """Scaled segment points → unscaled segment points."""
    return _array(points, 2) / _positive(scale)


def points_segment_to_photo(points: ArrayLike, bbox: BBox) -> np.ndarray:
    """Unscaled segment points → photo points."""
    return _array(points, 2) + _origin(bbox, 2)


def points_photo_to_segment(points: ArrayLike, bbox: BBox) -> np.ndarray:
    """Photo points → unscaled segment points."""
    return _array(points, 2) - _origin(bbox, 2)


def points_scaled_to_photo(points: ArrayLike, bbox: BBox, scale: float) -> np.ndarray:
    """Scaled segment points → photo points."""
    return points_segment_to_photo(points_scaled_to_segment(points, scale), bbox)


def points_photo_to_scaled(points: ArrayLike, bbox: BBox, scale: float) -> np.ndarray:
    """Photo points → scaled segment points."""
    return points_segment_to_scaled(points_photo_to_segment(points, bbox), scale)


# -- loading from a photo source -------------------------------------------------------------


class PhotoCache:
    """A tiny LRU cache of decoded photographs in front of a photo source.

    It has the ``load`` / ``has`` / ``describe`` methods of a ``PhotoSource`` and can replace
    one wherever several segments of the same tablet are loaded in a row.
    """

    def __init__(self, source: PhotoSource, maxsize: int = 2) -> None:
        if maxsize < 1:
            raise ConfigError(f"PhotoCache maxsize must be ≥ 1, got {maxsize}")
        self.source = source
        self.maxsize = int(maxsize)
        self._photos: OrderedDict[str, Image.Image] = OrderedDict()

    def load(self, tablet: str) -> Image.Image:
        """The decoded photograph (shared object: do not modify it in place)."""
        if tablet in self._photos:
            self._photos.move_to_end(tablet)
            return self._photos[tablet]
        photo = self.source.load(tablet)
        self._photos[tablet] = photo
        while len(self._photos) > self.maxsize:
            self._photos.popitem(last=False)
        return photo

    def has(self, tablet: str) -> bool:
        return tablet in self._photos or self.source.has(tablet)

    def describe(self) -> str:
        return f"cache({self.maxsize}) of {self.source.describe()}"

    def clear(self) -> None:
        self._photos.clear()


def _segment_fields(segment: AnnotatedSegment | Mapping[str, Any] | pd.Series) -> tuple:
    if isinstance(segment, AnnotatedSegment):
        return segment.tablet, segment.bbox, segment.scale
    try:
        tablet = str(segment["tablet_CDLI"])
        bbox = tuple(int(segment[c]) for c in SEG_COLS)
        scale = float(segment["scale"])
    except KeyError as exc:
        raise ConfigError(
            f"segment row lacks {exc}; expected an AnnotatedSegment or a CSDD.segments() row "
            "(tablet_CDLI, x0, y0, x1, y1, scale)"
        ) from exc
    return tablet, bbox, scale


def load_segment_image(
    source: PhotoSource | PhotoCache,
    segment: AnnotatedSegment | Mapping[str, Any] | pd.Series,
) -> Image.Image:
    """The scaled grayscale image of ``segment`` (an :class:`AnnotatedSegment` or segments row).

    Wrap ``source`` in a :class:`PhotoCache` to decode each photograph only once when loading
    several segments of the same tablet.
    """
    tablet, bbox, scale = _segment_fields(segment)
    if not np.isfinite(scale):
        raise ConfigError(f"segment of tablet {tablet} at {list(bbox)} has no scale (unassigned)")
    return extract_segment(source.load(tablet), bbox, scale, tablet=tablet)


__all__ = [
    "PhotoCache",
    "crop_segment",
    "extract_segment",
    "load_segment_image",
    "photo_to_scaled",
    "photo_to_segment",
    "points_photo_to_scaled",
    "points_photo_to_segment",
    "points_scaled_to_photo",
    "points_scaled_to_segment",
    "points_segment_to_photo",
    "points_segment_to_scaled",
    "scale_segment",
    "scaled_size",
    "scaled_to_photo",
    "scaled_to_segment",
    "segment_to_photo",
    "segment_to_scaled",
]
