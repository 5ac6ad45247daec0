#!/usr/bin/env python
"""Choose line networks and their post-processing on validation views, never on test.

    .venv/bin/python scripts/select_line_postprocess.py --ckpt <run A>/checkpoints/best.ckpt \
        [--ckpt <run B>/...] [--splits val boxes] [--thresholds 0.6 0.7 0.8] \
        [--extra-lines 0 1 2] [--variances 0.5 1 3] [--out results/line_postprocess_selection.csv]

Each network runs once over the views of ``--splits`` (as ``cuneidet-lines action=evaluate
evaluate.real_splits=[…]`` defines them: ``val``, the held-out tablets of line training;
``boxes``, the train_full views without annotated lines, the rows of their signs as lines);
then every combination of p(line) threshold, ``max_extra_lines`` and Gale–Church variance is
scored on all those views together. Rows are ranked by the mean of line F1 and assignment
accuracy (0 where no line could be scored); the table is printed and written as CSV (a temp
file, then renamed). The other post-processing settings are each checkpoint's own.
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import logging

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from cuneidet.cli.lines import real_views
from cuneidet.lines.data import LineDataModule, normalize
from cuneidet.lines.evaluate import score_view
from cuneidet.lines.metrics import LineScores
from cuneidet.lines.module import load_line_module
from cuneidet.lines.predict import hypotheses_from_probability, line_probability
from cuneidet.utils.io import atomic_open


def probability_maps(ckpt: str, samples: list) -> tuple[object, list[np.ndarray]]:
    module = load_line_module(ckpt)
    maps = [
        line_probability(module.net, normalize(sample.image))
        for sample in tqdm(samples, desc=f"maps {ckpt}", unit="view")
    ]
    return module, maps


def score(module, samples: list, maps: list[np.ndarray], post) -> dict[str, float]:
    scores = LineScores()
    for sample, probability in zip(samples, maps, strict=True):
        hypotheses, assigned = hypotheses_from_probability(
            probability, module.grid, sample.size, sample.transliteration, post
        )
        score_view(scores, sample, hypotheses, assigned)
    summary = scores.summary()
    return {k: summary[k] for k in ("f1", "precision", "recall", "assignment_accuracy")} | {
        "assignment_correct": summary["assignment_correct"],
        "assignment_total": summary["assignment_total"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ckpt", action="append", required=True, help="line network (repeat)")
    parser.add_argument("--data-dir", default=None, help="CSDD folder (default: the configured)")
    parser.add_argument("--splits", nargs="+", default=["val", "boxes"])
    parser.add_argument("--thresholds", nargs="+", type=float, default=[0.6, 0.7, 0.8])
    parser.add_argument("--extra-lines", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--variances", nargs="+", type=float, default=[0.5, 1.0, 3.0])
    parser.add_argument("--out", default="results/line_postprocess_selection.csv")
    args = parser.parse_args()
    if "test" in args.splits:
        parser.error("choose on validation views; the test split is for the final figures only")
    logging.basicConfig(level=logging.WARNING)
    data = LineDataModule(data_dir=args.data_dir, progress=False)
    samples = [s for split in args.splits for s in data.load(real_views(data, split))]
    print(f"{len(samples)} views of {args.splits}")
    rows = []
    for ckpt in args.ckpt:
        module, maps = probability_maps(ckpt, samples)
        grid = itertools.product(args.thresholds, args.extra_lines, args.variances)
        for threshold, extra, variance in grid:
            post = dataclasses.replace(
                module.post, threshold=threshold, max_extra_lines=extra, variance=variance
            )
            figures = score(module, samples, maps, post)
            # no matched line with a known reference: nothing assigned right
            assignment = np.nan_to_num(figures["assignment_accuracy"], nan=0.0)
            criterion = (figures["f1"] + assignment) / 2
            rows.append(
                {"ckpt": ckpt, "threshold": threshold, "max_extra_lines": extra}
                | {"variance": variance, "criterion": criterion}
                | figures
            )
    table = pd.DataFrame(rows).sort_values("criterion", ascending=False, kind="stable")
    with atomic_open(args.out, "w", newline="") as handle:
        table.to_csv(handle, index=False)
    with pd.option_context("display.width", 200, "display.max_colwidth", 60):
        print(table.head(15).round(3).to_string(index=False))
    print(f"written: {args.out}")


if __name__ == "__main__":
    main()
