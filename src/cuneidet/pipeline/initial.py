"""Iteration 0: null-hypothesis boxes, no detector (Dencker et al. 2020, method-pipeline §1.3).

For every assigned line of every weak view, each visible transliterated sign gets a box at its
null-hypothesis point (spread over the line in proportion to prior widths), prior width wide and
128 px high. Rows carry ``det_score = m_score = align_ratio = 1``; labels 0 and ≥ 240 are
written too (the trainer drops ≥ 240 and learns label-0 boxes as background).
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from cuneidet.align.placement import null_hypothesis_boxes
from cuneidet.errors import DataNotFoundError
from cuneidet.pipeline.views import WeakView, load_view_lines, view_rows

log = logging.getLogger(__name__)


def view_null_hypotheses(view: WeakView, line_dir: Path, counts: Counter) -> pd.DataFrame | None:
    """One view's null-hypothesis rows (None when it has no assigned line)."""
    hypotheses, assigned = load_view_lines(line_dir, view)
    if len(hypotheses) == 0:
        counts["views_without_lines"] += 1
        return None
    by_index = {line.line_idx: line for line in view.text.lines}
    frames = []
    for line, tl in zip(hypotheses.lines, assigned, strict=True):
        if tl < 0 or int(tl) not in by_index:
            counts["lines_unassigned"] += 1
            continue
        text = by_index[int(tl)]
        boxes = null_hypothesis_boxes(line, text)
        counts["lines_used"] += 1
        counts["signs"] += len(text)
        frames.append(
            view_rows(
                view,
                boxes,
                text.labels,
                text.mzl,
                np.full(len(text), text.line_idx),
                text.pos_idx,
                det_score=1.0,
                m_score=1.0,
                align_ratio=1.0,
            )
        )
    counts["tl_lines_unused"] += view.text.num_lines - len(set(assigned[assigned >= 0].tolist()))
    if not frames:
        counts["views_without_assigned_lines"] += 1
        return None
    counts["views_used"] += 1
    return pd.concat(frames, ignore_index=True)


def initial_hypotheses(
    views: Sequence[WeakView], line_dir: Path
) -> tuple[pd.DataFrame, dict[str, int]]:
    """Null-hypothesis rows of all views and the counts of what was used and left out."""
    counts: Counter = Counter()
    frames = []
    for view in views:
        try:
            frame = view_null_hypotheses(view, line_dir, counts)
        except DataNotFoundError:
            counts["views_without_line_artifacts"] += 1
            continue
        if frame is not None:
            frames.append(frame)
    if counts["views_without_line_artifacts"]:
        log.warning(
            "iteration 0: %d views have no line artifacts (their photo failed in the line stage)",
            counts["views_without_line_artifacts"],
        )
    rows = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
    return rows, {key: int(value) for key, value in sorted(counts.items())}


__all__ = ["initial_hypotheses", "view_null_hypotheses"]
