#!/usr/bin/env python
"""Forge speed: tablets/s on this machine's cores, and the time to render the weak collections.

    .venv/bin/python scripts/bench_forge.py [--collections saa01 saa05 ...] [--sample 40]

1. one worker renders ``--sample`` tablets drawn evenly from the chosen collections (a fresh
   folder, so nothing is cached): tablets/s per core and the sizes involved;
2. ``--workers`` processes (default: all cores) render *every* tablet of the collections into a
   fresh folder: the wall time for the whole weak set.

Prints a table and writes JSON with ``--json``. The goal is >= 2 tablets/s per core.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np

from cuneidet.data.location import resolve_data_dir
from cuneidet.forge.runner import render_many
from cuneidet.forge.store import Forge

WEAK = ["saa01", "saa05", "saa08", "saa10", "saa13", "saa16"]
GOAL_PER_CORE = 2.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--collections", nargs="+", default=WEAK)
    parser.add_argument("--sample", type=int, default=40, help="tablets for the 1-core run")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--skip-full", action="store_true", help="only the 1-core sample")
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--keep", default=None, help="render the full set into this folder")
    parser.add_argument("--json", default=None, help="write the figures to this file")
    args = parser.parse_args()

    scratch = Path(tempfile.mkdtemp(prefix="bench_forge_"))
    try:
        forge = Forge(resolve_data_dir(args.data_dir), forge_dir=scratch / "sample")
        tablets = forge.planner.tablets_of(collections=args.collections)
        pick = np.linspace(0, len(tablets) - 1, min(args.sample, len(tablets))).round()
        sample = [tablets[int(i)] for i in np.unique(pick)]
        specs = [forge.planner.spec(t) for t in sample]
        megapixels = [s.width * s.height / 1e6 for s in specs]
        _ = forge.bank  # load the font outside the timing
        single = render_many(forge, sample, workers=1, progress=False)
        figures = {
            "machine": f"{platform.machine()}, {os.cpu_count()} cores",
            "collections": args.collections,
            "tablets_in_collections": len(tablets),
            "sample_tablets": len(sample),
            "sample_median_megapixels": round(float(np.median(megapixels)), 2),
            "sample_signs_per_tablet": round(single.signs / max(len(single.rendered), 1), 1),
            "one_core_tablets_per_s": round(single.tablets_per_s, 2),
            "goal_per_core": GOAL_PER_CORE,
            "ratio_to_goal": round(single.tablets_per_s / GOAL_PER_CORE, 2),
        }
        if not args.skip_full:
            out = Path(args.keep) if args.keep else scratch / "full"
            full_forge = Forge(forge.data_dir, forge_dir=out)
            started = time.perf_counter()
            full = render_many(full_forge, tablets, workers=args.workers, progress=True)
            figures.update(
                full_workers=full.workers,
                full_rendered=len(full.rendered),
                full_cached=len(full.cached),
                full_failed=len(full.failed),
                full_seconds=round(time.perf_counter() - started, 1),
                full_tablets_per_s=round(full.tablets_per_s, 2),
                full_tablets_per_s_per_core=round(full.tablets_per_s / full.workers, 2),
                full_signs=full.signs,
            )
        for key, value in figures.items():
            print(f"{key:32s} {value}")
        if args.json:
            Path(args.json).write_text(json.dumps(figures, indent=2) + "\n", encoding="utf-8")
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
