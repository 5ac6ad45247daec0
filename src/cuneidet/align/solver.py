"""Exact sign alignment of transliteration lines to candidate detections, batched.

Dencker et al. 2020, iterations k > 0 (reference ``LineMatching1D``), with the energies of
:mod:`cuneidet.align.costs`.

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

**Batches.** Line problems are flattened into one batch (:class:`_Batch`) and solved by one DP
pass (one numpy step per sign position), as per-pair Python calls would cost far more than the
arithmetic; :mod:`cuneidet.align.line_scores` and :mod:`cuneidet.align.sign_alignment` build
their batches from the bands of a view's detected lines.

**Line scores** (§2.2): the RANSAC-like score (:func:`ransac_score`) and the GM score
(:func:`gm_score`, 1 − normalised energy of the sign alignment under :data:`GM_DEFAULTS`) of
one (detected line, transliteration line) pair, and the batched RANSAC score they share with
:mod:`cuneidet.align.line_scores`.

All coordinates are pixels of the scaled segment (signs are :data:`SIGN_HEIGHT` px high).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from cuneidet.align.costs import (
    GM_DEFAULTS,
    HP04,
    AlignmentParams,
    _check_detections,
    _check_signs,
    _iou,
    _unit,
    adjacent_cost,
    confidence_cost,
    long_range_cost,
    position_distance,
)
from cuneidet.align.transliteration import SIGN_HEIGHT
from cuneidet.data.csdd import NUM_DETECTOR_CLASSES

RANSAC_MAX_DIST = 2.0
"""RANSAC score: detections further than this (in half sign heights) do not count."""

RANSAC_MISS_COST = 3.0
"""RANSAC score: cost of a sign without a detection in range (1 + RANSAC_MAX_DIST)."""


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


# -- line scores -------------------------------------------------------------------------------


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


__all__ = [
    "RANSAC_MAX_DIST",
    "RANSAC_MISS_COST",
    "SignAlignment",
    "align_signs",
    "gm_score",
    "ransac_score",
]
