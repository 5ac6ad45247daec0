#!/usr/bin/env python
"""Transliteration benchmark: time to read one view's visible lines with their prior widths.

    .venv/bin/python scripts/bench_transliteration.py [--data-dir ../shared/data] \
        [--collection saa05] [--views 500] [--repeats 3] [--json out.json]

``cuneidet.align.view_transliteration`` runs once per view in line assignment, forging and the
weak pipeline (about 3,500 views). Prints the median over ``--repeats`` passes (after one
warm-up pass, which also builds the collection's view index) of the time per view, and the
projection to every transliterated view of the CSDD.
"""

from __future__ import annotations

import argparse
import platform

from cuneidet.align import view_transliteration
from cuneidet.data.csdd import CSDD
from cuneidet.data.location import resolve_data_dir
from cuneidet.utils.timing import median_seconds, report_figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default=None, help="CSDD folder (default: the configured)")
    parser.add_argument("--collection", default="saa05")
    parser.add_argument("--views", type=int, default=500)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--json", default=None, help="also write the figures to this JSON file")
    args = parser.parse_args()
    csdd = CSDD(resolve_data_dir(args.data_dir))
    segments = csdd.segments([args.collection], assigned_only=True).head(args.views)
    views = [(int(r.segm_idx), str(r.tablet_CDLI)) for r in segments.itertuples()]

    def read_all() -> None:
        for segm_idx, tablet in views:
            view_transliteration(csdd, args.collection, segm_idx, tablet)

    seconds = median_seconds(read_all, args.repeats)
    total_views = sum(
        len(csdd.segments([name], assigned_only=True)) for name in csdd.transliterated_collections
    )
    figures = {
        "collection": args.collection,
        "views": len(views),
        "ms_per_view": round(1000 * seconds / max(1, len(views)), 2),
        "all_assigned_views": total_views,
        "projected_s_all_views": round(seconds / max(1, len(views)) * total_views, 1),
        "hardware": f"{platform.machine()}, {platform.processor() or 'cpu'}",
    }
    report_figures(figures, args.json)


if __name__ == "__main__":
    main()
