"""Automatic sign scale: the factor that brings a photo's signs to the CSDD's 128-px height.

A wrong scale silently gives no signs, and users do not know the sign size of their photos.
:func:`estimate_scale` finds it from the detector itself (its localiser, for a two-stage
recogniser), on the photo or segment at its own resolution:

1. **search**: for each candidate scale (default 0.8, 1.6, 3.2: a factor 2 apart, spanning
   the CSDD's 0.7–4.0), the busiest window of the image (most gradient energy, at most
   ``window`` × ``window`` working pixels) is resized to the detector's working resolution and
   the detector runs on it; the candidate with the strongest response (mean of the ``top_n``
   best box scores, missing boxes counting 0) wins;
2. **measure**: the line pitch of the found boxes (median distance from a box to the nearest
   box of the line below, :func:`line_pitch`) says how far the writing is from the working
   size: ``scale ← scale × reference_pitch / pitch`` (the median box height, against
   ``reference_height``, where too few boxes have a neighbour below);
3. **refine**: repeat the measurement at the new scale on a larger window (``measure_window``:
   more lines for the pitch), ``refine_steps`` times, stopping when it moves less than 2 %.

The references are the pitch and median height (in working sign heights) that the detector
measures when a photo is at its CSDD scale, calibrated on the train_full photos
(``scripts/eval_scale_auto.py --calibrate``). Line pitch is what the CSDD scale follows most
closely: on the annotated views, the scale predicts the annotated line pitch to 4 % (median),
the median sign height only to 7 %. The estimate records the response, the boxes it rests on
and every probe, so a caller can report or refuse an unreliable one (:class:`ScaleEstimate`).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch
from PIL import Image

from cuneidet.data.datasets import to_input_tensor
from cuneidet.errors import ImageLoadError

log = logging.getLogger(__name__)

#: the CSDD's scale brings signs to this height (pixels)
CSDD_SIGN_HEIGHT = 128.0


class ScaleEstimationError(ImageLoadError):
    """No candidate scale gives an image the detector can run on, or no sign was found."""


@dataclass(frozen=True)
class ScaleSettings:
    """Settings of :func:`estimate_scale` (``scale_auto.*`` in the configs)."""

    candidates: Sequence[float] = (0.8, 1.6, 3.2)
    window: int = 768
    # the measuring probes see a larger window (more lines for the pitch): chosen on the
    # train_full views (median / p90 error 6.6 / 17.2 % with 768 px, 5.7 / 15.8 % with 1280)
    measure_window: int | None = 1280
    top_n: int = 24
    score_thresh: float = 0.05
    measure_boxes: int = 150
    measure_score: float = 0.2
    refine_steps: int = 2
    reference_height: float = 1.0
    reference_pitch: float = 1.0
    min_boxes: int = 4
    min_scale: float = 0.2
    max_scale: float = 12.0

    def __post_init__(self) -> None:
        if not self.candidates or any(not float(c) > 0 for c in self.candidates):
            raise ValueError(f"scale_auto.candidates must be positive, got {self.candidates}")
        if (
            self.window < 64
            or self.top_n < 1
            or min(self.reference_height, self.reference_pitch) <= 0
        ):
            raise ValueError(
                "scale_auto needs window >= 64, top_n >= 1 and positive references, got "
                f"{self.window}, {self.top_n}, {self.reference_height}, {self.reference_pitch}"
            )


@dataclass
class ScaleEstimate:
    """The chosen ``scale`` with the evidence: ``response`` (mean top-box score of the search),
    ``boxes`` (boxes of the last measurement) and ``probes`` (scale, response, median height)."""

    scale: float
    response: float
    boxes: int
    probes: list[dict[str, float]] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def estimate_scale(
    detector: Any, image: Image.Image, settings: ScaleSettings | None = None
) -> ScaleEstimate:
    """Estimate the CSDD scale of ``image`` (a photo or segment at its own resolution).

    ``detector`` is any object with ``detect`` and ``sign_height`` (PyTorch or ONNX Runtime);
    a two-stage recogniser is probed through its localiser. Raises
    :class:`ScaleEstimationError` when the image is too small for every candidate or no
    candidate finds ``min_boxes`` boxes.
    """
    settings = settings or ScaleSettings()
    probe = _Prober(detector, image.convert("L") if image.mode != "L" else image, settings)
    searched = [probe(float(c)) for c in settings.candidates]
    usable = [p for p in searched if p is not None and p["boxes"] >= settings.min_boxes]
    if not usable:
        sizes = "too small" if all(p is None for p in searched) else "without signs"
        raise ScaleEstimationError(
            f"no sign scale found: the {image.width}x{image.height} image is {sizes} at every "
            f"candidate scale {list(settings.candidates)}; give scale= by hand"
        )
    best = max(usable, key=lambda p: p["response"])
    scale, last = _corrected(best, settings), best
    for _ in range(settings.refine_steps):
        measured = probe(scale, settings.measure_window or settings.window)
        if measured is None or measured["boxes"] < settings.min_boxes:
            break
        new_scale, last = _corrected(measured, settings), measured
        moved = abs(math.log(new_scale / scale))
        scale = new_scale
        if moved < math.log(1.02):
            break
    return ScaleEstimate(
        scale=scale, response=best["response"], boxes=int(last["boxes"]), probes=probe.history
    )


def _corrected(probe: dict[str, float], settings: ScaleSettings) -> float:
    if math.isfinite(probe["line_pitch"]):
        scale = probe["scale"] * settings.reference_pitch / probe["line_pitch"]
    else:
        scale = probe["scale"] * settings.reference_height / probe["median_height"]
    return float(min(max(scale, settings.min_scale), settings.max_scale))


class _Prober:
    """Runs the detector on the busiest window of the image at a given CSDD scale."""

    def __init__(self, detector: Any, image: Image.Image, settings: ScaleSettings) -> None:
        self.detector = getattr(detector, "localiser", detector)
        self.sign_height = float(getattr(detector, "sign_height", CSDD_SIGN_HEIGHT))
        strides = getattr(self.detector, "strides", None) or [64]
        self.min_side = 2 * int(max(strides))
        self.image = image
        self.settings = settings
        self.energy = _gradient_energy(image)
        self.history: list[dict[str, float]] = []

    def __call__(self, scale: float, window: int | None = None) -> dict[str, float] | None:
        factor = scale * self.sign_height / CSDD_SIGN_HEIGHT
        side = (window or self.settings.window) / factor  # window side in image pixels
        box = _busiest_window(self.energy, self.image.size, side)
        width = round((box[2] - box[0]) * factor)
        height = round((box[3] - box[1]) * factor)
        if min(width, height) < self.min_side:
            return None
        window = self.image.crop(box).resize((width, height), Image.Resampling.BILINEAR)
        tensor = to_input_tensor(np.asarray(window))[None]
        dets = self.detector.detect(
            tensor,
            score_thresh=self.settings.score_thresh,
            nms_thresh=0.5,
            class_agnostic_nms=0.5,
            max_detections=max(self.settings.top_n, self.settings.measure_boxes),
        )[0]
        scores = dets["scores"].float()
        top = torch.zeros(self.settings.top_n)
        top[: min(len(scores), self.settings.top_n)] = scores[: self.settings.top_n]
        # measured on the confident boxes (at least the top_n best)
        keep = max(int((scores >= self.settings.measure_score).sum()), self.settings.top_n)
        boxes = dets["boxes"][:keep].double().numpy()
        heights = (boxes[:, 3] - boxes[:, 1]) / self.sign_height
        result = {
            "scale": float(scale),
            "response": float(top.mean()),
            "boxes": float(len(boxes)),
            "median_height": float(np.median(heights)) if len(heights) else float("nan"),
            "line_pitch": line_pitch(boxes) / self.sign_height,
        }
        self.history.append(result)
        return result


def line_pitch(boxes: np.ndarray) -> float:
    """Median vertical distance from each box to the nearest box of the line below it.

    The box below is the closest one whose centre lies 0.5–2.5 box heights lower and whose
    horizontal extent overlaps; NaN when fewer than three such pairs exist.
    """
    if len(boxes) < 2:
        return float("nan")
    cx, cy = (boxes[:, 0] + boxes[:, 2]) / 2, (boxes[:, 1] + boxes[:, 3]) / 2
    height = boxes[:, 3] - boxes[:, 1]
    dy = cy[None, :] - cy[:, None]  # [i, j]: how far j lies below i
    overlap = (
        np.minimum(boxes[:, None, 2], boxes[None, :, 2])
        - np.maximum(boxes[:, None, 0], boxes[None, :, 0])
    ) > 0
    below = overlap & (dy > 0.5 * height[:, None]) & (dy < 2.5 * height[:, None])
    below &= np.abs(cx[None, :] - cx[:, None]) < height[:, None] * 2
    dy = np.where(below, dy, np.inf).min(axis=1)
    dy = dy[np.isfinite(dy)]
    return float(np.median(dy)) if len(dy) >= 3 else float("nan")


def _gradient_energy(image: Image.Image, cell: int = 16) -> np.ndarray:
    """Mean gradient magnitude per ``cell`` × ``cell`` block (where the signs are)."""
    small = image.reduce(cell) if min(image.size) >= cell else image
    array = np.asarray(small, dtype=np.float32)
    gy, gx = np.gradient(array) if min(array.shape) > 1 else (array * 0, array * 0)
    return np.hypot(gx, gy)


def _busiest_window(
    energy: np.ndarray, size: tuple[int, int], side: float
) -> tuple[int, int, int, int]:
    """The ``side`` × ``side`` window (clipped to the image) with the most gradient energy."""
    width, height = size
    win_w, win_h = min(width, round(side)), min(height, round(side))
    if energy.size == 0 or (win_w >= width and win_h >= height):
        return 0, 0, win_w, win_h
    rows, cols = energy.shape
    cell_x, cell_y = width / cols, height / rows
    kw = max(1, min(cols, round(win_w / cell_x)))
    kh = max(1, min(rows, round(win_h / cell_y)))
    integral = np.pad(energy, ((1, 0), (1, 0))).cumsum(0).cumsum(1)
    sums = integral[kh:, kw:] - integral[:-kh, kw:] - integral[kh:, :-kw] + integral[:-kh, :-kw]
    row, col = np.unravel_index(int(np.argmax(sums)), sums.shape)
    x0 = min(max(0, round(col * cell_x)), width - win_w)
    y0 = min(max(0, round(row * cell_y)), height - win_h)
    return x0, y0, x0 + win_w, y0 + win_h
