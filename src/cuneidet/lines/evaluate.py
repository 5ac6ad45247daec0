"""Evaluate a line network on views with known lines: real annotated views or forged views."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from torch import nn
from tqdm.auto import tqdm

from cuneidet.align import SIGN_HEIGHT, ViewTransliteration, assign_lines, view_transliteration
from cuneidet.data.datasets import load_segment_samples
from cuneidet.data.line_geometry import LineHypotheses
from cuneidet.data.tables import parse_bbox_column
from cuneidet.data.views import AnnotatedSegment, segment_from_row
from cuneidet.lines.data import LineSample, normalize
from cuneidet.lines.metrics import (
    UNKNOWN,
    LineScores,
    boxes_to_lines,
    match_lines,
    reference_assignment,
)
from cuneidet.lines.predict import (
    LinePostprocess,
    assign_transliteration,
    hypotheses_from_probability,
    hypothesis_polylines,
    line_probability,
    transliteration_fits,
)
from cuneidet.lines.truth import LineTruth, truth_from_signs

log = logging.getLogger(__name__)


@dataclass
class ViewResult:
    """One evaluated view: its hypotheses, assignment and the per-view figures."""

    sample: LineSample
    probability: np.ndarray
    hypotheses: LineHypotheses
    assigned: np.ndarray
    row: dict[str, Any]


def sample_reference(sample: LineSample) -> np.ndarray | None:
    """The reference transliteration line of each truth line of a sample (see metrics)."""
    text = sample.transliteration
    if text is None or not text.num_lines:
        return None
    if sample.reference is not None:
        return sample.reference
    return reference_assignment(
        sample.polylines,
        sample.pitch,
        sample.boxes,
        sample.labels,
        [(line.line_idx, line.labels.tolist()) for line in text.lines],
    )


def score_view(
    scores: LineScores,
    sample: LineSample,
    hypotheses: LineHypotheses,
    assigned: np.ndarray,
    tolerance: float = 0.25,
) -> dict[str, Any]:
    """Add one view to ``scores``; returns its per-view row."""
    match = match_lines(hypothesis_polylines(hypotheses), sample.polylines, sample.pitch, tolerance)
    scores.add(match)
    text = sample.transliteration
    correct = total = 0
    if text is not None and text.num_lines:
        correct, total = scores.add_assignment(
            match, assigned, sample_reference(sample), text.num_lines
        )
    return {
        "key": sample.key,
        "view": sample.name,
        "truth_lines": match.num_truth,
        "detected_lines": match.num_detected,
        "tp": match.tp,
        "fp": match.fp,
        "fn": match.fn,
        "tl_lines": text.num_lines if text is not None else 0,
        "assigned_correct": correct,
        "assigned_total": total,
        "pitch": sample.pitch,
    }


# -- assignment on the truth lines: the assignment step with a perfect line detector ---------


def truth_line_lengths(sample: LineSample) -> np.ndarray:
    """Per truth line, its length in sign heights (128 px): the horizontal stretch covered by
    its polyline and by the annotated boxes nearest to it (within half a pitch, anywhere along
    the row: annotators often draw a line over part of its signs only), the length a perfect
    line detector would measure."""
    lo = np.array([line[0, 0] for line in sample.polylines], np.float64)
    hi = np.array([line[-1, 0] for line in sample.polylines], np.float64)
    boxes = np.asarray(sample.boxes, np.float64).reshape(-1, 4)
    owner = boxes_to_lines(boxes, sample.polylines, sample.pitch, reach=np.inf)
    for j in np.unique(owner[owner >= 0]):
        on_line = boxes[owner == j]
        lo[j] = min(lo[j], on_line[:, 0].min())
        hi[j] = max(hi[j], on_line[:, 2].max())
    return (hi - lo) / SIGN_HEIGHT


def truth_lines_assignment(sample: LineSample, post: LinePostprocess) -> dict[str, int]:
    """Correct and counted lines when the transliteration is assigned to the view's *truth*
    lines (lengths from :func:`truth_line_lengths`) by ``post.assignment`` and by order.

    This is what the assignment step reaches with a perfect line detector, so it separates
    assignment errors from line detection errors. Truth lines whose reference is ``UNKNOWN``
    are not counted, as in :meth:`LineScores.add_assignment`.
    """
    counts = {"truth_lines_correct": 0, "truth_lines_order_correct": 0, "truth_lines_total": 0}
    text, reference = sample.transliteration, sample_reference(sample)
    if text is None or not text.num_lines or reference is None or not sample.polylines:
        return counts
    lengths = truth_line_lengths(sample)
    if transliteration_fits(text, sample.size):
        assigned = assign_transliteration(lengths, text, post)
        by_order = assign_lines(lengths, text, method="order")
    else:  # as hypotheses_from_probability: a transliteration that cannot fit is not used
        assigned = by_order = np.full(len(lengths), -1, np.int64)
    known = reference != UNKNOWN
    counts["truth_lines_correct"] = int(np.count_nonzero((assigned == reference) & known))
    counts["truth_lines_order_correct"] = int(np.count_nonzero((by_order == reference) & known))
    counts["truth_lines_total"] = int(np.count_nonzero(known))
    return counts


def truth_lines_summary(rows: Sequence[dict[str, Any]]) -> dict[str, float | int]:
    """Assignment accuracy on the truth lines summed over per-view rows (nan without lines)."""
    total = sum(int(r["truth_lines_total"]) for r in rows)
    correct = sum(int(r["truth_lines_correct"]) for r in rows)
    by_order = sum(int(r["truth_lines_order_correct"]) for r in rows)
    return {
        "accuracy": correct / total if total else float("nan"),
        "correct": correct,
        "order_accuracy": by_order / total if total else float("nan"),
        "order_correct": by_order,
        "total": total,
    }


def evaluate_samples(
    net: nn.Module,
    samples: Iterable[LineSample],
    post: LinePostprocess | None = None,
    tolerance: float = 0.25,
    progress: bool = True,
    total: int | None = None,
) -> tuple[LineScores, list[ViewResult]]:
    """Run ``net`` on every sample, build and assign its lines, and score them."""
    post = post or LinePostprocess()
    scores, results = LineScores(), []
    for sample in tqdm(samples, desc="lines", unit="view", disable=not progress, total=total):
        probability = line_probability(net, normalize(sample.image))
        hypotheses, assigned = hypotheses_from_probability(
            probability, net.grid, sample.size, sample.transliteration, post
        )
        row = score_view(scores, sample, hypotheses, assigned, tolerance)
        row |= truth_lines_assignment(sample, post)
        results.append(ViewResult(sample, probability, hypotheses, assigned, row))
    return scores, results


# -- forged views ----------------------------------------------------------------------------------


def forge_samples(
    forge: Any, tablets: Sequence[str], workers: int = 0, progress: bool = True
) -> list[LineSample]:
    """Forged views of ``tablets`` with lines and reference assignment from the hidden truth.

    Tablets are rendered first where needed (``workers`` processes; 0 = one per core). Each
    view's truth lines run through its visible rendered signs, grouped by transliteration
    line, so the reference transliteration line of every truth line is exact. Views without
    visible signs are skipped.
    """
    from cuneidet.forge import ForgeSource
    from cuneidet.forge.runner import render_many

    report = render_many(forge, list(tablets), workers=workers, progress=progress)
    truth = forge.truth(sorted(set(report.rendered) | set(report.cached)))
    truth = truth[truth["status"] > 0]
    segments_table = forge.csdd.segments(sorted(truth["collection"].unique()), assigned_only=True)
    index = segments_table.set_index(["collection", "segm_idx"])
    segments: list[AnnotatedSegment] = []
    lines: dict[str, tuple[LineTruth, ViewTransliteration]] = {}
    for (collection, segm_idx), group in truth.groupby(["collection", "segm_idx"], sort=True):
        if (collection, segm_idx) not in index.index:
            continue
        row = index.loc[(collection, segm_idx)].to_dict() | {
            "collection": collection,
            "segm_idx": segm_idx,
        }
        segment = segment_from_row(row)
        boxes = parse_bbox_column(group["relative_bbox"], "forge truth", "relative_bbox")
        line_truth = truth_from_signs(boxes * segment.scale, group["line_idx"].to_numpy())
        text = view_transliteration(forge.csdd, collection, int(segm_idx), segment.tablet)
        segments.append(segment)
        lines[segment.key] = (line_truth, text)
    loaded = load_segment_samples(segments, ForgeSource(forge), progress=progress)
    samples = []
    for item in loaded:
        line_truth, text = lines[item.key]
        samples.append(
            LineSample(
                key=item.key,
                name=item.name,
                image=item.image,
                polylines=line_truth.polylines,
                pitch=line_truth.pitch,
                transliteration=text,
                reference=np.asarray(line_truth.line_idx, np.int64),
            )
        )
    return samples
