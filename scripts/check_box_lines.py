#!/usr/bin/env python
"""How well the rows of annotated signs stand in for annotated text lines.

    .venv/bin/python scripts/check_box_lines.py [--data-dir ../shared/data] \
        [--sets train_full test_full] [--out results/box_lines_check.csv]

``cuneidet-lines action=evaluate evaluate.real_splits=[boxes]`` scores line networks on views
that have sign boxes but no annotated lines, taking the rows of their signs as their lines
(``cuneidet.lines.truth.truth_from_boxes``). This script measures that stand-in where both
exist: on every line-annotated view with boxes, the rows of its boxes are matched to its
annotated lines with the evaluation's own rule (``match_lines``, ¼ pitch) and precision,
recall and F1 are printed (rows count as detections, annotated lines as truth), with a per-view
CSV (a temp file, then renamed). No network and no photo is needed.
"""

from __future__ import annotations

import argparse
import logging

import pandas as pd

from cuneidet.data.csdd import CSDD
from cuneidet.data.location import resolve_data_dir
from cuneidet.data.views import annotated_segments
from cuneidet.lines.metrics import LineScores, match_lines
from cuneidet.lines.truth import line_views, truth_from_boxes
from cuneidet.utils.io import atomic_open


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default=None, help="CSDD folder (default: the configured)")
    parser.add_argument("--sets", nargs="+", default=["train_full", "test_full"])
    parser.add_argument("--out", default="results/box_lines_check.csv")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    csdd = CSDD(resolve_data_dir(args.data_dir))
    boxed = {s.key: s for s in annotated_segments(csdd, args.sets)}
    rows = []
    for split in csdd.line_splits:
        scores = LineScores()
        for view in line_views(csdd, split):
            segment = boxed.get(view.key)
            if segment is None or not len(segment.boxes):
                continue
            rows_of_signs = truth_from_boxes(segment.scaled_boxes())
            match = match_lines(rows_of_signs.polylines, view.truth.polylines, view.truth.pitch)
            scores.add(match)
            rows.append(
                {
                    "split": split,
                    "key": view.key,
                    "view": segment.name,
                    "annotated_lines": match.num_truth,
                    "rows_of_signs": match.num_detected,
                    "matched": match.tp,
                }
            )
        print(
            f"{split}: {sum(r['split'] == split for r in rows)} views, rows of signs against "
            f"annotated lines: P {scores.precision:.3f} R {scores.recall:.3f} F1 {scores.f1:.3f} "
            f"({scores.tp} matched, {scores.fp} rows unmatched, {scores.fn} lines unmatched)"
        )
    table = pd.DataFrame(rows)
    with atomic_open(args.out, "w", newline="") as handle:
        table.to_csv(handle, index=False)
    print(f"written: {args.out}")


if __name__ == "__main__":
    main()
