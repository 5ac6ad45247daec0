#!/usr/bin/env python
"""Flag views whose sign boxes do not fit their photograph, using a trained line network.

    .venv/bin/python scripts/audit_annotation_fit.py --ckpt <line run>/checkpoints/best.ckpt \
        [--data-dir ../shared/data] [--sets train_full test_full] [--min-fit 0.5] \
        [--out results/annotation_fit.csv]

For every view with boxes, the fraction of box centres on a detected text line
(``cuneidet.lines.audit``) and the median sign height at the working scale. Writes a CSV sorted
by that fraction (a temp file, then renamed) and prints the flagged views (fraction below
--min-fit). A flag asks for a look, it is no verdict: the boxes may have been drawn on another
photo or framing (boxes on background or an edge, text lines elsewhere), or the network may
simply find no text, e.g. when the view's signs are far from SIGN_HEIGHT px high (a wrong
``scale``) or only a few damaged signs are left.
"""

from __future__ import annotations

import argparse
import logging

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from cuneidet.align import SIGN_HEIGHT
from cuneidet.data.csdd import CSDD
from cuneidet.data.datasets import load_segment_samples
from cuneidet.data.location import resolve_data_dir
from cuneidet.data.sources import build_photo_source
from cuneidet.data.views import annotated_segments
from cuneidet.lines.audit import MIN_FIT, fraction_on_lines
from cuneidet.lines.data import normalize
from cuneidet.lines.module import load_line_module
from cuneidet.lines.predict import LinePostprocess, hypotheses_from_probability, line_probability
from cuneidet.utils.io import atomic_open


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ckpt", required=True, help="a line network checkpoint")
    parser.add_argument("--data-dir", default=None, help="CSDD folder (default: the configured)")
    parser.add_argument("--sets", nargs="+", default=["train_full", "test_full"])
    parser.add_argument("--min-fit", type=float, default=MIN_FIT)
    parser.add_argument("--out", default="results/annotation_fit.csv")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    module = load_line_module(args.ckpt)
    csdd = CSDD(resolve_data_dir(args.data_dir))
    source = build_photo_source("folder", csdd.data_dir)
    samples = load_segment_samples(annotated_segments(csdd, args.sets), source)
    keep_all = LinePostprocess(max_extra_lines=-1)
    rows = []
    for sample in tqdm(samples, desc="views", unit="view"):
        probability = line_probability(module.net, normalize(sample.image))
        height, width = sample.image.shape
        hypotheses, _ = hypotheses_from_probability(
            probability, module.grid, (height, width), None, keep_all
        )
        fit = fraction_on_lines(hypotheses, sample.boxes)
        heights = sample.boxes[:, 3] - sample.boxes[:, 1]
        sign_height = float(np.median(heights)) if len(heights) else float("nan")
        rows.append(
            {
                "key": sample.key,
                "view": sample.name,
                "boxes": len(sample.boxes),
                "lines": len(hypotheses),
                "fraction_on_lines": round(fit, 4),
                "sign_height_px": round(sign_height, 1),
                "sign_height_ratio": round(sign_height / SIGN_HEIGHT, 2),
                "flagged": bool(fit < args.min_fit),
            }
        )
    table = pd.DataFrame(rows).sort_values("fraction_on_lines", kind="stable")
    with atomic_open(args.out, "w", newline="") as handle:
        table.to_csv(handle, index=False)
    flagged = table[table["flagged"]]
    print(f"{len(table)} views, median fraction on lines {table['fraction_on_lines'].median():.3f}")
    print(f"flagged (< {args.min_fit}): {len(flagged)}")
    if len(flagged):
        print(flagged.to_string(index=False))
    print(f"written: {args.out}")


if __name__ == "__main__":
    main()
