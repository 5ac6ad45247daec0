"""Sign-level and line-level alignment of a view's transliteration to its detections (k > 0).

Dencker et al. 2020, iterations k > 0 (reference ``LineMatching1D`` and
``compute_line_tl_alignment``). Three layers, each in its own module:

- **Energies** (§2.4.2–2.4.3 of the method notes; :mod:`cuneidet.align.costs`): unary and
  pairwise costs of matching transliteration signs to detections, and their parameters
  :class:`~cuneidet.align.costs.AlignmentParams` (:data:`~cuneidet.align.costs.HP04` for the
  sign alignment in the loop, :data:`~cuneidet.align.costs.GM_DEFAULTS` for the line-level GM
  scores).
- **Exact sign alignment** (:mod:`cuneidet.align.solver`): an exact monotone dynamic program
  in place of the reference's approximate TRW-S, batched over many line problems.
- **Line-level alignment** (§2.2–2.3, option III; :mod:`cuneidet.align.line_scores`): RANSAC
  and GM score matrices, their monotone paths and the intersection of the two.

This module holds the view level: :func:`align_view` assigns transliteration lines to detected
lines (or takes a given assignment), then aligns the signs of every assigned line with
:data:`~cuneidet.align.costs.HP04`, all lines of the view solved in one batch, and returns a
:class:`ViewAlignment` (one row per sign, columns :data:`SIGN_COLUMNS`).

All coordinates are pixels of the scaled segment (signs are ``SIGN_HEIGHT`` px high).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from cuneidet.align.costs import GM_DEFAULTS, HP04, AlignmentParams, _check_detections, _vector
from cuneidet.align.line_scores import _Bands, _check_window, _line_scores, assignment_from_scores
from cuneidet.align.solver import _NO_SIGNS, SignAlignment, _solve
from cuneidet.align.transliteration import TransliterationLine, ViewTransliteration
from cuneidet.data.line_geometry import LineHypotheses
from cuneidet.errors import DataFormatError


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
    "SIGN_COLUMNS",
    "ViewAlignment",
    "align_view",
]
