"""Square sign crops with context: the geometry shared by the classifier's data and the two-stage
recogniser, and the training-time crop sampler (signs, and background windows between them).

A crop window is ``(cx, cy, side)`` in image pixels (pixel centres at integer coordinates, the
OpenCV convention); its ``size × size`` output pixel ``(u, v)`` samples the image bilinearly at
``cx + (u + 0.5 − size/2) · side/size`` (same for y). :func:`warp_crop` (NumPy/OpenCV, training)
and :func:`cuneidet.models.two_stage.crop_tensor` (torch, inference) follow this definition, so a
sign looks the same to the classifier in training and in the recogniser.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

# pixel value outside the photo: mid grey, i.e. 0 after cuneidet's normalisation (x/255 - 0.5)
BORDER_VALUE = 127.5


def crop_windows(boxes: np.ndarray, context: float, min_side: float = 8.0) -> np.ndarray:
    """``[N, 3]`` windows (cx, cy, side): each box's centre, ``max(w, h) · context``."""
    boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
    cx = (boxes[:, 0] + boxes[:, 2]) / 2.0
    cy = (boxes[:, 1] + boxes[:, 3]) / 2.0
    side = np.maximum(boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]) * context
    return np.stack([cx, cy, np.maximum(side, min_side)], axis=1)


def warp_crop(
    image: np.ndarray,
    cx: float,
    cy: float,
    side: float,
    size: int,
    angle_deg: float = 0.0,
    stretch: float = 1.0,
) -> np.ndarray:
    """One ``size × size`` crop of a uint8 image (bilinear; mid grey outside the image).

    ``angle_deg`` rotates the window about its centre; ``stretch`` scales x by it and y by its
    inverse (aspect jitter). No flips: cuneiform signs are chiral.
    """
    step = side / size
    a = math.radians(angle_deg)
    cos, sin = math.cos(a) * step, math.sin(a) * step
    sx, sy = stretch, 1.0 / stretch
    # dst (u, v) -> src (x, y) = centre + R · S · ((u, v) + 0.5 - size/2) · step
    m = np.array(
        [[cos * sx, -sin * sy, 0.0], [sin * sx, cos * sy, 0.0]],
        dtype=np.float64,
    )
    offset = 0.5 - size / 2.0
    m[0, 2] = cx + m[0, 0] * offset + m[0, 1] * offset
    m[1, 2] = cy + m[1, 0] * offset + m[1, 1] * offset
    return cv2.warpAffine(
        image,
        m,
        (size, size),
        flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
        borderMode=cv2.BORDER_CONSTANT,
        borderValue=BORDER_VALUE,
    )


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``[len(a), len(b)]`` IoU of xyxy boxes."""
    a = np.asarray(a, np.float64).reshape(-1, 4)
    b = np.asarray(b, np.float64).reshape(-1, 4)
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.prod(np.clip(rb - lt, 0, None), axis=2)
    area_a = np.prod(a[:, 2:] - a[:, :2], axis=1)
    area_b = np.prod(b[:, 2:] - b[:, :2], axis=1)
    return inter / np.maximum(area_a[:, None] + area_b[None, :] - inter, 1e-9)


@dataclass(frozen=True)
class CropItem:
    """One crop to cut: segment index, xyxy box (working pixels), class (0 = background)."""

    segment: int
    box: tuple[float, float, float, float]
    label: int


def sign_items(
    boxes_per_segment: list[np.ndarray], labels_per_segment: list[np.ndarray], num_classes: int
) -> tuple[list[CropItem], int]:
    """Crops of every box with a label in 1..num_classes-1; also the count of boxes skipped."""
    items: list[CropItem] = []
    skipped = 0
    for index, (boxes, labels) in enumerate(
        zip(boxes_per_segment, labels_per_segment, strict=True)
    ):
        for box, label in zip(np.asarray(boxes).reshape(-1, 4), labels, strict=True):
            valid = box[2] > box[0] and box[3] > box[1]
            if 1 <= int(label) < num_classes and valid:
                items.append(CropItem(index, tuple(float(v) for v in box), int(label)))
            else:
                skipped += 1
    return items, skipped


def background_items(
    boxes_per_segment: list[np.ndarray],
    sizes: list[tuple[int, int]],
    count: int,
    rng: np.random.Generator,
    max_iou: float = 0.25,
    max_tries: int = 20,
) -> list[CropItem]:
    """``count`` windows of sign size whose IoU with every box stays under ``max_iou``.

    They cover clay between signs, broken surface, pieces of signs and the background around the
    tablet: what a localiser's false positives look like. Segments are drawn in proportion to
    their number of boxes; a window side is the side of a random box of the segment × U(0.7, 1.4).
    """
    weights = np.array([max(len(b), 1) for b in boxes_per_segment], np.float64)
    if count <= 0 or weights.sum() == 0:
        return []
    weights /= weights.sum()
    items: list[CropItem] = []
    attempts = 0
    while len(items) < count and attempts < count * max_tries:
        attempts += 1
        seg = int(rng.choice(len(sizes), p=weights))
        width, height = sizes[seg]
        boxes = np.asarray(boxes_per_segment[seg], np.float64).reshape(-1, 4)
        if len(boxes):
            ref = boxes[rng.integers(len(boxes))]
            w, h = (ref[2] - ref[0]), (ref[3] - ref[1])
        else:
            w = h = min(width, height) / 8.0
        factor = rng.uniform(0.7, 1.4)
        w, h = max(4.0, w * factor), max(4.0, h * factor)
        x0 = rng.uniform(-0.25 * w, max(width - 0.75 * w, 1.0))
        y0 = rng.uniform(-0.25 * h, max(height - 0.75 * h, 1.0))
        box = np.array([x0, y0, x0 + w, y0 + h])
        if len(boxes) and box_iou(box, boxes).max() >= max_iou:
            continue
        items.append(CropItem(seg, tuple(float(v) for v in box), 0))
    return items
