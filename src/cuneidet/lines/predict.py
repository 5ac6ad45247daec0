"""From a gray view to line hypotheses: run a line network, threshold, post-process, assign."""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from cuneidet.align import SIGN_HEIGHT, ViewTransliteration, assign_lines
from cuneidet.data.line_geometry import LineHypotheses, MapGrid
from cuneidet.errors import ConfigError
from cuneidet.lines.hypotheses import REFERENCE_STRIDE, detect_lines

log = logging.getLogger(__name__)

MIN_TEXT_PITCH = 0.5
"""Sign heights: the closest line spacing a transliteration may need to fit its view. Over the
CSDD's 3,553 transliterated views, 99.5 % need 0.82 or more; the few below 0.5 are views whose
transliteration holds more lines than the photo can (e.g. P333952 Obv: 214 lines, 41 rows of
signs) or whose ``scale`` is wrong."""


@dataclass(frozen=True)
class LinePostprocess:
    """Settings from probability map to assigned line hypotheses."""

    threshold: float = 0.7  # the reference's p(line) ≥ 0.7
    method: str = "chained"  # or "reference" (see hypotheses.detect_lines)
    assignment: str = "gale_church"  # or "order"
    # Gale–Church lengths of detected lines: "extent" (x_max − x_min in sign heights of 128 px)
    # or "votes" (the reference: Hough votes, in stride-32 cells); and the length variance
    line_length: str = "extent"
    variance: float = 1.0
    # transliteration line lengths: "span" (broken signs between visible ones count) or
    # "visible" (the reference); their scale: "refit" to the 1-1 beads, or "max" (the reference)
    text_length: str = "span"
    rescale: str = "refit"
    # with a transliteration of N visible lines, keep the N + max_extra_lines best-supported lines
    # (a line no transliteration line can go to is a false line or one of a damaged edge); a
    # negative value keeps all
    max_extra_lines: int = 1


LINE_LENGTHS = ("extent", "votes")


def detected_lengths(hypotheses: LineHypotheses, kind: str) -> np.ndarray:
    """Per line, the length Gale–Church compares with the transliteration line's prior length."""
    if kind not in LINE_LENGTHS:
        raise ConfigError(f"unknown line length {kind!r}; choose one of {LINE_LENGTHS}")
    if kind == "votes":
        scale = hypotheses.grid.stride / REFERENCE_STRIDE
        return np.array([line.votes * scale for line in hypotheses.lines], np.float64)
    return np.array([(line.x_max - line.x_min) / SIGN_HEIGHT for line in hypotheses.lines])


def line_support(hypotheses: LineHypotheses, probability: np.ndarray) -> np.ndarray:
    """Per line: mean p(line) of the map cells under its polyline times its length in sign
    heights (128 px). Long confident lines score high; short faint ones (damage, museum
    numbers, edges) low."""
    grid = hypotheses.grid
    support = np.zeros(len(hypotheses.lines))
    for k, line in enumerate(hypotheses.lines):
        xs = np.arange(line.x_min, line.x_max + grid.stride, grid.stride)
        cols = np.clip(np.round(grid.to_map(xs)).astype(int), 0, probability.shape[1] - 1)
        rows = np.round(grid.to_map(line.polyline_y_at(xs))).astype(int)
        rows = np.clip(rows, 0, probability.shape[0] - 1)
        length = (line.x_max - line.x_min) / SIGN_HEIGHT
        support[k] = float(probability[rows, cols].mean()) * length
    return support


def keep_supported(hypotheses: LineHypotheses, support: np.ndarray, count: int) -> LineHypotheses:
    """At most ``count`` lines: the best-supported ones (ties: the upper line), in order."""
    if len(hypotheses.lines) <= count:
        return hypotheses
    best = np.argsort(-support, kind="stable")[: max(0, count)]
    return hypotheses.keep(best)


def valid_cells(grid: MapGrid, length: int, image_length: int) -> int:
    """How many map cells along one axis have their centre inside the image (at least 1)."""
    centres = grid.to_image(np.arange(length))
    return max(1, int(np.count_nonzero(centres < image_length)))


@torch.no_grad()
def line_probability(net: nn.Module, image: torch.Tensor) -> np.ndarray:
    """p(on a text line) per map cell, float32 ``[h, w]``, for a normalised ``[1, H, W]`` view.

    Views smaller than the network's receptive field are padded with black (the reference's
    zero fill), and only cells centred inside the view are kept.
    """
    height, width = image.shape[-2:]
    minimum = int(getattr(net, "min_input_size", 1))
    padded = F.pad(
        image.unsqueeze(0) if image.dim() == 3 else image,
        (0, max(0, minimum - width), 0, max(0, minimum - height)),
        value=-0.5,
    )
    was_training = net.training
    net.eval()
    probs = torch.softmax(net(padded), dim=1)[0, 1]
    net.train(was_training)
    grid: MapGrid = net.grid
    rows = valid_cells(grid, probs.shape[0], height)
    cols = valid_cells(grid, probs.shape[1], width)
    return probs[:rows, :cols].float().cpu().numpy()


def assign_transliteration(
    lengths: np.ndarray, transliteration: ViewTransliteration, post: LinePostprocess
) -> np.ndarray:
    """Transliteration line index (or -1) per line of the given lengths (sign heights, top to
    bottom), by the assignment settings of ``post``."""
    return assign_lines(
        lengths,
        transliteration,
        method=post.assignment,
        variance=post.variance,
        text_length=post.text_length,
        rescale=post.rescale,
    )


def transliteration_fits(transliteration: ViewTransliteration, image_size: tuple[int, int]) -> bool:
    """Whether a view ``image_size[0]`` px high (scaled) can hold the transliteration's visible
    lines at least :data:`MIN_TEXT_PITCH` sign heights apart."""
    return image_size[0] >= transliteration.num_lines * MIN_TEXT_PITCH * SIGN_HEIGHT


def hypotheses_from_probability(
    probability: np.ndarray,
    grid: MapGrid,
    image_size: tuple[int, int],
    transliteration: ViewTransliteration | None,
    post: LinePostprocess | None = None,
) -> tuple[LineHypotheses, np.ndarray]:
    """Line hypotheses and, per line, the assigned transliteration line index (or -1).

    A transliteration that cannot fit the view (:func:`transliteration_fits`) is not used: the
    lines are found without it and left unassigned, with a warning.
    """
    post = post or LinePostprocess()
    has_text = transliteration is not None and transliteration.num_lines > 0
    if has_text and not transliteration_fits(transliteration, image_size):
        log.warning(
            "%d transliteration lines cannot fit a view %d px high (%.2f sign heights per line, "
            "under %.1f): lines found without them and left unassigned; check the view's "
            "scale and transliteration",
            transliteration.num_lines,
            image_size[0],
            image_size[0] / (transliteration.num_lines * SIGN_HEIGHT),
            MIN_TEXT_PITCH,
        )
        has_text = False
    hypotheses = detect_lines(
        probability >= post.threshold,
        image_size,
        grid,
        num_lines=transliteration.num_lines if has_text else None,
        len_min=transliteration.len_min if has_text else 4,
        len_max=transliteration.len_max if has_text else 12,
        method=post.method,
    )
    support = line_support(hypotheses, probability)
    hypotheses = dataclasses.replace(
        hypotheses,
        lines=[
            dataclasses.replace(line, support=float(value))
            for line, value in zip(hypotheses.lines, support, strict=True)
        ],
    )
    if has_text and post.max_extra_lines >= 0:
        count = transliteration.num_lines + int(post.max_extra_lines)
        hypotheses = keep_supported(hypotheses, support, count)
    if has_text:
        lengths = detected_lengths(hypotheses, post.line_length)
        assigned = assign_transliteration(lengths, transliteration, post)
    else:
        assigned = np.full(len(hypotheses.lines), -1, np.int64)
    return hypotheses, np.asarray(assigned, np.int64)


def hypothesis_polylines(hypotheses: LineHypotheses) -> list[np.ndarray]:
    return [np.asarray(line.polyline, np.float64) for line in hypotheses.lines]


def describe_lines(hypotheses: LineHypotheses, assigned: np.ndarray) -> list[dict[str, Any]]:
    """Per line: its index, transliteration line, extent and model (for logs and JSON)."""
    return [
        {
            "index": line.index,
            "tl_line": int(tl),
            "x_min": float(line.x_min),
            "x_max": float(line.x_max),
            "slope": float(line.slope),
            "intercept": float(line.intercept),
            "support": float(line.support),
        }
        for line, tl in zip(hypotheses.lines, assigned, strict=True)
    ]
