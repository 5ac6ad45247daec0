#!/usr/bin/env python
"""Alignment benchmark: time per view of line-level and sign-level alignment (k > 0).

    .venv/bin/python scripts/bench_alignment.py [--views 200] [--repeats 3] [--seed 0] \
        [--json out.json]

Synthetic views resembling the CSDD ones: about 12 detected lines a view, about 8.5 visible
signs a line (labels Zipf-distributed over the 239 classes, a few unknown ones), about 2,000
detections a view over those classes with scores from 0.01 to 1, most of them low, plus the
transliterated signs detected near their positions with a high score. Times (median over
``--repeats`` passes after one warm-up pass):

* ``lines_full``: line-level alignment (RANSAC and GM score matrices over all pairs, both
  monotone paths, intersection), ``window=None`` as in the paper;
* ``lines_w2``: the same with ``window=2``;
* ``signs``: sign alignment (hp04) of the lines assigned by ``lines_w2``;
* ``view_full`` and ``view_w2``: ``align_view`` end to end (line-level alignment with
  ``window=None`` or ``2``, then sign alignment; the two stages share the band detections);

and prints ms per view and the projection to 2,983 views on 1 and 2 processes (the 2-process
figure is half the 1-process one; ``--measure-parallel`` also times ``view_w2`` on a real
2-process pool).
"""

from __future__ import annotations

import argparse
import math
import platform
import time
from concurrent.futures import ProcessPoolExecutor

import numpy as np

from cuneidet.align.layout import null_hypothesis
from cuneidet.align.line_scores import align_view_lines
from cuneidet.align.sign_alignment import align_view
from cuneidet.align.transliteration import TransliterationLine, ViewTransliteration
from cuneidet.data.line_geometry import LineHypotheses, MapGrid, TextLine
from cuneidet.utils.timing import median_seconds, report_figures

ALL_VIEWS = 2983
NUM_CLASSES = 240
DETECTIONS_PER_VIEW = 2000
PITCH = 170.0


def _zipf_labels(rng: np.random.Generator, size: int) -> np.ndarray:
    """Class labels 1…239, frequency ∝ 1/(rank + 3): the commonest is 5.9 % of all (the CSDD's
    commonest visible sign, train label 11, is 5.7 %)."""
    weights = 1.0 / (np.arange(1, NUM_CLASSES) + 3.0)
    return rng.choice(np.arange(1, NUM_CLASSES), size=size, p=weights / weights.sum())


def _boxes(centres: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    sizes = rng.uniform([70.0, 100.0], [190.0, 150.0], size=(len(centres), 2))
    return np.concatenate([centres - sizes / 2, centres + sizes / 2], axis=1)


def _text_line(rng: np.random.Generator, line_idx: int) -> TransliterationLine:
    n = int(np.clip(rng.normal(8.5, 2.5), 2, 16))
    labels = _zipf_labels(rng, n)
    unknown = rng.random(n)
    labels[unknown < 0.05] = 250  # CSDD visible signs: 2.2 % label 0, 2.8 % labels ≥ 240
    labels[unknown < 0.022] = 0
    widths = np.round(rng.uniform(0.5, 1.5, size=n) * 128.0)
    return TransliterationLine(line_idx, labels, labels, np.arange(n), widths)


def _hyp_line(index: int, text: TransliterationLine, rng: np.random.Generator) -> TextLine:
    y0 = 200.0 + PITCH * index
    slope = rng.uniform(-0.03, 0.03)
    x_min = 118.0 + rng.uniform(-30.0, 30.0)
    x_max = x_min + text.length * rng.uniform(0.85, 1.2)
    ends = np.array([x_min, x_max])
    return TextLine(
        index=index,
        angle=math.atan2(1.0, -slope),
        dist=y0,
        votes=float(len(text)),
        x_min=float(x_min),
        x_max=float(x_max),
        polyline=np.stack([ends, y0 + slope * (ends - x_min)], axis=1),
        slope=float(slope),
        intercept=float(y0 - slope * x_min),
    )


def synthetic_view(seed: int) -> tuple[LineHypotheses, ViewTransliteration, tuple]:
    """One view: hypotheses, transliteration and (boxes, scores, labels) of its detections."""
    rng = np.random.default_rng(seed)
    num_lines = int(rng.integers(9, 16))
    texts = [_text_line(rng, i) for i in range(num_lines)]
    lines = [_hyp_line(i, text, rng) for i, text in enumerate(texts)]
    true_centres, true_labels = [], []
    for line, text in zip(lines, texts, strict=True):
        found = rng.random(len(text)) < 0.8
        centres = null_hypothesis(line, text) + rng.normal(0.0, [50.0, 12.0], (len(text), 2))
        true_centres.append(centres[found])
        true_labels.append(text.labels[found])
    centres = np.concatenate(true_centres)
    labels = np.concatenate(true_labels)
    width = max(line.x_max for line in lines) + 150.0
    height = 200.0 + PITCH * num_lines + 100.0
    clutter = DETECTIONS_PER_VIEW - len(centres)
    all_centres = np.concatenate([centres, rng.uniform([0, 0], [width, height], (clutter, 2))])
    all_labels = np.concatenate([labels, _zipf_labels(rng, clutter)])
    all_labels[all_labels == 0] = 1  # the detector has no class 0
    scores = np.concatenate(
        [rng.uniform(0.5, 1.0, len(centres)), 0.01 + 0.99 * rng.random(clutter) ** 6]
    )
    hypotheses = LineHypotheses(
        lines=lines,
        pitch=PITCH,
        label_map=np.zeros((2, 2), np.int32),
        line_map=np.zeros((2, 2), bool),
        grid=MapGrid(),
        image_size=(int(height), int(width)),
    )
    return hypotheses, ViewTransliteration(texts), (_boxes(all_centres, rng), scores, all_labels)


def _timed_chunk(seeds: list[int]) -> float:
    """Seconds to align (``align_view``, window 2) the views of ``seeds``, built beforehand."""
    views = [synthetic_view(seed) for seed in seeds]
    start = time.perf_counter()
    for hyp, text, dets in views:
        align_view(hyp, text, *dets, window=2)
    return time.perf_counter() - start


def _parallel_seconds(seeds: list[int], processes: int) -> float:
    """Wall time of ``processes`` workers aligning a share of the views each at the same time
    (the slowest worker's time; building the views is not counted)."""
    chunks = [seeds[i::processes] for i in range(processes)]
    with ProcessPoolExecutor(processes) as pool:
        list(pool.map(_timed_chunk, [[s] for s in seeds[:processes]]))  # warm the workers
        return max(pool.map(_timed_chunk, chunks))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--views", type=int, default=200)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--measure-parallel", action="store_true")
    parser.add_argument("--json", default=None, help="also write the figures to this JSON file")
    args = parser.parse_args()
    seeds = list(range(args.seed, args.seed + args.views))
    views = [synthetic_view(seed) for seed in seeds]
    assignments = [align_view_lines(h, t, *d, window=2) for h, t, d in views]

    def lines(window: int | None) -> None:
        for hyp, text, dets in views:
            align_view_lines(hyp, text, *dets, window=window)

    def signs() -> None:
        for (hyp, text, dets), assignment in zip(views, assignments, strict=True):
            align_view(hyp, text, *dets, assignment=assignment)

    def whole(window: int | None) -> None:
        for hyp, text, dets in views:
            align_view(hyp, text, *dets, window=window)

    timed = {
        "lines_full": lambda: lines(None),
        "lines_w2": lambda: lines(2),
        "signs": signs,
        "view_full": lambda: whole(None),
        "view_w2": lambda: whole(2),
    }
    matched = np.mean([(a >= 0).sum() / max(1, len(a)) for a in assignments])
    figures: dict[str, object] = {
        "views": len(views),
        "lines_per_view": round(float(np.mean([len(h.lines) for h, _, _ in views])), 2),
        "signs_per_line": round(
            float(np.mean([len(tl) for _, t, _ in views for tl in t.lines])), 2
        ),
        "detections_per_view": DETECTIONS_PER_VIEW,
        "matched_line_fraction_w2": round(float(matched), 3),
    }
    for name, fn in timed.items():
        seconds = median_seconds(fn, args.repeats) / len(views)
        figures[f"{name}_ms_per_view"] = round(1000 * seconds, 2)
        figures[f"{name}_s_{ALL_VIEWS}_views_1proc"] = round(seconds * ALL_VIEWS, 1)
        figures[f"{name}_s_{ALL_VIEWS}_views_2proc"] = round(seconds * ALL_VIEWS / 2, 1)
    if args.measure_parallel:
        wall = _parallel_seconds(seeds, 2)
        figures["pool2_view_w2_ms_per_view"] = round(1000 * wall / len(seeds), 2)
        figures[f"pool2_s_{ALL_VIEWS}_views"] = round(wall / len(seeds) * ALL_VIEWS, 1)
    figures["hardware"] = f"{platform.machine()}, {platform.processor() or 'cpu'}"
    report_figures(figures, args.json)


if __name__ == "__main__":
    main()
