"""Automatic sign scale: line pitch, the busiest window, the estimate on drawn "tablets", and
counted skips for photos without signs or too small for any candidate scale."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from PIL import Image
from scipy import ndimage

from cuneidet.inference.predict import PhotoRequest, predict_photos
from cuneidet.inference.scale import (
    ScaleEstimationError,
    ScaleSettings,
    _busiest_window,
    _gradient_energy,
    estimate_scale,
    line_pitch,
)

SIGN = 46  # sign side in photo pixels: the right scale 128 / 46 = 2.78 is no candidate
PITCH = 64  # line pitch in photo pixels


class BlobDetector:
    """Finds dark squares; scores them by how close their height is to the working sign height
    (as a trained detector responds best at its working scale). Works at 64-px signs."""

    sign_height = 64.0

    def __init__(self) -> None:
        self.strides = [8, 16, 32]
        self.calls = 0

    def detect(self, images: torch.Tensor, score_thresh: float = 0.01, **kwargs) -> list[dict]:
        self.calls += 1
        out = []
        for image in images:
            components, _ = ndimage.label(image[0].numpy() < -0.25)
            boxes, scores = [], []
            for found in ndimage.find_objects(components):
                ys, xs = found
                height = ys.stop - ys.start
                boxes.append([xs.start, ys.start, xs.stop, ys.stop])
                scores.append(math.exp(-(math.log(height / self.sign_height) ** 2) / 0.18))
            boxes_t = torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4)
            scores_t = torch.tensor(scores, dtype=torch.float32)
            order = torch.argsort(scores_t, descending=True)
            keep = order[scores_t[order] > score_thresh][: kwargs.get("max_detections")]
            out.append(
                {"boxes": boxes_t[keep], "scores": scores_t[keep], "labels": torch.ones_like(keep)}
            )
        return out


def _tablet(width: int = 900, height: int = 700, margin: int = 60) -> Image.Image:
    """Rows of dark SIGN-px squares, PITCH px apart, on light clay."""
    array = np.full((height, width), 200, np.uint8)
    for y in range(margin, height - margin - SIGN, PITCH):
        for x in range(margin, width - margin - SIGN, SIGN + 14):
            array[y : y + SIGN, x : x + SIGN] = 40
    return Image.fromarray(array)


def test_line_pitch_is_the_distance_to_the_line_below():
    rows = [[x, y, x + 20, y + 20] for y in (0, 30, 60) for x in (0, 25, 50, 75)]
    assert line_pitch(np.array(rows, float)) == pytest.approx(30)
    assert math.isnan(line_pitch(np.array([[0, 0, 20, 20], [30, 0, 50, 20]], float)))


def test_the_busiest_window_is_where_the_texture_is():
    array = np.full((400, 600), 128, np.uint8)
    rng = np.random.default_rng(0)
    array[250:380, 400:580] = rng.integers(0, 255, (130, 180))
    image = Image.fromarray(array)
    x0, y0, x1, y1 = _busiest_window(_gradient_energy(image), image.size, 160)
    assert (x1 - x0, y1 - y0) == (160, 160)
    assert 380 <= x0 + 80 <= 600 and 230 <= y0 + 80 <= 400
    assert _busiest_window(_gradient_energy(image), image.size, 1000) == (0, 0, 600, 400)


def test_estimate_finds_the_scale_that_brings_the_signs_to_128_px():
    # at the right scale (128 / SIGN) the pitch is PITCH / SIGN sign heights
    settings = ScaleSettings(reference_pitch=PITCH / SIGN, reference_height=1.0)
    estimate = estimate_scale(BlobDetector(), _tablet(), settings)
    assert estimate.scale == pytest.approx(128 / SIGN, rel=0.05)
    assert estimate.boxes >= settings.min_boxes and estimate.response > 0.5
    assert [p["scale"] for p in estimate.probes[:3]] == [0.8, 1.6, 3.2]


def test_without_line_neighbours_the_median_height_decides():
    array = np.full((300, 900), 200, np.uint8)
    for x in range(40, 840, 60):  # a single line of signs: no pitch to measure
        array[100 : 100 + SIGN, x : x + SIGN] = 40
    settings = ScaleSettings(reference_pitch=5.0, reference_height=1.0)
    estimate = estimate_scale(BlobDetector(), Image.fromarray(array), settings)
    assert estimate.scale == pytest.approx(128 / SIGN, rel=0.05)


def test_no_signs_or_a_tiny_photo_is_a_clear_error():
    with pytest.raises(ScaleEstimationError, match="without signs"):
        estimate_scale(BlobDetector(), Image.new("L", (500, 400), 200))
    with pytest.raises(ScaleEstimationError, match="too small"):
        estimate_scale(BlobDetector(), Image.new("L", (12, 9), 200))
    with pytest.raises(ValueError, match="positive"):
        ScaleSettings(candidates=(1.0, -2.0))


def test_predict_photos_records_estimated_scales_and_counts_skips():
    detector = BlobDetector()
    requests = [
        PhotoRequest(name="tablet", image=_tablet(), scale=None),
        PhotoRequest(name="blank", image=Image.new("L", (500, 400), 200), scale=None),
        PhotoRequest(name="given", image=_tablet(), scale=1.5),
    ]
    settings = ScaleSettings(reference_pitch=PITCH / SIGN)
    frame = predict_photos(detector, requests, progress=False, scale_settings=settings)
    assert frame.attrs["failed"] == ["blank"] and frame.attrs["n_failed"] == 1
    scales = {r["name"]: r for r in frame.attrs["scales"]}
    assert scales["tablet"]["auto"] and scales["tablet"]["scale"] == pytest.approx(
        128 / SIGN, rel=0.05
    )
    assert scales["given"] == {"name": "given", "segm_idx": -1, "scale": 1.5, "auto": False}
    chosen = frame.loc[frame["imageName"] == "tablet", "scale"]
    assert len(chosen) and (chosen == scales["tablet"]["scale"]).all()
