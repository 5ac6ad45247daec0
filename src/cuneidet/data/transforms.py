"""Training/validation augmentation of tiles with albumentations 2.x (method-detector.md §1.9).

No flips or rotations anywhere: cuneiform signs are chiral.
"""

from __future__ import annotations

import math
from typing import Any

import albumentations as A
import cv2
import numpy as np
from albumentations.augmentations.crops import functional as fcrops
from albumentations.augmentations.crops.transforms import _BaseRandomSizedCrop
from albumentations.augmentations.geometric import functional as fgeometric

# OpenCV counterparts of the six PIL filters the reference code draws from.
RESIZE_INTERPOLATIONS = (
    cv2.INTER_AREA,  # PIL BOX
    cv2.INTER_NEAREST,
    cv2.INTER_LINEAR,  # PIL HAMMING has no OpenCV twin; bilinear is the closest
    cv2.INTER_CUBIC,
    cv2.INTER_LANCZOS4,
    cv2.INTER_LINEAR,
)


class PaperRandomCrop(_BaseRandomSizedCrop):
    """The reference ``random_crop_tile`` followed by a resize to ``size``.

    Side ``s ~ U(scale)``, aspect ``a ~ U(max(1/max_aspect, s²), min(max_aspect, 1/s²))``, crop
    ``w = int(W·s·√a)``, ``h = int(H·s/√a)`` at a uniform position; boxes are kept iff their centre
    lies inside the crop, then clipped. The resize filter is drawn from ``interpolations``.
    """

    def __init__(
        self,
        size: tuple[int, int] = (512, 512),
        scale: tuple[float, float] = (0.65, 1.0),
        max_aspect: float = 1.35,
        interpolations: tuple[int, ...] = RESIZE_INTERPOLATIONS,
        p: float = 1.0,
    ) -> None:
        super().__init__(size=size, p=p)
        self.scale = scale
        self.max_aspect = max_aspect
        self.interpolations = tuple(interpolations)

    def get_params_dependent_on_data(
        self, params: dict[str, Any], data: dict[str, Any]
    ) -> dict[str, Any]:
        height, width = params["shape"][:2]
        s = self.py_random.uniform(*self.scale)
        low = max(1 / self.max_aspect, s * s)
        high = min(self.max_aspect, 1 / (s * s))
        aspect = self.py_random.uniform(low, high) if high > low else 1.0
        crop_w = max(1, min(width, int(width * s * math.sqrt(aspect))))
        crop_h = max(1, min(height, int(height * s / math.sqrt(aspect))))
        x1 = self.py_random.randint(0, width - crop_w)
        y1 = self.py_random.randint(0, height - crop_h)
        interpolation = self.interpolations[self.py_random.randrange(len(self.interpolations))]
        return {"crop_coords": (x1, y1, x1 + crop_w, y1 + crop_h), "interpolation": interpolation}

    def apply(
        self,
        img: np.ndarray,
        crop_coords: tuple[int, int, int, int],
        interpolation: int = cv2.INTER_LINEAR,
        **params: Any,
    ) -> np.ndarray:
        crop = fcrops.crop(img, *crop_coords)
        return fgeometric.resize(crop, self.size, interpolation)

    def apply_to_bboxes(
        self, bboxes: np.ndarray, crop_coords: tuple[int, int, int, int], **params: Any
    ) -> np.ndarray:
        # Boxes arrive normalised to the input shape; label columns travel as extra columns,
        # so dropping rows here keeps labels consistent.
        height, width = params["shape"][:2]
        if len(bboxes):
            cx = (bboxes[:, 0] + bboxes[:, 2]) / 2 * width
            cy = (bboxes[:, 1] + bboxes[:, 3]) / 2 * height
            x1, y1, x2, y2 = crop_coords
            inside = (cx >= x1) & (cx < x2) & (cy >= y1) & (cy < y2)
            bboxes = bboxes[inside]
        cropped = fcrops.crop_bboxes_by_coords(bboxes, crop_coords, params["shape"])
        if len(cropped):
            cropped = cropped.copy()
            cropped[:, :4] = np.clip(cropped[:, :4], 0.0, 1.0)
        return cropped

    def get_transform_init_args_names(self) -> tuple[str, ...]:
        return ("size", "scale", "max_aspect", "interpolations")


def build_train_transform(
    tile_size: int = 600,
    input_size: int = 512,
    crop_scale: tuple[float, float] = (0.65, 1.0),
    max_aspect: float = 1.35,
    jitter_p: float = 0.5,
    brightness: float = 0.5,
    contrast: float = 0.5,
    seed: int | None = None,
) -> A.Compose:
    """Jitter (p=½) → pad to the tile size at the top-left (black) → paper crop → resize."""
    return A.Compose(
        [
            A.ColorJitter(
                brightness=brightness, contrast=contrast, saturation=0.0, hue=0.0, p=jitter_p
            ),
            _pad_top_left(tile_size),
            PaperRandomCrop(size=(input_size, input_size), scale=crop_scale, max_aspect=max_aspect),
        ],
        bbox_params=_bbox_params(),
        seed=seed,
        strict=True,
    )


def build_val_transform(
    tile_size: int = 600, input_size: int = 512, seed: int | None = None
) -> A.Compose:
    """The reference validation transform: crop s ∈ [0.85, 0.86], aspect ≈ 1, resize."""
    return A.Compose(
        [
            _pad_top_left(tile_size),
            PaperRandomCrop(size=(input_size, input_size), scale=(0.85, 0.86), max_aspect=1.001),
        ],
        bbox_params=_bbox_params(),
        seed=seed,
        strict=True,
    )


def _pad_top_left(tile_size: int) -> A.PadIfNeeded:
    """Tiles at the segment border are smaller: pad them at the top-left with black, as the
    reference pastes them onto a black canvas."""
    return A.PadIfNeeded(
        min_height=tile_size,
        min_width=tile_size,
        position="top_left",
        border_mode=cv2.BORDER_CONSTANT,
        fill=0,
        fill_mask=0,
    )


def _bbox_params() -> A.BboxParams:
    return A.BboxParams(format="pascal_voc", label_fields=["labels"], clip=True, min_visibility=0.0)


def seed_pipeline(pipeline: A.Compose, seed: int) -> None:
    """Give every transform of ``pipeline`` its own RNG stream derived from ``seed``.

    ``Compose.set_random_seed`` hands the *same* seed to each child, which correlates their draws
    (e.g. the jitter decision and the crop size); albumentations 2.0.8 also does not reseed per
    DataLoader worker, so each worker must call this with a worker-specific seed.
    """
    pipeline.set_random_seed(seed)
    for index, transform in enumerate(pipeline.transforms):
        transform.set_random_seed((seed * 1_000_003 + index * 7_919) % 2**32)
