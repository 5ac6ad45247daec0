"""Line evaluation: detected lines against annotated polylines, and line ↔ transliteration
assignment accuracy.

A detected line matches a ground-truth line when, over their common horizontal extent (at least
``min_overlap`` of the shorter of the two), their mean vertical distance is under ``tolerance``
(¼) of the view's line pitch. Matching is one-to-one, closest pairs first.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from cuneidet.lines.truth import polyline_y

NOMINAL_PITCH = 128.0  # px: one sign height in the scaled frame, for views with a single line
UNKNOWN = -2  # reference assignment of a truth line with too few annotated signs to tell


@dataclass
class LineMatch:
    """One view's matching: ``pairs`` of (detected index, truth index) and the counts."""

    pairs: list[tuple[int, int]]
    num_detected: int
    num_truth: int

    @property
    def tp(self) -> int:
        return len(self.pairs)

    @property
    def fp(self) -> int:
        return self.num_detected - self.tp

    @property
    def fn(self) -> int:
        return self.num_truth - self.tp


def mean_vertical_distance(a: np.ndarray, b: np.ndarray, min_overlap: float = 0.5) -> float:
    """Mean |Δy| of two polylines over their common x extent; inf if they overlap too little."""
    lo, hi = max(a[0, 0], b[0, 0]), min(a[-1, 0], b[-1, 0])
    shorter = min(a[-1, 0] - a[0, 0], b[-1, 0] - b[0, 0])
    if hi < lo or (hi - lo) < min_overlap * shorter:
        return float("inf")
    xs = np.linspace(lo, hi, 32)
    return float(np.mean(np.abs(polyline_y(a, xs) - polyline_y(b, xs))))


def match_lines(
    detected: Sequence[np.ndarray],
    truth: Sequence[np.ndarray],
    pitch: float,
    tolerance: float = 0.25,
    min_overlap: float = 0.5,
) -> LineMatch:
    """One-to-one matching of detected to annotated polylines (closest pairs first)."""
    pitch = pitch if np.isfinite(pitch) and pitch > 0 else NOMINAL_PITCH
    limit = tolerance * pitch
    candidates = []
    for i, det in enumerate(detected):
        for j, gt in enumerate(truth):
            distance = mean_vertical_distance(det, gt, min_overlap)
            if distance < limit:
                candidates.append((distance, i, j))
    used_det, used_gt, pairs = set(), set(), []
    for _, i, j in sorted(candidates):
        if i not in used_det and j not in used_gt:
            used_det.add(i)
            used_gt.add(j)
            pairs.append((i, j))
    return LineMatch(sorted(pairs), len(detected), len(truth))


@dataclass
class LineScores:
    """Accumulated line detection counts and assignment results over views."""

    tp: int = 0
    fp: int = 0
    fn: int = 0
    assigned_correct: int = 0
    assigned_total: int = 0
    order_correct: int = 0
    order_total: int = 0

    def add(self, match: LineMatch) -> None:
        self.tp += match.tp
        self.fp += match.fp
        self.fn += match.fn

    def add_assignment(
        self,
        match: LineMatch,
        assigned: np.ndarray,
        reference: np.ndarray | None,
        num_tl_lines: int,
    ) -> tuple[int, int]:
        """Count assignment results of the matched lines; returns (correct, total) of the view.

        ``reference`` is, per truth line, the transliteration line it carries (or -1, or
        ``UNKNOWN``, which is not counted): the content-derived reference. The paper's "order"
        accuracy also counts: over matched lines with an assigned index ≥ 0, the truth line's
        top-to-bottom rank equals the index.
        """
        correct = total = 0
        if reference is not None:
            for i, j in match.pairs:
                if reference[j] != UNKNOWN:
                    total += 1
                    correct += int(assigned[i] == reference[j])
        self.assigned_correct += correct
        self.assigned_total += total
        if num_tl_lines:
            for i, j in match.pairs:
                if assigned[i] >= 0:
                    self.order_total += 1
                    self.order_correct += int(assigned[i] == j)
        return correct, total

    @property
    def precision(self) -> float:
        return self.tp / (self.tp + self.fp) if self.tp + self.fp else 0.0

    @property
    def recall(self) -> float:
        return self.tp / (self.tp + self.fn) if self.tp + self.fn else 0.0

    @property
    def f1(self) -> float:
        p, r = self.precision, self.recall
        return 2 * p * r / (p + r) if p + r else 0.0

    @property
    def assignment_accuracy(self) -> float:
        return self.assigned_correct / self.assigned_total if self.assigned_total else float("nan")

    @property
    def order_accuracy(self) -> float:
        return self.order_correct / self.order_total if self.order_total else float("nan")

    @classmethod
    def merged(cls, parts: Sequence[LineScores]) -> LineScores:
        """The scores of several shards (e.g. DDP ranks) summed."""
        counts = ("tp", "fp", "fn", "assigned_correct", "assigned_total")
        merged = cls(**{k: sum(getattr(p, k) for p in parts) for k in counts})
        merged.order_correct = sum(p.order_correct for p in parts)
        merged.order_total = sum(p.order_total for p in parts)
        return merged

    def summary(self) -> dict[str, float | int]:
        return {
            "precision": self.precision,
            "recall": self.recall,
            "f1": self.f1,
            "tp": self.tp,
            "fp": self.fp,
            "fn": self.fn,
            "assignment_accuracy": self.assignment_accuracy,
            "assignment_correct": self.assigned_correct,
            "assignment_total": self.assigned_total,
            "order_accuracy": self.order_accuracy,
            "order_total": self.order_total,
        }


def summary_of_rows(rows: Sequence[dict]) -> dict[str, float | int]:
    """Precision, recall, F1 and assignment accuracy summed over per-view rows (of
    ``evaluate.score_view``)."""
    total = {k: sum(int(r[k]) for r in rows) for k in ("tp", "fp", "fn")}
    correct = sum(int(r["assigned_correct"]) for r in rows)
    assigned = sum(int(r["assigned_total"]) for r in rows)
    scores = LineScores(**total, assigned_correct=correct, assigned_total=assigned)
    keys = ("precision", "recall", "f1", "tp", "fp", "fn", "assignment_accuracy")
    figures = {k: v for k, v in scores.summary().items() if k in keys}
    return figures | {"assignment_correct": correct, "assignment_total": assigned}


# -- the content-derived reference assignment --------------------------------------------------


def boxes_to_lines(
    boxes: np.ndarray, truth: Sequence[np.ndarray], pitch: float, reach: float = 1.0
) -> np.ndarray:
    """Per box, the truth line whose polyline passes within half a pitch of its centre (or -1).

    A line is considered for boxes up to ``reach`` pitches beyond its ends (held flat there).
    """
    pitch = pitch if np.isfinite(pitch) and pitch > 0 else NOMINAL_PITCH
    boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
    if not len(boxes) or not truth:
        return np.full(len(boxes), -1, np.int64)
    cx = (boxes[:, 0] + boxes[:, 2]) / 2
    cy = (boxes[:, 1] + boxes[:, 3]) / 2
    distances = np.full((len(boxes), len(truth)), np.inf)
    for j, line in enumerate(truth):
        inside = (cx >= line[0, 0] - reach * pitch) & (cx <= line[-1, 0] + reach * pitch)
        distances[inside, j] = np.abs(cy[inside] - polyline_y(line, cx[inside]))
    nearest = distances.argmin(axis=1)
    close = distances[np.arange(len(boxes)), nearest] < pitch / 2
    return np.where(close, nearest, -1)


def lcs_length(a: Sequence[int], b: Sequence[int]) -> int:
    """Length of the longest common subsequence."""
    if not len(a) or not len(b):
        return 0
    row = np.zeros(len(b) + 1, np.int64)
    for x in a:
        previous = row.copy()
        for k, y in enumerate(b, start=1):
            row[k] = previous[k - 1] + 1 if x == y else max(previous[k], row[k - 1])
    return int(row[-1])


def monotone_matching(score: np.ndarray, min_score: float = 0.0) -> list[tuple[int, int]]:
    """Order-preserving one-to-one matching of rows to columns maximising the summed score;
    skipping a row or a column is free and pairs scoring ≤ ``min_score`` are never made."""
    rows, cols = score.shape
    best = np.zeros((rows + 1, cols + 1))
    for i in range(rows - 1, -1, -1):
        for j in range(cols - 1, -1, -1):
            take = best[i + 1, j + 1] + score[i, j] if score[i, j] > min_score else -np.inf
            best[i, j] = max(take, best[i + 1, j], best[i, j + 1])
    pairs, i, j = [], 0, 0
    while i < rows and j < cols:
        if score[i, j] > min_score and best[i, j] == best[i + 1, j + 1] + score[i, j]:
            pairs.append((i, j))
            i, j = i + 1, j + 1
        elif best[i, j] == best[i + 1, j]:
            i += 1
        else:
            j += 1
    return pairs


def reference_assignment(
    truth: Sequence[np.ndarray],
    pitch: float,
    boxes: np.ndarray,
    labels: np.ndarray,
    tl_lines: Sequence[tuple[int, Sequence[int]]],
    min_similarity: float = 0.2,
    min_signs: int = 3,
) -> np.ndarray | None:
    """Per truth line, the transliteration line index its annotated signs spell, -1 when it
    spells none, or ``UNKNOWN`` when it carries fewer than ``min_signs`` annotated signs.

    The annotated boxes are put on their nearest truth line; each truth line's labels, read left
    to right, are compared with every transliteration line (``(line_idx, labels)``) by longest
    common subsequence over the longer of the two; an order-preserving matching then gives each
    truth line at most one transliteration line. Returns None without boxes or transliteration:
    the annotated line order alone is not a reliable reference (the CSDD's line annotations
    include lines that the transliteration lacks, e.g. on edges).
    """
    if not len(boxes) or not tl_lines or not truth:
        return None
    owner = boxes_to_lines(boxes, truth, pitch)
    centres = (np.asarray(boxes)[:, 0] + np.asarray(boxes)[:, 2]) / 2
    sequences = []
    for j in range(len(truth)):
        on_line = np.flatnonzero(owner == j)
        sequences.append(np.asarray(labels)[on_line[np.argsort(centres[on_line])]].tolist())
    score = np.zeros((len(truth), len(tl_lines)))
    for j, seq in enumerate(sequences):
        for t, (_, tl_labels) in enumerate(tl_lines):
            longest = max(len(seq), len(tl_labels))
            if longest:
                score[j, t] = lcs_length(seq, list(tl_labels)) / longest
    reference = np.full(len(truth), -1, np.int64)
    for j, t in monotone_matching(score, min_similarity):
        reference[j] = int(tl_lines[t][0])
    few = np.array([len(seq) < min_signs for seq in sequences])
    reference[few & (reference < 0)] = UNKNOWN
    return reference
