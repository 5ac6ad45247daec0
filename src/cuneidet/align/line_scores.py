"""Line-level alignment of a view's transliteration lines to its detected lines (k > 0).

Dencker et al. 2020, §2.2–2.3, option III (reference ``compute_line_tl_alignment``): a
RANSAC-like score and a GM score (1 − normalised energy of the sign alignment under
:data:`~cuneidet.align.costs.GM_DEFAULTS`) for every (detected line, transliteration line)
pair (:func:`line_score_matrices`), a Bleualign-style monotone path through each score matrix
(:func:`monotone_path`), and the intersection of the two paths (:func:`assignment_from_scores`,
:func:`align_view_lines`). All the line problems of one view are flattened into one batch of
:mod:`cuneidet.align.solver` and solved by one DP pass. :class:`_Bands` holds each detected
line's candidate detections (those in its band), shared with the sign-level stage
(:func:`cuneidet.align.sign_alignment.align_view`).

All coordinates are pixels of the scaled segment (signs are ``SIGN_HEIGHT`` px high).
"""

from __future__ import annotations

import numpy as np

from cuneidet.align.costs import GM_DEFAULTS, AlignmentParams, _check_detections
from cuneidet.align.layout import line_direction, null_hypotheses
from cuneidet.align.solver import (
    _batch,
    _Candidates,
    _candidates,
    _dp,
    _edges,
    _energies,
    _Piece,
    _problem_minima,
    _ransac_scores,
)
from cuneidet.align.transliteration import TransliterationLine, ViewTransliteration
from cuneidet.data.line_geometry import LineHypotheses
from cuneidet.errors import ConfigError, DataFormatError

# -- monotone path -------------------------------------------------------------------------------


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


__all__ = [
    "align_view_lines",
    "assignment_from_scores",
    "line_score_matrices",
    "monotone_path",
]
