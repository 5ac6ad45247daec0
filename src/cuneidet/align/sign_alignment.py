"""Sign-level and line-level alignment of a view's transliteration to its detections (k > 0).

Dencker et al. 2020, iterations k > 0 (reference ``LineMatching1D`` and
``compute_line_tl_alignment``). Three layers:

**Energies** (§2.4.2–2.4.3 of the method notes). A transliteration sign i matched to detection j
pays the confidence cost ``λ_s(exp((1 − s_j)/σ_s) − 1)`` plus the position cost
``sqrt(Δx²/w_i + Δy²)/64`` from the sign's null-hypothesis centre (w_i its width ratio); an
unmatched sign (an *outlier*) pays ``outlier_cost``. Two matched signs pay a pairwise cost
between their detection centres a → b: for neighbours in the line the spacing, direction and
overlap terms, for signs further apart (long range) direction and overlap only, with their own
λ/σ. :data:`HP04` holds the parameters of the sign alignment in the loop, :data:`GM_DEFAULTS`
those of the line-level "GM" scores.

**Exact sign alignment** (:func:`align_signs`). The reference builds a loopy model (adjacent
plus all long-range factors) and minimises it approximately with TRW-S. We minimise a closely
related energy exactly by dynamic programming instead. The signs of a line take, in reading
order, either a detection of their own class or the outlier label, under a hard constraint:
the matched detections must strictly increase in their projection on the line direction (ties
broken by detection index), so every detection serves at most one sign and the order along the
line is kept. The energy is the unaries plus, for each pair of *consecutive matched* signs
(i, k), the adjacent term if k = i + 1 and the long-range term otherwise. In the reference the
long-range terms also join matched signs that have other matched signs between them; their job
there (forbidding reordering and reuse across the line) is done here by the order constraint.
Each line is then solved exactly in O(S²) for S (sign, detection) candidates, and the energy is
never above the all-outlier energy, so the reference's "inference failed" case cannot occur.
Ties go to the outlier label (a sign is matched only if that strictly lowers the energy).

**Line-level alignment** (§2.2–2.3, option III): a RANSAC-like score and a GM score
(1 − normalised energy of the sign alignment under :data:`GM_DEFAULTS`) for every (detected
line, transliteration line) pair, a Bleualign-style monotone path through each score matrix,
and the intersection of the two paths. :func:`align_view` then aligns the signs of every
assigned line with :data:`HP04`. All the line problems of one stage are flattened into one
batch and solved by one DP pass (one numpy step per sign position), as per-pair Python calls
would cost far more than the arithmetic.

All coordinates are pixels of the scaled segment (signs are :data:`SIGN_HEIGHT` px high).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np
import pandas as pd

from cuneidet.align.layout import line_direction, null_hypotheses
from cuneidet.align.transliteration import SIGN_HEIGHT, TransliterationLine, ViewTransliteration
from cuneidet.data.csdd import NUM_DETECTOR_CLASSES
from cuneidet.errors import ConfigError, DataFormatError
from cuneidet.lines.hypotheses import LineHypotheses

POSITION_NORM = SIGN_HEIGHT / 2.0
"""Position costs are distances in half sign heights (the reference's ``min_sign_dist``)."""

SPACING_Y_VARIANCE = 0.2
"""Vertical variance of the spacing distance: vertical gaps count ``1/sqrt(0.2)`` ≈ 2.2 times."""

RANSAC_MAX_DIST = 2.0
"""RANSAC score: detections further than this (in half sign heights) do not count."""

RANSAC_MISS_COST = 3.0
"""RANSAC score: cost of a sign without a detection in range (1 + RANSAC_MAX_DIST)."""


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


# -- candidate detections -----------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class _Candidates:
    """Detections of one line, sorted by label so each class is a contiguous slice.

    ``index`` maps back to the caller's arrays; ``rank`` is the detection's place along the line
    direction (projection, ties by caller index), which the order constraint compares.
    """

    index: np.ndarray
    labels: np.ndarray
    centres: np.ndarray
    boxes: np.ndarray
    scores: np.ndarray
    rank: np.ndarray


def _candidates(
    index: np.ndarray,
    boxes: np.ndarray,
    scores: np.ndarray,
    labels: np.ndarray,
    direction: np.ndarray,
) -> _Candidates:
    centres = (boxes[:, :2] + boxes[:, 2:]) / 2.0
    projection = centres @ direction
    rank = np.empty(len(index), dtype=np.int64)
    rank[np.lexsort((index, projection))] = np.arange(len(index))
    order = np.argsort(labels, kind="stable")
    return _Candidates(
        index=index[order],
        labels=labels[order],
        centres=centres[order],
        boxes=boxes[order],
        scores=scores[order],
        rank=rank[order],
    )


def _states(cands: _Candidates, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """All (sign, candidate) pairs of matching class, grouped by sign in reading order.

    Signs with label 0 or ≥ NUM_DETECTOR_CLASSES get none (they can only be outliers).
    """
    known = (labels > 0) & (labels < NUM_DETECTOR_CLASSES)
    lo = np.searchsorted(cands.labels, labels, side="left")
    hi = np.searchsorted(cands.labels, labels, side="right")
    counts = np.where(known, hi - lo, 0)
    sign = np.repeat(np.arange(len(labels)), counts)
    starts = np.cumsum(counts) - counts
    det = np.arange(len(sign)) - np.repeat(starts, counts) + np.repeat(lo, counts)
    return sign, det


# -- batches of line problems -------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class _Piece:
    """Line problems sharing one candidate set (one detected line's band): per problem the
    transliteration signs ``(labels, widths, expected)`` to align to ``cands``."""

    cands: _Candidates
    direction: np.ndarray
    lines: list[tuple[np.ndarray, np.ndarray, np.ndarray]]


@dataclass(frozen=True, eq=False)
class _Batch:
    """Independent line problems as flat arrays, so that one DP pass solves them all.

    Per problem: ``num_signs`` and ``directions``. Per sign of all problems, concatenated:
    ``sign_problem``. Per state (a sign with a candidate of its class), in problem-major then
    reading order: ``problem``, ``sign`` (index in its line), ``sign_pos`` (index in the
    concatenated signs), ``det`` (caller's detection index), the candidate's ``centres``,
    ``boxes``, ``scores`` and ``rank`` (order along its line), ``dist`` (position distance from
    the sign's expected centre, in half sign heights) and ``unary``.
    """

    num_signs: np.ndarray
    directions: np.ndarray
    sign_problem: np.ndarray
    problem: np.ndarray
    sign: np.ndarray
    sign_pos: np.ndarray
    det: np.ndarray
    centres: np.ndarray
    boxes: np.ndarray
    scores: np.ndarray
    rank: np.ndarray
    dist: np.ndarray
    unary: np.ndarray


_STATE_FIELDS = ("problem", "sign", "sign_pos", "det", "centres", "boxes", "scores", "rank")


def _piece_states(piece: _Piece, first_problem: int, first_sign: int) -> dict[str, np.ndarray]:
    """State arrays of one piece (plus the expected centre and width of each state's sign)."""
    sizes = np.array([len(line[0]) for line in piece.lines], dtype=np.int64)
    labels = np.concatenate([line[0] for line in piece.lines])
    widths = np.concatenate([line[1] for line in piece.lines])
    expected = np.concatenate([line[2] for line in piece.lines]).reshape(-1, 2)
    problem = np.repeat(np.arange(len(sizes)) + first_problem, sizes)
    in_line = np.arange(len(labels)) - np.repeat(np.cumsum(sizes) - sizes, sizes)
    sign_pos, cand = _states(piece.cands, labels)
    return {
        "sign_problem": problem,
        "problem": problem[sign_pos],
        "sign": in_line[sign_pos],
        "sign_pos": sign_pos + first_sign,
        "det": piece.cands.index[cand],
        "centres": piece.cands.centres[cand],
        "boxes": piece.cands.boxes[cand],
        "scores": piece.cands.scores[cand],
        "rank": piece.cands.rank[cand],
        "expected": expected[sign_pos],
        "ratio": widths[sign_pos] / SIGN_HEIGHT,
    }


def _batch(pieces: list[_Piece], params: AlignmentParams) -> _Batch:
    """Flatten the problems of ``pieces`` (in order) into one batch and compute the unaries."""
    parts, num_signs, directions = [], [], []
    first_sign = 0
    for piece in pieces:
        parts.append(_piece_states(piece, len(num_signs), first_sign))
        num_signs.extend(len(line[0]) for line in piece.lines)
        directions.extend([piece.direction] * len(piece.lines))
        first_sign = int(sum(num_signs))
    empty = {
        "sign_problem": np.zeros(0, np.int64),
        **{name: np.zeros(0, np.int64) for name in ("problem", "sign", "sign_pos", "det", "rank")},
        "centres": np.zeros((0, 2)),
        "boxes": np.zeros((0, 4)),
        "scores": np.zeros(0),
        "expected": np.zeros((0, 2)),
        "ratio": np.zeros(0),
    }
    flat = {name: np.concatenate([empty[name], *(part[name] for part in parts)]) for name in empty}
    dist = position_distance(flat["centres"], flat["expected"], flat["ratio"])
    unary = confidence_cost(flat["scores"], params) + (dist if params.use_offset else 0.0)
    return _Batch(
        num_signs=np.array(num_signs, dtype=np.int64),
        directions=np.array(directions, dtype=np.float64).reshape(-1, 2),
        sign_problem=flat["sign_problem"],
        **{name: flat[name] for name in _STATE_FIELDS},
        dist=dist,
        unary=unary,
    )


def _group_starts(keys: np.ndarray) -> np.ndarray:
    """Start index of each run of equal consecutive ``keys``."""
    if len(keys) == 0:
        return np.zeros(0, dtype=np.int64)
    return np.flatnonzero(np.concatenate(([True], keys[1:] != keys[:-1])))


def _first_minima(values: np.ndarray, starts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per run of ``values`` beginning at ``starts``: its minimum and the index of its first
    occurrence (the argmin with ties to the earliest)."""
    minima = np.minimum.reduceat(values, starts)
    sizes = np.diff(np.append(starts, len(values)))
    positions = np.arange(len(values))
    hits = np.where(values == np.repeat(minima, sizes), positions, len(values))
    return minima, np.minimum.reduceat(hits, starts)


# -- exact monotone dynamic program -------------------------------------------------------------


def _edges(batch: _Batch, params: AlignmentParams) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Allowed transitions ``src → dst`` between states and their pair costs.

    A transition joins two states of one problem whose signs and ranks both increase (the
    order constraint): ``dst`` matched right after ``src``. Edges come grouped by ``dst`` and
    sorted by the sign index of ``dst``, the order in which the DP consumes them.
    """
    index = np.arange(len(batch.sign))
    new_problem = np.zeros(len(index), dtype=bool)
    new_problem[_group_starts(batch.problem)] = True
    new_sign = new_problem.copy()
    new_sign[_group_starts(batch.sign)] = True
    problem_start = np.maximum.accumulate(np.where(new_problem, index, 0))
    sign_start = np.maximum.accumulate(np.where(new_sign, index, 0))
    # states of earlier signs of the same problem: the block [problem_start, sign_start)
    order = np.argsort(batch.sign, kind="stable")
    counts = (sign_start - problem_start)[order]
    dst = np.repeat(order, counts)
    src = np.repeat(problem_start[order], counts) + (
        np.arange(len(dst)) - np.repeat(np.cumsum(counts) - counts, counts)
    )
    keep = batch.rank[src] < batch.rank[dst]
    src, dst = src[keep], dst[keep]
    return src, dst, _edge_costs(batch, src, dst, params)


def _edge_costs(
    batch: _Batch, src: np.ndarray, dst: np.ndarray, params: AlignmentParams
) -> np.ndarray:
    """Pair cost of each edge: adjacent term for neighbouring signs, long-range term otherwise."""
    a, b = batch.centres[src], batch.centres[dst]
    iou = _iou(batch.boxes[src], batch.boxes[dst])
    direction = batch.directions[batch.problem[dst]]
    near = (batch.sign[dst] - batch.sign[src]) == 1
    far = ~near
    cost = np.empty(len(src))
    cost[near] = adjacent_cost(a[near], b[near], iou[near], direction[near], params)
    cost[far] = long_range_cost(a[far], b[far], iou[far], direction[far], params)
    return cost


def _dp(
    batch: _Batch, src: np.ndarray, dst: np.ndarray, cost: np.ndarray, outlier_cost: float
) -> tuple[np.ndarray, np.ndarray]:
    """Best chain ending in each state, all problems at once, one sign index at a time.

    A chain's value is ``Σ (unary − outlier_cost) + Σ pair costs`` over its states and links,
    so a problem's energy is ``N·outlier_cost + min(0, best chain)``. Returns the value of the
    best chain ending in each state and the edge it arrives by (−1: the chain starts there).
    Ties keep the shorter chain (start afresh rather than extend).
    """
    best = batch.unary - outlier_cost
    back = np.full(len(best), -1, dtype=np.int64)
    if len(dst) == 0:
        return best, back
    starts = _group_starts(dst)
    targets = dst[starts]
    ends = np.append(starts[1:], len(dst))
    levels = _group_starts(batch.sign[targets])
    # one level = the targets of one sign index; their sources all lie on earlier levels
    for g_lo, g_hi in zip(levels, [*levels[1:], len(targets)], strict=True):
        e_lo, e_hi = starts[g_lo], ends[g_hi - 1]
        values = best[src[e_lo:e_hi]] + cost[e_lo:e_hi]
        minima, first = _first_minima(values, starts[g_lo:g_hi] - e_lo)
        extend = minima < 0.0
        chosen = targets[g_lo:g_hi][extend]
        best[chosen] += minima[extend]
        back[chosen] = first[extend] + e_lo
    return best, back


def _problem_minima(batch: _Batch, best: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per problem: the best chain value (+inf without states) and its end state (−1)."""
    minima = np.full(len(batch.num_signs), np.inf)
    ends = np.full(len(batch.num_signs), -1, dtype=np.int64)
    starts = _group_starts(batch.problem)
    if len(starts):
        values, first = _first_minima(best, starts)
        minima[batch.problem[starts]] = values
        ends[batch.problem[starts]] = first
    return minima, ends


def _energies(batch: _Batch, minima: np.ndarray, outlier_cost: float) -> np.ndarray:
    """Minimum energy of each problem: all outliers, improved by the best chain if negative."""
    return batch.num_signs * outlier_cost + np.minimum(minima, 0.0)


@dataclass(frozen=True, eq=False)
class SignAlignment:
    """Result of :func:`align_signs` for one line of N signs.

    ``matched``: per sign, the index of its detection in the given arrays, or −1 (outlier).
    ``energy``: total energy E. ``line_energy``: ``min(E, N·outlier_cost)/(N·outlier_cost)``
    (may be negative: tight spacing is rewarded; 0 without signs). ``sign_energy``: per-sign
    nE, the sign's unary (or the outlier cost) plus half the pair cost to the previous and to
    the next matched sign, over the outlier cost, rounded to 2 decimals; unrounded, they sum to
    E/outlier_cost.
    """

    matched: np.ndarray
    energy: float
    line_energy: float
    sign_energy: np.ndarray


_NO_SIGNS = SignAlignment(np.zeros(0, dtype=np.int64), 0.0, 0.0, np.zeros(0))


def _chain(end: int, src: np.ndarray, back: np.ndarray) -> tuple[list[int], list[int]]:
    """States and arriving edges of the chain ending in ``end`` (−1: empty), in line order."""
    states, edges = [], []
    state = end
    while state >= 0:
        states.append(state)
        edge = int(back[state])
        if edge < 0:
            break
        edges.append(edge)
        state = int(src[edge])
    return states[::-1], edges[::-1]


def _alignment(
    batch: _Batch, problem: int, chain: tuple[list[int], list[int]], cost: np.ndarray, oc: float
) -> SignAlignment:
    """Package one problem's chain as a SignAlignment (energies recomputed from its terms)."""
    n = int(batch.num_signs[problem])
    if n == 0:
        return _NO_SIGNS
    states, edges = np.array(chain[0], dtype=np.int64), np.array(chain[1], dtype=np.int64)
    matched = np.full(n, -1, dtype=np.int64)
    per_sign = np.full(n, oc)
    matched[batch.sign[states]] = batch.det[states]
    per_sign[batch.sign[states]] = batch.unary[states]
    links = cost[edges]
    np.add.at(per_sign, batch.sign[states[:-1]], links / 2.0)
    np.add.at(per_sign, batch.sign[states[1:]], links / 2.0)
    energy = float(batch.unary[states].sum() + oc * (n - len(states)) + links.sum())
    return SignAlignment(
        matched=matched,
        energy=energy,
        line_energy=min(energy, n * oc) / (n * oc),
        sign_energy=np.round(per_sign / oc, 2),
    )


def _solve(pieces: list[_Piece], params: AlignmentParams) -> list[SignAlignment]:
    """Exact alignment of every problem of ``pieces``, in order."""
    batch = _batch(pieces, params)
    src, dst, cost = _edges(batch, params)
    best, back = _dp(batch, src, dst, cost, params.outlier_cost)
    minima, ends = _problem_minima(batch, best)
    alignments = []
    for p in range(len(batch.num_signs)):
        end = int(ends[p]) if minima[p] < 0.0 else -1  # a tie with all outliers: all outliers
        chain = _chain(end, src, back)
        alignments.append(_alignment(batch, p, chain, cost, params.outlier_cost))
    return alignments


def align_signs(
    labels: np.ndarray,
    widths: np.ndarray,
    expected: np.ndarray,
    direction: np.ndarray,
    det_boxes: np.ndarray,
    det_scores: np.ndarray,
    det_labels: np.ndarray,
    params: AlignmentParams = HP04,
) -> SignAlignment:
    """Exact minimum-energy alignment of one line's signs to candidate detections.

    ``labels (N,)``: train labels of the visible signs in reading order; ``widths (N,)``: their
    prior widths in px; ``expected (N, 2)``: their null-hypothesis centres; ``direction (2,)``:
    the line's reading direction (normalised here); ``det_boxes (M, 4)`` xyxy, ``det_scores``,
    ``det_labels (M,)``: the candidates (the line's band detections). Each sign takes a
    detection of its own class or is an outlier; matched detections must strictly advance
    along ``direction`` (see the module docstring). Raises DataFormatError on malformed input.
    """
    labels, widths, expected = _check_signs(labels, widths, expected)
    boxes, scores, det_labels = _check_detections(det_boxes, det_scores, det_labels)
    unit = _unit(direction)
    cands = _candidates(np.arange(len(boxes)), boxes, scores, det_labels, unit)
    return _solve([_Piece(cands, unit, [(labels, widths, expected)])], params)[0]


# -- line-level scores and monotone path --------------------------------------------------------


def _ransac_scores(batch: _Batch) -> np.ndarray:
    """RANSAC score of every problem of ``batch`` (see :func:`ransac_score`)."""
    cost = np.full(len(batch.sign_problem), RANSAC_MISS_COST)
    near = batch.dist <= RANSAC_MAX_DIST
    np.minimum.at(cost, batch.sign_pos[near], 1.0 - batch.scores[near] + batch.dist[near])
    total = np.bincount(batch.sign_problem, weights=cost, minlength=len(batch.num_signs))
    normaliser = RANSAC_MISS_COST * np.maximum(batch.num_signs, 1)
    return np.where(batch.num_signs > 0, 1.0 - total / normaliser, 0.0)


def ransac_score(
    labels: np.ndarray,
    widths: np.ndarray,
    expected: np.ndarray,
    det_boxes: np.ndarray,
    det_scores: np.ndarray,
    det_labels: np.ndarray,
) -> float:
    """The reference's "RANSAC" line score of one (detected line, transliteration line) pair.

    Per sign: the best ``1 − score + d`` over same-class detections within ``d ≤ 2`` of its
    expected centre (``d = sqrt(Δx²/w + Δy²)/64``), else 3 (also for label 0); the score is
    ``1 − Σ/(3N)``, in [0, 1], and 0 for a line without signs. Inputs as :func:`align_signs`.
    The reference draws candidates in random order, which only matters for ties of the
    minimum, so it is left out; it also scores a line with no band detection at all 1 (its
    cost stays 0), where this scores it 0 like any line without matching detections.
    """
    labels, widths, expected = _check_signs(labels, widths, expected)
    boxes, scores, det_labels = _check_detections(det_boxes, det_scores, det_labels)
    right = np.array([1.0, 0.0])  # the order along the line plays no part here
    cands = _candidates(np.arange(len(boxes)), boxes, scores, det_labels, right)
    batch = _batch([_Piece(cands, right, [(labels, widths, expected)])], GM_DEFAULTS)
    return float(_ransac_scores(batch)[0])


def gm_score(
    labels: np.ndarray,
    widths: np.ndarray,
    expected: np.ndarray,
    direction: np.ndarray,
    det_boxes: np.ndarray,
    det_scores: np.ndarray,
    det_labels: np.ndarray,
    params: AlignmentParams = GM_DEFAULTS,
) -> float:
    """The GM line score: ``1 − line_energy`` of :func:`align_signs` (0 without a candidate).

    Can exceed 1, as the normalised energy can be negative.
    """
    result = align_signs(
        labels, widths, expected, direction, det_boxes, det_scores, det_labels, params
    )
    return 1.0 - result.line_energy if len(labels) else 0.0


def monotone_path(scores: np.ndarray) -> list[tuple[int, int]]:
    """Bleualign-style monotone one-to-one matching of rows to columns maximising Σ score.

    Skipping a row or a column is free. Ties favour skipping a row, then skipping a column,
    then matching, so a pair with score ≤ 0 is never matched. Returns the (row, col) pairs in
    increasing order.
    """
    matrix = np.asarray(scores, dtype=np.float64)
    if matrix.ndim != 2:
        raise DataFormatError(f"scores must be a 2-D matrix, got shape {matrix.shape}")
    rows, cols = matrix.shape
    # best[i, j]: best sum over the first i rows and j columns; each row is a running max of
    # "skip this row" and "match", which also covers "skip this column"
    best = np.zeros((rows + 1, cols + 1))
    for i in range(1, rows + 1):
        candidate = np.maximum(best[i - 1, 1:], best[i - 1, :-1] + matrix[i - 1])
        best[i, 1:] = np.maximum.accumulate(candidate)
    return _trace_back(best, matrix)


def _trace_back(best: np.ndarray, matrix: np.ndarray) -> list[tuple[int, int]]:
    """Walk back from the end, deciding each cell by the tie rule (row, column, match)."""
    i, j = matrix.shape
    pairs = []
    while i > 0 and j > 0:
        if best[i, j] == best[i - 1, j]:
            i -= 1
        elif best[i, j] == best[i, j - 1]:
            j -= 1
        else:
            pairs.append((i - 1, j - 1))
            i, j = i - 1, j - 1
    return pairs[::-1]


def assignment_from_scores(
    ransac_scores: np.ndarray, gm_scores: np.ndarray, line_indices: list[int]
) -> np.ndarray:
    """Per row (detected line), the ``line_indices`` entry matched on BOTH monotone paths, or
    −1 (reference option III: the intersection of the RANSAC and the GM path)."""
    ransac_scores = np.asarray(ransac_scores, dtype=np.float64)
    gm_scores = np.asarray(gm_scores, dtype=np.float64)
    if ransac_scores.shape != gm_scores.shape or ransac_scores.ndim != 2:
        raise DataFormatError(
            f"score matrices must be 2-D and alike, got {ransac_scores.shape} and {gm_scores.shape}"
        )
    if ransac_scores.shape[1] != len(line_indices):
        raise DataFormatError(
            f"{ransac_scores.shape[1]} score columns for {len(line_indices)} line indices"
        )
    both = set(monotone_path(ransac_scores)) & set(monotone_path(gm_scores))
    assignment = np.full(ransac_scores.shape[0], -1, dtype=np.int64)
    for row, col in both:
        assignment[row] = line_indices[col]
    return assignment


# -- views ---------------------------------------------------------------------------------------


class _Bands:
    """Per detected line of a view, its candidates: the detections whose centre lies in its
    band (computed on first use, shared by the line-level and the sign-level stage)."""

    def __init__(
        self,
        hypotheses: LineHypotheses,
        detections: tuple[np.ndarray, np.ndarray, np.ndarray],
        max_per_class: int | None = None,
    ) -> None:
        self.hypotheses = hypotheses
        self.detections = detections
        self.max_per_class = max_per_class
        self.centres = (detections[0][:, :2] + detections[0][:, 2:]) / 2.0
        self._cache: dict[int, _Candidates] = {}
        self._expected: dict[tuple[int, int], np.ndarray] = {}

    def piece(self, line: int, texts: list[TransliterationLine]) -> _Piece:
        """The problems "align each of ``texts`` to detected line ``line``"."""
        expected = self._null_hypotheses(line, texts)
        return _Piece(
            cands=self._candidates(line),
            direction=line_direction(self.hypotheses.lines[line]),
            lines=[(t.labels, t.widths, e) for t, e in zip(texts, expected, strict=True)],
        )

    def _null_hypotheses(self, line: int, texts: list[TransliterationLine]) -> list[np.ndarray]:
        """``null_hypothesis(line, text)`` of every text, with one polyline lookup for all."""
        missing = [t for t in texts if (line, id(t)) not in self._expected]
        expected = null_hypotheses(self.hypotheses.lines[line], missing)
        for text, centres in zip(missing, expected, strict=True):
            self._expected[(line, id(text))] = centres  # ``text`` outlives the cache: ids hold
        return [self._expected[(line, id(t))] for t in texts]

    def _candidates(self, line: int) -> _Candidates:
        if line not in self._cache:
            boxes, scores, labels = self.detections
            inside = np.flatnonzero(self.hypotheses.band_contains(line, self.centres))
            cap = self.max_per_class
            if cap is not None and len(inside) > cap and np.bincount(labels[inside]).max() > cap:
                inside = inside[_best_per_class(labels[inside], scores[inside], cap)]
            direction = line_direction(self.hypotheses.lines[line])
            self._cache[line] = _candidates(
                inside, boxes[inside], scores[inside], labels[inside], direction
            )
        return self._cache[line]


def _check_window(window: int | None, max_per_class: int | None = None) -> None:
    if window is not None and window < 0:
        raise ConfigError(f"window must be None or ≥ 0, got {window}")
    if max_per_class is not None and max_per_class < 1:
        raise ConfigError(f"max_per_class must be None or ≥ 1, got {max_per_class}")


def _best_per_class(labels: np.ndarray, scores: np.ndarray, count: int) -> np.ndarray:
    """Sorted indices of the ``count`` highest-scoring detections of every class."""
    order = np.lexsort((-scores, labels))
    sorted_labels = labels[order]
    starts = np.flatnonzero(np.r_[True, sorted_labels[1:] != sorted_labels[:-1]])
    place = np.arange(len(order)) - np.repeat(starts, np.diff(np.r_[starts, len(order)]))
    return np.sort(order[place < count])


def _line_scores(
    bands: _Bands,
    transliteration: ViewTransliteration,
    params: AlignmentParams,
    window: int | None,
) -> tuple[np.ndarray, np.ndarray]:
    """:func:`line_score_matrices` on prepared bands: all pairs solved in one batch."""
    num_h, num_t = len(bands.hypotheses.lines), transliteration.num_lines
    reach = max(num_h, num_t) if window is None else window + abs(num_h - num_t)
    pairs, pieces = [], []
    for h in range(num_h):
        ts = [t for t in range(num_t) if abs(h - t) <= reach]
        if ts:
            pieces.append(bands.piece(h, [transliteration.lines[t] for t in ts]))
            pairs.extend((h, t) for t in ts)
    ransac, gm = np.zeros((num_h, num_t)), np.zeros((num_h, num_t))
    if not pairs:
        return ransac, gm
    batch = _batch(pieces, params)
    src, dst, cost = _edges(batch, params)
    best, _ = _dp(batch, src, dst, cost, params.outlier_cost)
    energies = _energies(batch, _problem_minima(batch, best)[0], params.outlier_cost)
    norm = batch.num_signs * params.outlier_cost
    rows, cols = np.array(pairs).T
    ransac[rows, cols] = _ransac_scores(batch)
    gm[rows, cols] = np.where(norm > 0, 1.0 - energies / np.maximum(norm, 1e-300), 0.0)
    return ransac, gm


def line_score_matrices(
    hypotheses: LineHypotheses,
    transliteration: ViewTransliteration,
    det_boxes: np.ndarray,
    det_scores: np.ndarray,
    det_labels: np.ndarray,
    params: AlignmentParams = GM_DEFAULTS,
    window: int | None = None,
    max_per_class: int | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """RANSAC and GM scores ``(H, T)`` of every (detected line, transliteration line) pair.

    Line h's candidates are the detections whose centre lies in its band; the signs' expected
    centres are their null hypothesis on line h. ``window``: when not None, only pairs with
    ``|h − t| ≤ window + |H − T|`` are scored, the others score 0 (a speed option; None scores
    all pairs, as the reference does). ``max_per_class``: when not None, a line keeps only the
    best-scoring detections of each class (a weak detector's thousands of faint detections
    would otherwise make the problems too large; None keeps all, as the reference does).
    """
    detections = _check_detections(det_boxes, det_scores, det_labels)
    _check_window(window, max_per_class)
    bands = _Bands(hypotheses, detections, max_per_class)
    return _line_scores(bands, transliteration, params, window)


def align_view_lines(
    hypotheses: LineHypotheses,
    transliteration: ViewTransliteration,
    det_boxes: np.ndarray,
    det_scores: np.ndarray,
    det_labels: np.ndarray,
    params: AlignmentParams = GM_DEFAULTS,
    window: int | None = None,
    max_per_class: int | None = None,
) -> np.ndarray:
    """Per detected line (top to bottom), its transliteration ``line_idx`` or −1 (§2.3 III).

    Both score matrices of :func:`line_score_matrices` (same ``window`` and
    ``max_per_class``), a monotone path through each, and the pairs on both paths.
    """
    detections = _check_detections(det_boxes, det_scores, det_labels)
    _check_window(window, max_per_class)
    bands = _Bands(hypotheses, detections, max_per_class)
    ransac, gm = _line_scores(bands, transliteration, params, window)
    return assignment_from_scores(ransac, gm, transliteration.line_indices)


@dataclass(frozen=True, eq=False)
class ViewAlignment:
    """Sign alignment of one view.

    ``assignment (H,)``: transliteration ``line_idx`` per detected line, or −1. ``signs``: one
    row per visible sign of every assigned line, columns ``hyp_line`` (detected line index),
    ``line_idx``, ``pos_idx``, ``train_label``, ``det_idx`` (index into the view's detection
    arrays, −1 for an outlier), ``det_score`` (NaN for an outlier), ``nE`` and ``line_energy``.
    ``align_ratio``: matched signs over all signs of ``signs`` (0 without rows).
    """

    assignment: np.ndarray
    signs: pd.DataFrame
    align_ratio: float


SIGN_COLUMNS = (
    "hyp_line",
    "line_idx",
    "pos_idx",
    "train_label",
    "det_idx",
    "det_score",
    "nE",
    "line_energy",
)


def _check_assignment(assignment: np.ndarray, num_lines: int, known: list[int]) -> np.ndarray:
    array = _vector(assignment, "assignment", np.int64)
    if len(array) != num_lines:
        raise DataFormatError(f"assignment has {len(array)} entries for {num_lines} detected lines")
    unknown = sorted(set(array.tolist()) - {-1, *known})
    if unknown:
        raise DataFormatError(
            f"assignment names transliteration lines {unknown}, not among {known} (or -1)"
        )
    return array


def _line_rows(
    h: int, text_line: TransliterationLine, result: SignAlignment, scores: np.ndarray
) -> dict[str, np.ndarray]:
    """The rows of one aligned line (see :class:`ViewAlignment`)."""
    matched = result.matched
    det_score = np.full(len(matched), np.nan)
    det_score[matched >= 0] = scores[matched[matched >= 0]]
    return {
        "hyp_line": np.full(len(matched), h, dtype=np.int64),
        "line_idx": np.full(len(matched), text_line.line_idx, dtype=np.int64),
        "pos_idx": np.asarray(text_line.pos_idx, dtype=np.int64),
        "train_label": np.asarray(text_line.labels, dtype=np.int64),
        "det_idx": matched,
        "det_score": det_score,
        "nE": result.sign_energy,
        "line_energy": np.full(len(matched), result.line_energy),
    }


def align_view(
    hypotheses: LineHypotheses,
    transliteration: ViewTransliteration,
    det_boxes: np.ndarray,
    det_scores: np.ndarray,
    det_labels: np.ndarray,
    assignment: np.ndarray | None = None,
    params: AlignmentParams = HP04,
    line_params: AlignmentParams = GM_DEFAULTS,
    window: int | None = None,
    max_per_class: int | None = None,
) -> ViewAlignment:
    """Align the signs of every assigned line of a view to its band detections (§2.4).

    ``assignment``: per detected line its transliteration ``line_idx`` or −1 (e.g. from
    Gale–Church); None computes it with :func:`align_view_lines` (``line_params``,
    ``window``). Each assigned line is solved with :func:`align_signs` under ``params``.
    ``max_per_class``: see :func:`line_score_matrices`.
    """
    detections = _check_detections(det_boxes, det_scores, det_labels)
    _check_window(window, max_per_class)
    bands = _Bands(hypotheses, detections, max_per_class)
    by_idx = {text.line_idx: text for text in transliteration.lines}
    if assignment is None:
        ransac, gm = _line_scores(bands, transliteration, line_params, window)
        assignment = assignment_from_scores(ransac, gm, transliteration.line_indices)
    assignment = _check_assignment(assignment, len(hypotheses.lines), list(by_idx))
    lines = np.flatnonzero(assignment >= 0)
    texts = [by_idx[int(assignment[h])] for h in lines]
    pieces = [bands.piece(int(h), [text]) for h, text in zip(lines, texts, strict=True)]
    results = _solve(pieces, params)
    parts = [
        _line_rows(int(h), text, result, detections[1])
        for h, text, result in zip(lines, texts, results, strict=True)
    ]
    empty = _line_rows(-1, TransliterationLine(-1, [], [], [], []), _NO_SIGNS, np.zeros(0))
    signs = pd.DataFrame(
        {name: np.concatenate([empty[name], *(part[name] for part in parts)]) for name in empty}
    )
    ratio = float((signs["det_idx"] >= 0).mean()) if len(signs) else 0.0
    return ViewAlignment(assignment=assignment, signs=signs, align_ratio=ratio)


__all__ = [
    "GM_DEFAULTS",
    "HP04",
    "SIGN_COLUMNS",
    "AlignmentParams",
    "SignAlignment",
    "ViewAlignment",
    "adjacent_cost",
    "align_signs",
    "align_view",
    "align_view_lines",
    "assignment_from_scores",
    "box_iou",
    "confidence_cost",
    "direction_angle",
    "gm_score",
    "line_score_matrices",
    "long_range_cost",
    "monotone_path",
    "offset_cost",
    "position_distance",
    "ransac_score",
    "spacing_cost",
]
