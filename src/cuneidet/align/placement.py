"""Boxes for transliterated signs that no detection was aligned to (Dencker et al. 2020, §3).

Three steps of the training-set generation:

* :func:`refine_boxes` — the aligned boxes are clipped to ±``clip`` px (80 in the loop) around
  their line, so a detection that spills into the neighbouring lines does not teach the detector
  a tall box (reference ``clip_bbox_using_line_segmentation``).
* :func:`null_hypothesis_boxes` — iteration 0: every visible sign of a matched line gets a box at
  its null-hypothesis point (``layout.null_hypothesis``), prior width wide, 128 px high.
* :func:`place_unaligned` / :func:`place_view` — iteration k > 0 (conditional placement): the
  aligned signs of a line are *anchors*; the runs of unaligned signs between them are spread
  over the gaps between the anchors' boxes in proportion to their prior widths, their y is
  smoothed by a weighted linear fit through anchors and placed points, and only placed signs
  at most ``max_distance`` sign positions from an anchor are kept (reference
  ``LineFragment.create_conditional_hypo_alignments``).

Deviations from the reference, all where our line geometry is richer: distances to the line are
vertical and measured from the line's polyline (the reference shifts its straight line model onto
the skeleton and measures perpendicularly; at the few-degree slopes of text lines the two differ
by < 1 %), and the placed points start on the polyline before the y fit. All coordinates are
pixels of the scaled segment (signs ≈ 128 px high).
"""

from __future__ import annotations

import math
import operator
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike

from cuneidet.align.layout import null_hypothesis, sign_boxes
from cuneidet.align.transliteration import SIGN_HEIGHT, TransliterationLine, ViewTransliteration
from cuneidet.data.line_geometry import DEFAULT_PITCH_PX, LineHypotheses, TextLine
from cuneidet.errors import ConfigError, DataFormatError

REFINE_CLIP = 80.0
"""Half height (px) of the band around the line that refined boxes are clipped to."""

MIN_TAIL = SIGN_HEIGHT / 2.0
"""Shortest interval (px) for the run after the last anchor (the reference's ``128 / 2``)."""

ANCHOR_WEIGHT = 2.0
PLACED_WEIGHT = 1.0

BOX_COLUMNS = ("x1", "y1", "x2", "y2")
ALIGNED_COLUMNS = ("line_idx", "pos_idx", *BOX_COLUMNS)
PLACED_COLUMNS = ("line", "line_idx", "pos_idx", "train_label", *BOX_COLUMNS)
COUNT_KEYS = (
    "lines_placed",
    "signs_placed",
    "dropped_stretch",
    "dropped_far",
    "lines_without_anchors",
    "lines_complete",
    "lines_shared",
    "anchors_outside_band",
    "dropped_aligned",
)


@dataclass(frozen=True, eq=False)
class Placement:
    """Signs placed on one line: ``positions`` (K,) index the line's visible signs (reading
    order), ``boxes`` (K, 4) xyxy. ``dropped_stretch`` counts signs whose run was too compressed
    or stretched (or had a negative interval), ``dropped_far`` valid signs more than
    ``max_distance`` positions from every anchor. Equality is identity (arrays)."""

    positions: np.ndarray
    boxes: np.ndarray
    dropped_stretch: int = 0
    dropped_far: int = 0

    def __len__(self) -> int:
        return len(self.positions)

    @classmethod
    def empty(cls, dropped_stretch: int = 0) -> Placement:
        """Nothing placed (``dropped_stretch`` signs dropped for their runs' stretch)."""
        return cls(np.zeros(0, dtype=np.int64), np.zeros((0, 4)), dropped_stretch, 0)


# -- validation ---------------------------------------------------------------------------------


def _check_boxes(boxes: ArrayLike, what: str) -> np.ndarray:
    """``boxes`` as a float (K, 4) xyxy array; DataFormatError unless finite and not inverted."""
    array = np.asarray(boxes, dtype=np.float64)
    if array.size == 0:
        return np.zeros((0, 4))
    if array.ndim != 2 or array.shape[1] != 4:
        raise DataFormatError(f"{what} must be a (K, 4) array of x1, y1, x2, y2; got {array.shape}")
    if not np.isfinite(array).all():
        raise DataFormatError(f"{what} contain non-finite coordinates")
    inverted = (array[:, 2] < array[:, 0]) | (array[:, 3] < array[:, 1])
    if inverted.any():
        raise DataFormatError(
            f"{what}: {int(inverted.sum())} box(es) with x2 < x1 or y2 < y1, first "
            f"{array[np.argmax(inverted)].tolist()}; boxes must be x1, y1, x2, y2"
        )
    return array


def _check_widths(text: TransliterationLine) -> None:
    widths = text.widths
    if not (np.isfinite(widths).all() and (widths > 0).all()):
        raise DataFormatError(
            f"transliteration line {text.line_idx}: prior widths must be finite and > 0, got "
            f"{widths.tolist()}"
        )


def _check_placement_config(
    min_anchors: int, max_distance: int, min_stretch: float, max_stretch: float
) -> None:
    if min_anchors < 1:
        raise ConfigError(f"min_anchors must be ≥ 1 (distances need an anchor), got {min_anchors}")
    if max_distance < 0:
        raise ConfigError(f"max_distance must be ≥ 0 sign positions, got {max_distance}")
    if not 0 <= min_stretch <= max_stretch:
        raise ConfigError(
            f"need 0 ≤ min_stretch ≤ max_stretch, got min_stretch={min_stretch}, "
            f"max_stretch={max_stretch}"
        )


def _anchor_arrays(
    anchors: Mapping[int, ArrayLike], num_signs: int, line_idx: int
) -> tuple[np.ndarray, np.ndarray]:
    """Anchor positions (sorted) and their boxes (A, 4) from ``{position: box}``."""
    positions, boxes = [], []
    for key, box in anchors.items():
        try:
            position = operator.index(key)
        except TypeError:
            raise DataFormatError(
                f"line {line_idx}: anchor position {key!r} is not an integer"
            ) from None
        if not 0 <= position < num_signs:
            raise DataFormatError(
                f"line {line_idx}: anchor position {position} out of range for "
                f"{num_signs} visible signs (positions are 0..{num_signs - 1})"
            )
        try:
            box = np.asarray(box, dtype=np.float64)
        except (TypeError, ValueError):
            raise DataFormatError(
                f"line {line_idx}: anchor box at position {position} is not numeric: {box!r}"
            ) from None
        if box.shape != (4,):
            raise DataFormatError(
                f"line {line_idx}: anchor box at position {position} must have shape (4,) "
                f"(x1, y1, x2, y2), got {box.shape}"
            )
        positions.append(position)
        boxes.append(box)
    order = np.argsort(positions, kind="stable")
    boxes_array = _check_boxes(np.reshape(boxes, (-1, 4)), f"line {line_idx}: anchor boxes")
    return np.asarray(positions, dtype=np.int64)[order], boxes_array[order]


# -- refinement and iteration 0 -----------------------------------------------------------------


def refine_boxes(boxes: ArrayLike, line: TextLine, clip: float = REFINE_CLIP) -> np.ndarray:
    """Boxes (K, 4) with y1 and y2 clipped to ``line ± clip`` px (reference §2.4.6).

    The line's y is its polyline's at the box centre x (the polyline follows the skeleton, which
    is what the reference's skeleton correction approximates); x is unchanged. A box lying
    entirely (or all but < 1 px) beyond the clip would collapse to zero height — the reference
    writes such a "line" — so a box the clip squeezes below 1 px becomes a 1-px sliver at the
    band's edge nearest to it instead (``y2 = y1 + 1``, inside the band). Boxes the clip leaves
    alone are returned unchanged. Raises DataFormatError for malformed boxes, ConfigError for
    ``clip < 1``.
    """
    if not clip >= 1.0:
        raise ConfigError(f"clip must be ≥ 1 px, got {clip}")
    array = _check_boxes(boxes, "boxes to refine")
    centre_y = line.polyline_y_at((array[:, 0] + array[:, 2]) / 2.0)
    low, high = centre_y - clip, centre_y + clip
    y1 = np.clip(array[:, 1], low, high)
    y2 = np.clip(array[:, 3], low, high)
    squeezed = (y2 - y1 < 1.0) & ((y1 != array[:, 1]) | (y2 != array[:, 3]))
    middle = np.clip((y1 + y2) / 2.0, low + 0.5, high - 0.5)
    y1 = np.where(squeezed, middle - 0.5, y1)
    y2 = np.where(squeezed, middle + 0.5, y2)
    return np.stack([array[:, 0], y1, array[:, 2], y2], axis=1)


def null_hypothesis_boxes(line: TextLine, text: TransliterationLine) -> np.ndarray:
    """Iteration-0 boxes (N, 4) of every visible sign of ``text`` on ``line`` (§3.1).

    Centred at the null-hypothesis points, prior width wide (not stretched with the line) and
    SIGN_HEIGHT high; nothing is filtered (labels 0 and ≥ 240 included).
    """
    return sign_boxes(null_hypothesis(line, text), text.widths)


# -- conditional placement on one line ----------------------------------------------------------


def _runs(anchor_positions: np.ndarray, num_signs: int) -> list[tuple[np.ndarray, int, int]]:
    """Runs of unaligned positions as (positions, left anchor, right anchor); -1: no anchor."""
    anchored = np.zeros(num_signs, dtype=bool)
    anchored[anchor_positions] = True
    runs, current, left = [], [], -1
    for position in range(num_signs):
        if not anchored[position]:
            current.append(position)
            continue
        if current:
            runs.append((np.asarray(current, dtype=np.int64), left, position))
        current, left = [], position
    if current:
        runs.append((np.asarray(current, dtype=np.int64), left, -1))
    return runs


def _run_interval(
    line: TextLine, boxes_by_position: dict[int, np.ndarray], left: int, right: int
) -> tuple[float, float]:
    """[start, end] in x of a run between anchors ``left`` and ``right`` (-1: line end)."""
    start = float(line.x_min) if left < 0 else float(boxes_by_position[left][2])
    end = max(start + MIN_TAIL, float(line.x_max)) if right < 0 else boxes_by_position[right][0]
    return start, float(end)


def spread_run(start: float, end: float, widths: np.ndarray) -> np.ndarray:
    """x of the centres of signs of prior ``widths`` spread over [start, end] in proportion
    to their widths: ``start + (cumsum(w) − w / 2) · (end − start) / Σw``."""
    widths = np.asarray(widths, dtype=np.float64)
    return start + (np.cumsum(widths) - widths / 2.0) * ((end - start) / widths.sum())


def _weighted_line_fit(xs: np.ndarray, ys: np.ndarray, weights: np.ndarray) -> tuple[float, float]:
    """Weighted least-squares (slope, intercept) of y on x; slope 0 when x does not vary
    (then the fit is the weighted mean y, so a single point keeps its y)."""
    total = weights.sum()
    x_mean, y_mean = (weights @ xs) / total, (weights @ ys) / total
    spread = weights @ (xs - x_mean) ** 2
    if spread <= 1e-12 * max(1.0, x_mean**2):
        return 0.0, float(y_mean)
    slope = (weights @ ((xs - x_mean) * (ys - y_mean))) / spread
    return float(slope), float(y_mean - slope * x_mean)


def _positional_distance(num_signs: int, anchor_positions: np.ndarray) -> np.ndarray:
    """Per position: number of sign positions to the nearest anchor (1-D distance transform)."""
    positions = np.arange(num_signs)
    return np.abs(positions[:, None] - anchor_positions[None, :]).min(axis=1)


def place_unaligned(
    line: TextLine,
    text: TransliterationLine,
    anchors: Mapping[int, ArrayLike],
    min_anchors: int = 1,
    max_distance: int = 10,
    min_stretch: float = 0.2,
    max_stretch: float = 5.0,
) -> Placement:
    """Boxes for the unaligned signs of one matched line, conditioned on its anchors (§3.2).

    ``anchors`` maps positions (0..N−1 into ``text``'s visible signs, reading order) to the
    aligned boxes (x1, y1, x2, y2). Nothing is placed unless ``min_anchors ≤ #anchors < N``.
    Each run of unaligned signs is spread over [previous anchor's x2 (``line.x_min`` before the
    first anchor), next anchor's x1]; the run after the last anchor over [last anchor's x2,
    max(that + 64, ``line.x_max``)]. A run whose interval is shorter than ``min_stretch`` or
    longer than ``max_stretch`` times its prior length Σw is dropped whole (``dropped_stretch``);
    this includes a zero or negative interval (anchors out of order or overlapping), which is
    shorter than any positive fraction of Σw, as in the reference. Placed points start on the
    polyline; their y is then replaced by a weighted linear fit of y on x over the anchors'
    centres (weight 2) and all placed points of runs kept (weight 1; the far ones below included,
    as in the reference). Placed signs more than ``max_distance`` positions from every anchor are
    dropped (``dropped_far``). Boxes are prior width wide and SIGN_HEIGHT high; anchors are not
    returned.

    Raises DataFormatError for a malformed anchor (position out of range or not an integer,
    box not 4 finite numbers with x1 ≤ x2, y1 ≤ y2) or prior widths ≤ 0; ConfigError for
    ``min_anchors < 1``, ``max_distance < 0`` or stretch bounds not ``0 ≤ min ≤ max``.
    """
    _check_placement_config(min_anchors, max_distance, min_stretch, max_stretch)
    num_signs = len(text)
    anchor_positions, anchor_boxes = _anchor_arrays(anchors, num_signs, text.line_idx)
    if not min_anchors <= len(anchor_positions) < num_signs:
        return Placement.empty()
    _check_widths(text)
    positions, xs, dropped_stretch = _spread_runs(
        line, text, anchor_positions, anchor_boxes, (min_stretch, max_stretch)
    )
    if len(positions) == 0:
        return Placement.empty(dropped_stretch)
    ys = _smoothed_y(line, anchor_boxes, xs)
    near = _positional_distance(num_signs, anchor_positions)[positions] <= max_distance
    boxes = sign_boxes(np.stack([xs, ys], axis=1)[near], text.widths[positions[near]])
    return Placement(positions[near], boxes, dropped_stretch, int((~near).sum()))


def _spread_runs(
    line: TextLine,
    text: TransliterationLine,
    anchor_positions: np.ndarray,
    anchor_boxes: np.ndarray,
    stretch: tuple[float, float],
) -> tuple[np.ndarray, np.ndarray, int]:
    """Positions and x of the signs of every run kept, and how many signs the stretch test
    dropped (bounds inclusive, as the reference drops only ``<`` min and ``>`` max)."""
    boxes_by_position = dict(zip(anchor_positions.tolist(), anchor_boxes, strict=True))
    kept_positions, kept_x, dropped = [np.zeros(0, np.int64)], [np.zeros(0)], 0
    for positions, left, right in _runs(anchor_positions, len(text)):
        start, end = _run_interval(line, boxes_by_position, left, right)
        prior_length = float(text.widths[positions].sum())
        if not stretch[0] * prior_length <= end - start <= stretch[1] * prior_length:
            dropped += len(positions)
            continue
        kept_positions.append(positions)
        kept_x.append(spread_run(start, end, text.widths[positions]))
    return np.concatenate(kept_positions), np.concatenate(kept_x), dropped


def _smoothed_y(line: TextLine, anchor_boxes: np.ndarray, xs: np.ndarray) -> np.ndarray:
    """y of placed points at ``xs``: the weighted linear fit of y on x over the anchors'
    centres (weight 2) and the placed points on the polyline (weight 1)."""
    anchor_centres = (anchor_boxes[:, :2] + anchor_boxes[:, 2:]) / 2.0
    fit_x = np.r_[anchor_centres[:, 0], xs]
    fit_y = np.r_[anchor_centres[:, 1], line.polyline_y_at(xs)]
    weights = np.r_[np.full(len(anchor_centres), ANCHOR_WEIGHT), np.full(len(xs), PLACED_WEIGHT)]
    slope, intercept = _weighted_line_fit(fit_x, fit_y, weights)
    return slope * xs + intercept


# -- whole view ---------------------------------------------------------------------------------


def _int_column(frame: pd.DataFrame, name: str) -> np.ndarray:
    values = pd.to_numeric(frame[name], errors="coerce").to_numpy(dtype=np.float64)
    if not (np.isfinite(values).all() and (values == np.round(values)).all()):
        raise DataFormatError(f"aligned signs: column {name!r} must hold integers")
    return values.astype(np.int64)


def _aligned_arrays(aligned: pd.DataFrame) -> dict[str, np.ndarray]:
    """Columns of the aligned signs as arrays (indices int, box float (K, 4))."""
    if len(aligned) == 0:
        return {
            "line_idx": np.zeros(0, np.int64),
            "pos_idx": np.zeros(0, np.int64),
            "boxes": np.zeros((0, 4)),
        }
    missing = [c for c in ALIGNED_COLUMNS if c not in aligned.columns]
    if missing:
        raise DataFormatError(
            f"aligned signs lack column(s) {missing}; expected at least {list(ALIGNED_COLUMNS)}"
        )
    coords = aligned[list(BOX_COLUMNS)].apply(pd.to_numeric, errors="coerce").to_numpy(float)
    return {
        "line_idx": _int_column(aligned, "line_idx"),
        "pos_idx": _int_column(aligned, "pos_idx"),
        "boxes": _check_boxes(coords, "aligned boxes"),
    }


def _check_assignment(
    assignment: ArrayLike, hypotheses: LineHypotheses, transliteration: ViewTransliteration
) -> np.ndarray:
    values = np.asarray(assignment)
    if values.shape != (len(hypotheses.lines),) or (
        values.size and not np.issubdtype(values.dtype, np.integer)
    ):
        raise DataFormatError(
            f"assignment must be an int array with one entry per detected line "
            f"({len(hypotheses.lines)}), got dtype {values.dtype} shape {values.shape}"
        )
    known = set(transliteration.line_indices)
    unknown = sorted({int(v) for v in values if v != -1 and int(v) not in known})
    if unknown:
        raise DataFormatError(
            f"assignment names transliteration line(s) {unknown} that are not among the "
            f"visible lines {sorted(known)}; use -1 for an unassigned detected line"
        )
    return values.astype(np.int64)


def _line_anchors(
    text: TransliterationLine, pos_idx: np.ndarray, boxes: np.ndarray
) -> dict[int, np.ndarray]:
    """``{position: box}`` of one transliteration line's aligned rows (pos_idx → position)."""
    position_of = {int(p): i for i, p in enumerate(text.pos_idx)}
    unknown = sorted({int(p) for p in pos_idx if int(p) not in position_of})
    if unknown:
        raise DataFormatError(
            f"aligned signs of line_idx {text.line_idx} have pos_idx {unknown} that are not "
            f"visible signs of that line (visible pos_idx: {text.pos_idx.tolist()})"
        )
    repeated = sorted(p for p, n in Counter(pos_idx.tolist()).items() if n > 1)
    if repeated:
        raise DataFormatError(
            f"aligned signs of line_idx {text.line_idx} repeat pos_idx {repeated}; "
            "each sign can be aligned to one box only"
        )
    return {position_of[int(p)]: box for p, box in zip(pos_idx, boxes, strict=True)}


def _in_band(hypotheses: LineHypotheses, line: TextLine, boxes: np.ndarray) -> np.ndarray:
    """Box centres within half a line pitch (vertically) of the line's polyline.

    The reference's band is a parallelogram across the whole image, so unlike
    ``LineHypotheses.band_contains`` the line's x extent is not checked.
    """
    pitch = DEFAULT_PITCH_PX if math.isnan(hypotheses.pitch) else hypotheses.pitch
    centres = (boxes[:, :2] + boxes[:, 2:]) / 2.0
    return np.abs(centres[:, 1] - line.polyline_y_at(centres[:, 0])) <= pitch / 2.0


def _placed_frame(rows: list[dict[str, np.ndarray]]) -> pd.DataFrame:
    """One frame (PLACED_COLUMNS) from per-line dicts of index arrays and ``boxes``."""
    empty = {name: np.zeros(0, dtype=np.int64) for name in PLACED_COLUMNS[:4]}
    rows = rows or [{**empty, "boxes": np.zeros((0, 4))}]
    columns = {name: np.concatenate([r[name] for r in rows]).astype(np.int64) for name in empty}
    boxes = np.concatenate([r["boxes"] for r in rows]).astype(np.float64)
    columns.update({name: boxes[:, k] for k, name in enumerate(BOX_COLUMNS)})
    return pd.DataFrame(columns, columns=list(PLACED_COLUMNS))


def place_view(
    hypotheses: LineHypotheses,
    transliteration: ViewTransliteration,
    assignment: ArrayLike,
    aligned: pd.DataFrame,
    *,
    min_anchors: int = 1,
    max_distance: int = 10,
    min_stretch: float = 0.2,
    max_stretch: float = 5.0,
    band_filter: bool = True,
) -> tuple[pd.DataFrame, dict[str, int]]:
    """Conditional placement (§3.2) for every detected line of one view.

    ``assignment[i]`` is the transliteration ``line_idx`` of detected line ``i`` or −1;
    ``aligned`` holds the aligned signs (``line_idx``, ``pos_idx``, ``x1, y1, x2, y2``). A
    detected line's anchors are the aligned rows of its transliteration line whose centre lies
    in the line's band, within half a line pitch of its polyline (§3.2 step 2: the sign-level
    alignment and this line assignment must agree; ``band_filter=False`` skips the band test).
    A transliteration line assigned to several detected lines (a 2-1 bead) is skipped: its
    unaligned signs cannot be told apart between the parts, and the reference aborts there.

    Returns the placed signs — columns ``line`` (detected line), ``line_idx``, ``pos_idx``,
    ``train_label``, ``x1, y1, x2, y2`` — ordered by line and position, and counts:
    ``lines_placed`` (lines with ≥ 1 placed sign), ``signs_placed``, ``dropped_stretch``,
    ``dropped_far``, ``lines_without_anchors`` (assigned lines with fewer than ``min_anchors``
    anchors), ``lines_complete`` (every visible sign anchored), ``lines_shared`` (detected lines
    skipped as parts of a shared transliteration line), ``anchors_outside_band`` and
    ``dropped_aligned`` (placed signs dropped because they are aligned outside the band: they
    are already in the aligned set; the reference would write them twice).

    Raises DataFormatError for a malformed assignment (wrong length, not ints, unknown
    ``line_idx``) or aligned frame (missing column, non-integer index, bad box, a ``pos_idx``
    that is not a visible sign of its line, a sign aligned twice).
    """
    settings = {
        "min_anchors": min_anchors,
        "max_distance": max_distance,
        "min_stretch": min_stretch,
        "max_stretch": max_stretch,
    }
    _check_placement_config(**settings)
    values = _check_assignment(assignment, hypotheses, transliteration)
    rows = _aligned_arrays(aligned)
    texts = {text.line_idx: text for text in transliteration.lines}
    shared = {k for k, n in Counter(values[values >= 0].tolist()).items() if n > 1}
    counts = dict.fromkeys(COUNT_KEYS, 0)
    placed = []
    for index, line_idx in enumerate(values.tolist()):
        if line_idx in shared:
            counts["lines_shared"] += 1
        elif line_idx >= 0:
            mine = rows["line_idx"] == line_idx
            line_rows = _line_anchors(texts[line_idx], rows["pos_idx"][mine], rows["boxes"][mine])
            inside = (
                _in_band(hypotheses, hypotheses.lines[index], rows["boxes"][mine])
                if band_filter
                else np.ones(int(mine.sum()), dtype=bool)
            )
            counts["anchors_outside_band"] += int((~inside).sum())
            result = _place_line(
                hypotheses.lines[index], texts[line_idx], line_rows, inside, settings, counts
            )
            if result is not None:
                placed.append(_placed_rows(index, texts[line_idx], result))
    return _placed_frame(placed), counts


def _place_line(
    line: TextLine,
    text: TransliterationLine,
    line_rows: dict[int, np.ndarray],
    inside: np.ndarray,
    settings: dict[str, float],
    counts: dict[str, int],
) -> Placement | None:
    """Place one line's unaligned signs; update ``counts``; None when nothing is placed.

    ``line_rows`` are all aligned rows of the line (``{position: box}``, in row order) and
    ``inside`` says which are in the band: only those are anchors, but a sign aligned outside
    the band is not placed again (it would appear twice in the training set).
    """
    anchors = {p: box for (p, box), ok in zip(line_rows.items(), inside, strict=True) if ok}
    if len(anchors) < settings["min_anchors"]:
        counts["lines_without_anchors"] += 1
        return None
    if len(anchors) >= len(text):
        counts["lines_complete"] += 1
        return None
    result = place_unaligned(line, text, anchors, **settings)
    counts["dropped_stretch"] += result.dropped_stretch
    counts["dropped_far"] += result.dropped_far
    keep = ~np.isin(result.positions, list(line_rows))
    counts["dropped_aligned"] += int((~keep).sum())
    if not keep.any():
        return None
    counts["lines_placed"] += 1
    counts["signs_placed"] += int(keep.sum())
    return Placement(
        result.positions[keep], result.boxes[keep], result.dropped_stretch, result.dropped_far
    )


def _placed_rows(index: int, text: TransliterationLine, result: Placement) -> dict:
    """Columns of one line's placed signs for :func:`_placed_frame`."""
    size = len(result)
    return {
        "line": np.full(size, index),
        "line_idx": np.full(size, text.line_idx),
        "pos_idx": text.pos_idx[result.positions],
        "train_label": text.labels[result.positions],
        "boxes": result.boxes,
    }


__all__ = [
    "MIN_TAIL",
    "REFINE_CLIP",
    "Placement",
    "null_hypothesis_boxes",
    "place_unaligned",
    "place_view",
    "refine_boxes",
    "spread_run",
]
