"""Energies of the sign alignment and their parameters (Dencker et al. 2020, iterations k > 0).

Reference ``LineMatching1D`` and ``compute_line_tl_alignment`` (§2.4.2–2.4.3 of the method
notes). A transliteration sign i matched to detection j pays the confidence cost
``λ_s(exp((1 − s_j)/σ_s) − 1)`` plus the position cost ``sqrt(Δx²/w_i + Δy²)/64`` from the
sign's null-hypothesis centre (w_i its width ratio); an unmatched sign (an *outlier*) pays
``outlier_cost``. Two matched signs pay a pairwise cost between their detection centres a → b:
for neighbours in the line the spacing, direction and overlap terms, for signs further apart
(long range) direction and overlap only, with their own λ/σ. :data:`HP04` holds the parameters
of the sign alignment in the loop, :data:`GM_DEFAULTS` those of the line-level "GM" scores.

Also the checks of the alignment inputs (sign and detection arrays, line direction) shared by
:mod:`cuneidet.align.solver`, :mod:`cuneidet.align.line_scores` and
:mod:`cuneidet.align.sign_alignment`.

All coordinates are pixels of the scaled segment (signs are :data:`SIGN_HEIGHT` px high).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np

from cuneidet.align.transliteration import SIGN_HEIGHT
from cuneidet.errors import ConfigError, DataFormatError

POSITION_NORM = SIGN_HEIGHT / 2.0
"""Position costs are distances in half sign heights (the reference's ``min_sign_dist``)."""

SPACING_Y_VARIANCE = 0.2
"""Vertical variance of the spacing distance: vertical gaps count ``1/sqrt(0.2)`` ≈ 2.2 times."""


@dataclass(frozen=True)
class AlignmentParams:
    """Parameters of the sign-alignment energy (reference ``param_dict``).

    The defaults are those of the reference class, used for the line-level GM scores
    (:data:`GM_DEFAULTS`); :data:`HP04` is the set used for sign alignment in the loop.
    ``use_offset`` switches the position unary on or off (the reference's ``λ_offset``, which
    only acts as a switch; its ``σ_offset`` is unused and left out here).
    """

    outlier_cost: float = 10.0
    lambda_score: float = 0.3
    sigma_score: float = 0.4
    use_offset: bool = True
    lambda_spacing: float = 3.0
    sigma_spacing: float = 3.0
    lambda_angle: float = 2.0
    sigma_angle: float = 0.6
    lambda_iou: float = 2.0
    sigma_iou: float = 0.4
    lr_lambda_angle: float = 0.05
    lr_sigma_angle: float = 0.1
    lr_lambda_iou: float = 0.1
    lr_sigma_iou: float = 0.05

    def __post_init__(self) -> None:
        for field in dataclasses.fields(self):
            if field.name == "use_offset":
                continue
            value = getattr(self, field.name)
            positive = field.name == "outlier_cost" or "sigma" in field.name
            if not np.isfinite(value) or (positive and value <= 0):
                kind = "finite and > 0" if positive else "finite"
                raise ConfigError(f"AlignmentParams.{field.name} must be {kind}, got {value}")


GM_DEFAULTS = AlignmentParams()
"""The reference class defaults: energies of the line-level GM scores."""

HP04 = AlignmentParams(
    outlier_cost=25.0,
    lambda_score=12.0,
    sigma_score=0.88,
    lambda_spacing=5.0,
    lambda_iou=0.4,
    lr_lambda_angle=0.2,
    lr_lambda_iou=1.5,
)
"""hp04: the sign alignment of the training loop."""


# -- energy terms -----------------------------------------------------------------------------


def _exp_cost(x: np.ndarray, lam: float, sigma: float) -> np.ndarray:
    """``λ(exp(x/σ) − 1)``, the shape of every term but the position one."""
    return lam * np.expm1(np.asarray(x, dtype=np.float64) / sigma)


def _iou(boxes1: np.ndarray, boxes2: np.ndarray) -> np.ndarray:
    """IoU of xyxy boxes, broadcasting over leading axes, with the legacy "+1" convention."""
    iw = np.minimum(boxes1[..., 2], boxes2[..., 2]) - np.maximum(boxes1[..., 0], boxes2[..., 0])
    ih = np.minimum(boxes1[..., 3], boxes2[..., 3]) - np.maximum(boxes1[..., 1], boxes2[..., 1])
    inter = np.clip(iw + 1.0, 0.0, None) * np.clip(ih + 1.0, 0.0, None)
    area1 = np.clip(boxes1[..., 2:] - boxes1[..., :2] + 1.0, 0.0, None).prod(axis=-1)
    area2 = np.clip(boxes2[..., 2:] - boxes2[..., :2] + 1.0, 0.0, None).prod(axis=-1)
    union = area1 + area2 - inter
    return np.where(union > 0, inter / np.maximum(union, 1e-12), 0.0)


def box_iou(boxes1: np.ndarray, boxes2: np.ndarray) -> np.ndarray:
    """Pairwise IoU ``(N, M)`` of xyxy boxes with the legacy "+1" pixel convention."""
    b1 = np.asarray(boxes1, dtype=np.float64).reshape(-1, 4)
    b2 = np.asarray(boxes2, dtype=np.float64).reshape(-1, 4)
    return _iou(b1[:, None, :], b2[None, :, :])


def confidence_cost(scores: np.ndarray, params: AlignmentParams) -> np.ndarray:
    """Unary U₁ of detections with confidence ``scores``: ``λ_s(exp((1 − s)/σ_s) − 1)``."""
    return _exp_cost(
        1.0 - np.asarray(scores, dtype=np.float64), params.lambda_score, params.sigma_score
    )


def position_distance(
    centres: np.ndarray, expected: np.ndarray, width_ratios: np.ndarray
) -> np.ndarray:
    """``sqrt(Δx²/w + Δy²)/64``: distance from the expected (null-hypothesis) centre in half
    sign heights, horizontal offsets forgiven in proportion to the width ratio ``w``.

    Broadcasts over the leading axes of ``centres (..., 2)``, ``expected (..., 2)`` and
    ``width_ratios (...)``. The position unary and the RANSAC score both use it.
    """
    delta = np.asarray(centres, dtype=np.float64) - np.asarray(expected, dtype=np.float64)
    dist = np.sqrt(delta[..., 0] ** 2 / np.asarray(width_ratios) + delta[..., 1] ** 2)
    return dist / POSITION_NORM


def offset_cost(
    centres: np.ndarray, expected: np.ndarray, width_ratios: np.ndarray, params: AlignmentParams
) -> np.ndarray:
    """Unary U₃: :func:`position_distance`, linear (no exponential), 0 when
    ``params.use_offset`` is off."""
    dist = position_distance(centres, expected, width_ratios)
    return dist if params.use_offset else np.zeros_like(dist)


def direction_angle(a: np.ndarray, b: np.ndarray, direction: np.ndarray) -> np.ndarray:
    """Angle between ``b − a`` and the line direction, divided by π (in [0, 1]; 0 if a = b).

    ``direction``: one unit vector ``(2,)`` or one per pair ``(..., 2)``.
    """
    delta = np.asarray(b, dtype=np.float64) - np.asarray(a, dtype=np.float64)
    u, v = direction[..., 0], direction[..., 1]
    along = delta[..., 0] * u + delta[..., 1] * v
    across = np.abs(delta[..., 0] * v - delta[..., 1] * u)
    return np.arctan2(across, along) / np.pi


def spacing_cost(a: np.ndarray, b: np.ndarray, params: AlignmentParams) -> np.ndarray:
    """Adjacent spacing cost: ``λ_p(exp(X/σ_p) − 1)``, ``X = sqrt(Δx² + Δy²/0.2)/128 − 1``.

    Negative for gaps tighter than one sign height, which rewards compact lines.
    """
    delta = np.asarray(b, dtype=np.float64) - np.asarray(a, dtype=np.float64)
    dist = np.sqrt(delta[..., 0] ** 2 + delta[..., 1] ** 2 / SPACING_Y_VARIANCE)
    return _exp_cost(dist / SIGN_HEIGHT - 1.0, params.lambda_spacing, params.sigma_spacing)


def adjacent_cost(
    a: np.ndarray, b: np.ndarray, iou: np.ndarray, direction: np.ndarray, params: AlignmentParams
) -> np.ndarray:
    """Pairwise cost of neighbouring signs i, i+1 on detection centres a → b: spacing +
    direction + overlap (``iou`` of their boxes). ``direction``: unit vector(s), as in
    :func:`direction_angle`."""
    theta = direction_angle(a, b, direction)
    return (
        spacing_cost(a, b, params)
        + _exp_cost(theta, params.lambda_angle, params.sigma_angle)
        + _exp_cost(iou, params.lambda_iou, params.sigma_iou)
    )


def long_range_cost(
    a: np.ndarray, b: np.ndarray, iou: np.ndarray, direction: np.ndarray, params: AlignmentParams
) -> np.ndarray:
    """Pairwise cost of signs i, k ≥ i+2 on detection centres a → b: direction + overlap with
    the long-range (``lr_*``) parameters. ``direction``: unit vector(s), as in
    :func:`direction_angle`."""
    theta = direction_angle(a, b, direction)
    return _exp_cost(theta, params.lr_lambda_angle, params.lr_sigma_angle) + _exp_cost(
        iou, params.lr_lambda_iou, params.lr_sigma_iou
    )


# -- input checks -------------------------------------------------------------------------------


def _vector(values: np.ndarray, name: str, dtype: type = np.float64) -> np.ndarray:
    array = np.asarray(values, dtype=dtype)
    if array.ndim != 1:
        raise DataFormatError(f"{name} must be 1-D, got shape {array.shape}")
    return array


def _table(values: np.ndarray, name: str, columns: int) -> np.ndarray:
    array = np.asarray(values, dtype=np.float64)
    if array.size == 0:
        return array.reshape(0, columns)
    if array.ndim != 2 or array.shape[1] != columns:
        raise DataFormatError(f"{name} must have shape (n, {columns}), got {array.shape}")
    return array


def _same_length(arrays: dict[str, np.ndarray], what: str) -> None:
    sizes = {name: len(array) for name, array in arrays.items()}
    if len(set(sizes.values())) > 1:
        raise DataFormatError(f"{what} arrays differ in length: {sizes}")


def _check_detections(
    det_boxes: np.ndarray, det_scores: np.ndarray, det_labels: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    boxes = _table(det_boxes, "det_boxes", 4)
    scores = _vector(det_scores, "det_scores")
    labels = _vector(det_labels, "det_labels", np.int64)
    _same_length({"det_boxes": boxes, "det_scores": scores, "det_labels": labels}, "detection")
    if not (np.isfinite(boxes).all() and np.isfinite(scores).all()):
        raise DataFormatError("detection boxes and scores must be finite")
    return boxes, scores, labels


def _check_signs(
    labels: np.ndarray, widths: np.ndarray, expected: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    labels = _vector(labels, "labels", np.int64)
    widths = _vector(widths, "widths")
    expected = _table(expected, "expected", 2)
    _same_length({"labels": labels, "widths": widths, "expected": expected}, "sign")
    if not (np.isfinite(widths).all() and (widths > 0).all()):
        raise DataFormatError(f"sign widths must be finite and > 0, got {widths.tolist()}")
    if not np.isfinite(expected).all():
        raise DataFormatError("expected sign centres must be finite")
    return labels, widths, expected


def _unit(direction: np.ndarray) -> np.ndarray:
    vector = np.asarray(direction, dtype=np.float64).reshape(-1)
    norm = float(np.hypot(*vector)) if vector.shape == (2,) else 0.0
    if not np.isfinite(norm) or norm == 0.0:
        raise DataFormatError(f"direction must be a finite non-zero 2-vector, got {direction!r}")
    return vector / norm


__all__ = [
    "GM_DEFAULTS",
    "HP04",
    "AlignmentParams",
    "adjacent_cost",
    "box_iou",
    "confidence_cost",
    "direction_angle",
    "long_range_cost",
    "offset_cost",
    "position_distance",
    "spacing_cost",
]
