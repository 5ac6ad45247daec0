"""Iterations k > 0: align each view's transliteration to its detections, then place the rest.

Per view (method-pipeline §2, §3.2):

1. *align*: transliteration lines ↔ detected lines by the two score matrices and the
   intersection of their monotone paths; then every assigned line's signs ↔ its band detections
   by the exact monotone dynamic program (:mod:`cuneidet.align.solver`); aligned boxes
   are clipped to ±``refine_clip`` px of their line.
2. *place*: the line matching is redone with the aligned boxes only; the aligned signs of a line
   whose two matchings agree are anchors, and the unaligned signs between them are placed by
   prior widths (:mod:`cuneidet.align.placement`).

Views are independent, so both run in a process pool. Detections of classes outside 1..239 are
dropped and counted; a view whose number of detected lines differs from its transliteration's
by more than 10 is skipped (the reference's abort), as are views without lines.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from cuneidet.align.costs import HP04, AlignmentParams
from cuneidet.align.line_scores import align_view_lines
from cuneidet.align.placement import place_view, refine_boxes
from cuneidet.align.sign_alignment import align_view
from cuneidet.data.detection_files import OPTIONAL_COLUMNS, PAPER_COLUMNS
from cuneidet.errors import DataNotFoundError
from cuneidet.pipeline.detect import read_detections
from cuneidet.pipeline.views import (
    WeakView,
    load_view_lines,
    row_view_keys,
    to_scaled,
    view_rows,
)

log = logging.getLogger(__name__)

MAX_LINE_MISMATCH = 10
NUM_CLASSES = 240
BOX = ["x1", "y1", "x2", "y2"]


@dataclass(frozen=True)
class AlignSettings:
    """Sign-alignment energies, line-level window, box clip and placement settings."""

    sign: AlignmentParams = HP04
    line_window: int | None = None
    max_per_class: int | None = 20
    refine_clip: float = 80.0
    placement: Mapping[str, Any] = field(default_factory=dict)


def _usable(view: WeakView, line_dir: Path, counts: Counter) -> tuple[Any, np.ndarray] | None:
    """The view's lines, or None (counted) when it has none or far too many or too few."""
    try:
        hypotheses, assigned = load_view_lines(line_dir, view)
    except DataNotFoundError:
        counts["views_without_line_artifacts"] += 1
        return None
    if len(hypotheses) == 0:
        counts["views_without_lines"] += 1
        return None
    difference = len(hypotheses) - view.text.num_lines
    counts["views_more_lines_than_text"] += int(difference > 0)
    counts["views_fewer_lines_than_text"] += int(difference < 0)
    if abs(difference) > MAX_LINE_MISMATCH:
        counts["views_line_mismatch_over_10"] += 1
        return None
    return hypotheses, assigned


def _known_classes(detections: dict[str, np.ndarray], counts: Counter) -> dict[str, np.ndarray]:
    labels = detections["labels"]
    known = (labels > 0) & (labels < NUM_CLASSES)
    counts["detections_unknown_class"] += int((~known).sum())
    return {key: value[known] for key, value in detections.items()}


def _mzl_of(view: WeakView, line_idx: np.ndarray, pos_idx: np.ndarray) -> np.ndarray:
    table = {
        (line.line_idx, int(p)): int(m)
        for line in view.text.lines
        for p, m in zip(line.pos_idx, line.mzl, strict=True)
    }
    pairs = zip(line_idx, pos_idx, strict=True)
    return np.array([table.get((int(a), int(b)), -1) for a, b in pairs], np.int64)


def align_one_view(
    view: WeakView, line_dir: Path, det_dir: Path, settings: AlignSettings
) -> tuple[pd.DataFrame | None, Counter]:
    """One view's aligned rows (paper columns, refined boxes) and its counts."""
    counts: Counter = Counter()
    usable = _usable(view, line_dir, counts)
    if usable is None:
        return None, counts
    hypotheses, _ = usable
    try:
        detections = read_detections(det_dir / f"{view.stem}.npz")
    except DataNotFoundError:
        counts["views_without_detections"] += 1
        return None, counts
    detections = _known_classes(detections, counts)
    result = align_view(
        hypotheses,
        view.text,
        detections["boxes"],
        detections["scores"],
        detections["labels"],
        params=settings.sign,
        window=settings.line_window,
        max_per_class=settings.max_per_class,
    )
    signs = result.signs
    counts["views"] += 1
    counts["lines"] += len(hypotheses)
    counts["lines_assigned"] += int((result.assignment >= 0).sum())
    counts["tl_lines"] += view.text.num_lines
    counts["signs_in_assigned_lines"] += len(signs)
    matched = signs[signs["det_idx"] >= 0]
    counts["signs_aligned"] += len(matched)
    if matched.empty:
        return None, counts
    boxes = detections["boxes"][matched["det_idx"].to_numpy()]
    lines = matched["hyp_line"].to_numpy()
    for h in np.unique(lines):
        on_line = lines == h
        boxes[on_line] = refine_boxes(
            boxes[on_line], hypotheses.lines[int(h)], settings.refine_clip
        )
    rows = _rows(view, matched, boxes, result.align_ratio)
    return rows, counts


def _rows(view: WeakView, signs: pd.DataFrame, boxes: np.ndarray, ratio: float) -> pd.DataFrame:
    line_idx, pos_idx = signs["line_idx"].to_numpy(), signs["pos_idx"].to_numpy()
    return view_rows(
        view,
        boxes,
        signs["train_label"].to_numpy(),
        _mzl_of(view, line_idx, pos_idx),
        line_idx,
        pos_idx,
        det_score=signs["det_score"].to_numpy(),
        m_score=signs["nE"].to_numpy(),
        align_ratio=ratio,
    )


def place_one_view(
    view: WeakView, line_dir: Path, aligned: pd.DataFrame, settings: AlignSettings
) -> tuple[pd.DataFrame | None, Counter]:
    """The placed rows of one view from its aligned rows (anchors)."""
    counts: Counter = Counter()
    usable = _usable(view, line_dir, counts)
    if usable is None or aligned.empty:
        counts["views_without_anchors"] += 1
        return None, counts
    hypotheses, _ = usable
    boxes = to_scaled(aligned[BOX].to_numpy(), view.segment)
    labels = aligned["train_label"].to_numpy(np.int64)
    scores = aligned["det_score"].to_numpy(np.float64)
    assignment = align_view_lines(
        hypotheses,
        view.text,
        boxes,
        scores,
        labels,
        window=settings.line_window,
        max_per_class=settings.max_per_class,
    )
    local = pd.DataFrame(boxes, columns=BOX)
    local["line_idx"] = aligned["line_idx"].to_numpy()
    local["pos_idx"] = aligned["pos_idx"].to_numpy()
    placed, placed_counts = place_view(
        hypotheses, view.text, assignment, local, **dict(settings.placement)
    )
    counts.update({key: int(value) for key, value in placed_counts.items()})
    if placed.empty:
        return None, counts
    placed = placed.assign(det_score=1.0, nE=1.0)
    ratio = float(aligned["align_ratio"].iloc[0])
    return _rows(view, placed, placed[BOX].to_numpy(), ratio), counts


def _align_task(args: tuple) -> tuple[pd.DataFrame | None, Counter]:
    return align_one_view(*args)


def _place_task(args: tuple) -> tuple[pd.DataFrame | None, Counter]:
    return place_one_view(*args)


def _map(
    task: Callable[[tuple], tuple[pd.DataFrame | None, Counter]],
    jobs: Sequence[tuple],
    workers: int,
    desc: str,
    progress: bool,
) -> tuple[pd.DataFrame, dict[str, int]]:
    """Run ``task`` over ``jobs`` (in ``workers`` processes when > 1); concatenated rows, summed
    counts."""
    results: Iterable[tuple[pd.DataFrame | None, Counter]]
    if workers > 1 and len(jobs) > 1:
        pool = ProcessPoolExecutor(max_workers=workers)
        chunk = max(1, len(jobs) // (8 * workers))
        results = pool.map(task, jobs, chunksize=chunk)
    else:
        pool, results = None, map(task, jobs)
    frames, total = [], Counter()
    try:
        for frame, counts in tqdm(results, total=len(jobs), desc=desc, disable=not progress):
            total.update(counts)
            if frame is not None:
                frames.append(frame)
    finally:
        if pool is not None:
            pool.shutdown()
    rows = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=PAPER_COLUMNS)
    return rows, {key: int(value) for key, value in sorted(total.items())}


def align_views(
    views: Sequence[WeakView],
    line_dir: Path,
    det_dir: Path,
    settings: AlignSettings,
    workers: int = 1,
    progress: bool = True,
) -> tuple[pd.DataFrame, dict[str, int]]:
    """Aligned rows of all views (global px, paper columns) and summed counts."""
    jobs = [(view, line_dir, det_dir, settings) for view in views]
    return _map(_align_task, jobs, workers, "align", progress)


def aligned_and_placed(aligned: pd.DataFrame, placed: pd.DataFrame) -> pd.DataFrame:
    """The next training set: aligned ∪ placed rows in the paper's columns (a reader's filled-in
    optional columns are left out, placed rows have none)."""
    frames = [
        frame.drop(columns=[c for c in OPTIONAL_COLUMNS if c in frame.columns])
        for frame in (aligned, placed)
        if len(frame)
    ]
    if not frames:
        return pd.DataFrame(columns=PAPER_COLUMNS)
    return pd.concat(frames, ignore_index=True)


def place_views(
    views: Sequence[WeakView],
    line_dir: Path,
    aligned: pd.DataFrame,
    settings: AlignSettings,
    workers: int = 1,
    progress: bool = True,
) -> tuple[pd.DataFrame, dict[str, int]]:
    """Placed rows of all views from the aligned rows, and summed counts."""
    groups = dict(tuple(aligned.groupby(row_view_keys(aligned)))) if len(aligned) else {}
    empty = aligned.head(0)
    jobs = [(view, line_dir, groups.get(view.key, empty), settings) for view in views]
    return _map(_place_task, jobs, workers, "place", progress)


__all__ = [
    "AlignSettings",
    "align_one_view",
    "align_views",
    "aligned_and_placed",
    "place_one_view",
    "place_views",
]
