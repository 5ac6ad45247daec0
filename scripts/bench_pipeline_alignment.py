#!/usr/bin/env python
"""Speed of the pipeline's align and place stages on 2,983 views, given their detections.

    .venv/bin/python scripts/bench_pipeline_alignment.py [--views 2983] [--workers 2]

Writes synthetic views the size of the weak training set (``bench_alignment.synthetic_view``:
about 12 lines a view, 8 visible signs a line, 2,000 detections a view) as the stages' real
inputs — line artifacts (``<stem>.json`` + ``<stem>.npz``, maps of a 2,000 × 2,600 px view) and
detection files — into a temporary folder, then times the stage functions themselves,
``align_views`` (line-level alignment with the paper's all-pairs score matrices, exact sign
alignment, refinement) and ``place_views`` (line matching on the aligned boxes, placement), in
a process pool of ``--workers``. Reading the per-view files is part of the time; writing the
CSVs is not (about a second). Prints seconds and the ratio to the 60 s goal.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from cuneidet.data.line_geometry import LineHypotheses
from cuneidet.data.views import AnnotatedSegment
from cuneidet.lines.artifacts import write_view_artifacts
from cuneidet.pipeline.align_stage import AlignSettings, align_views, place_views
from cuneidet.pipeline.detect import write_detections
from cuneidet.pipeline.views import WeakView
from cuneidet.utils.timing import report_figures

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_alignment import synthetic_view

GOAL_S = 60.0
MAP_SHAPE = (60, 80)  # stride-32 cells of a 2,000 x 2,600 px view


def write_inputs(views: int, folder: Path) -> list[WeakView]:
    """Synthetic views as line artifacts and detection files; returns the weak views."""
    line_dir, det_dir = folder / "lines", folder / "detect"
    det_dir.mkdir(parents=True)
    weak = []
    for seed in range(views):
        hypotheses, text, (boxes, scores, labels) = synthetic_view(seed)
        height, width = hypotheses.image_size
        segment = AnnotatedSegment("bench", seed, f"P{seed:06d}", "Obv", (0, 0, width, height), 1.0)
        view = WeakView(segment, text)
        maps = LineHypotheses(
            hypotheses.lines,
            hypotheses.pitch,
            np.zeros(MAP_SHAPE, np.int32),
            np.zeros(MAP_SHAPE, bool),
            hypotheses.grid,
            hypotheses.image_size,
        )
        assigned = np.arange(len(hypotheses.lines))
        probability = np.zeros(MAP_SHAPE, np.float32)
        write_view_artifacts(line_dir, view.stem, {"key": view.key}, maps, assigned, probability)
        write_detections(
            det_dir / f"{view.stem}.npz", {"boxes": boxes, "scores": scores, "labels": labels}
        )
        weak.append(view)
    return weak


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--views", type=int, default=2983)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--line-window", type=int, default=None)
    parser.add_argument("--max-per-class", type=int, default=20, help="0: no cap (the paper)")
    parser.add_argument("--json", default=None, help="also write the figures to this JSON file")
    args = parser.parse_args()
    settings = AlignSettings(
        line_window=args.line_window,
        max_per_class=args.max_per_class or None,
        placement={"max_distance": 10},
    )
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        started = time.perf_counter()
        views = write_inputs(args.views, folder)
        print(f"wrote {len(views)} views' inputs in {time.perf_counter() - started:.1f} s")
        started = time.perf_counter()
        aligned, counts = align_views(
            views, folder / "lines", folder / "detect", settings, args.workers, progress=False
        )
        align_s = time.perf_counter() - started
        started = time.perf_counter()
        placed, _place_counts = place_views(
            views, folder / "lines", aligned, settings, args.workers, progress=False
        )
        place_s = time.perf_counter() - started
    total = align_s + place_s
    figures = {
        "views": len(views),
        "workers": args.workers,
        "cpu_count": os.cpu_count(),
        "line_window": args.line_window,
        "max_per_class": args.max_per_class or None,
        "aligned_signs": len(aligned),
        "placed_signs": len(placed),
        "lines_assigned": counts.get("lines_assigned", 0),
        "align_s": round(align_s, 1),
        "place_s": round(place_s, 1),
        "align_plus_place_s": round(total, 1),
        "ms_per_view": round(1000 * total / len(views), 2),
        "goal_s": GOAL_S,
        "goal_ratio": round(total / GOAL_S, 2),
        "hardware": f"{platform.machine()}, {os.cpu_count()} cpus",
    }
    report_figures(figures, args.json)


if __name__ == "__main__":
    main()
