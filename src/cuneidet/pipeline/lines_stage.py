"""The line stage: text lines of every weak view, assigned to its transliteration lines.

Per view it writes the line stage artifacts of ``cuneidet-lines predict`` (``<stem>.json`` with
the lines, their bands and transliteration indices; ``<stem>.npz`` with the maps) and one row
of ``views.csv``. Views already written in an unfinished run are not redone.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from cuneidet.data.segments import PhotoCache, load_segment_image
from cuneidet.data.sources import PhotoSource
from cuneidet.errors import CuneidetError
from cuneidet.lines.artifacts import write_view_artifacts
from cuneidet.lines.data import normalize
from cuneidet.lines.module import LineModule
from cuneidet.lines.predict import LinePostprocess, hypotheses_from_probability, line_probability
from cuneidet.pipeline.views import WeakView
from cuneidet.utils.io import write_csv

log = logging.getLogger(__name__)


def detect_view_lines(
    view: WeakView,
    image: np.ndarray,
    module: LineModule,
    post: LinePostprocess,
    out_dir: Path,
) -> dict[str, Any]:
    """Lines of one view → artifacts in ``out_dir``; returns the view's ``views.csv`` row."""
    probability = line_probability(module.net, normalize(image))
    hypotheses, assigned = hypotheses_from_probability(
        probability, module.grid, image.shape, view.text, post
    )
    segment = view.segment
    meta = {"key": segment.key, "tablet": segment.tablet, "view": segment.view}
    meta |= {"scale": segment.scale, "bbox": list(segment.bbox), "tl_count": view.text.num_lines}
    write_view_artifacts(out_dir, view.stem, meta, hypotheses, assigned, probability)
    return _row(view, len(hypotheses), int(np.count_nonzero(assigned >= 0)))


def _row(view: WeakView, lines: int, assigned: int) -> dict[str, Any]:
    return {
        "key": view.key,
        "stem": view.stem,
        "lines": lines,
        "tl_lines": view.text.num_lines,
        "assigned": assigned,
    }


def run_line_stage(
    views: Sequence[WeakView],
    source: PhotoSource,
    module: LineModule,
    post: LinePostprocess,
    out_dir: Path,
    progress: bool = True,
) -> dict[str, Any]:
    """Lines of all views into ``out_dir``; photos that fail are skipped and counted."""
    cache = PhotoCache(source)
    rows, failures = [], {}
    for view in tqdm(views, desc="lines", unit="view", disable=not progress):
        json_path = out_dir / f"{view.stem}.json"
        if json_path.is_file() and json_path.with_suffix(".npz").is_file():
            rows.append(_resumed_row(view, json_path))
            continue
        try:
            image = np.asarray(load_segment_image(cache, view.segment), np.uint8)
        except CuneidetError as error:
            failures[view.key] = str(error)
            continue
        rows.append(detect_view_lines(view, image, module, post, out_dir))
    if failures:
        log.warning("line stage: skipped %d views whose photo failed to load:", len(failures))
        for key, message in list(failures.items())[:5]:
            log.warning("  %s: %s", key, message)
    if not rows:
        raise CuneidetError(f"line stage: no view could be processed ({len(failures)} failed)")
    table = pd.DataFrame(rows)
    write_csv(out_dir / "views.csv", table, index=False)
    without = table[(table["lines"] == 0)]
    if len(without):
        log.warning(
            "line stage: no line found on %d of %d views (scale or damage): %s",
            len(without),
            len(table),
            ", ".join(without["key"].head(8)),
        )
    return {
        "views": len(table),
        "views_failed": len(failures),
        "views_without_lines": len(without),
        "lines": int(table["lines"].sum()),
        "tl_lines": int(table["tl_lines"].sum()),
        "lines_assigned": int(table["assigned"].sum()),
    }


def _resumed_row(view: WeakView, json_path: Path) -> dict[str, Any]:
    record = json.loads(json_path.read_text())
    assigned = sum(1 for v in record["tl_lines"] if v >= 0)
    return _row(view, len(record["lines"]), assigned)


__all__ = ["detect_view_lines", "run_line_stage"]
