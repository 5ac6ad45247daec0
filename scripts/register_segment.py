#!/usr/bin/env python
"""Find where a misregistered view's boxes belong in its photo, using a trained line network.

    .venv/bin/python scripts/register_segment.py --ckpt <line run>/checkpoints/best.ckpt \
        --collection test --segm-idx 26 [--box-set test_full] [--radius 600] [--step 4] \
        [--scales 1.0] [--out outputs/registration]

Runs the line network on the photo around the segment (its bbox widened by --radius photo px, at
the segment's scale), then scores every shift of the segment bbox (step --step px) and every
box-layout scale in --scales by the mean p(line) at the shifted box centres. Prints the best
candidates next to the released position, and writes an overlay PNG of the best one (boxes in
green, annotated text lines in red) to --out for the check by eye that must come before a shift
goes into ``cuneidet.data.registration.SEGMENT_SHIFTS``. Reads the release as it is
(``registration_fixes=False``).
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from cuneidet.data.csdd import CSDD
from cuneidet.data.location import resolve_data_dir
from cuneidet.data.sources import build_photo_source
from cuneidet.lines.audit import shift_scores
from cuneidet.lines.data import normalize
from cuneidet.lines.module import load_line_module
from cuneidet.lines.predict import line_probability


def _region(bbox: np.ndarray, radius: int, size: tuple[int, int]) -> tuple[int, int, int, int]:
    x0, y0, x1, y1 = bbox
    width, height = size
    left, top = max(0, x0 - radius), max(0, y0 - radius)
    return left, top, min(width, x1 + radius), min(height, y1 + radius)


def _overlay(photo: Image.Image, bbox, boxes, lines, path: Path) -> None:
    crop = photo.convert("RGB").crop(tuple(int(v) for v in bbox))
    draw = ImageDraw.Draw(crop)
    for box in boxes:
        draw.rectangle([float(v) for v in box], outline=(0, 255, 0), width=2)
    for points in lines:
        draw.line([tuple(map(float, p)) for p in points], fill=(255, 0, 0), width=2)
    path.parent.mkdir(parents=True, exist_ok=True)
    crop.save(path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ckpt", required=True, help="a line network checkpoint")
    parser.add_argument("--collection", required=True)
    parser.add_argument("--segm-idx", type=int, required=True)
    parser.add_argument("--box-set", default="test_full", help="annotation set with its boxes")
    parser.add_argument("--data-dir", default=None, help="CSDD folder (default: the configured)")
    parser.add_argument("--radius", type=int, default=600, help="search radius, photo px")
    parser.add_argument("--step", type=int, default=4, help="shift step, photo px")
    parser.add_argument("--scales", type=float, nargs="+", default=[1.0])
    parser.add_argument("--out", default="outputs/registration")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)

    csdd = CSDD(resolve_data_dir(args.data_dir), registration_fixes=False)
    segment = csdd.segment(args.collection, args.segm_idx)
    tablet, scale = str(segment["tablet_CDLI"]), float(segment["scale"])
    bbox = segment[["x0", "y0", "x1", "y1"]].to_numpy(np.int64)
    boxes = csdd.boxes(args.box_set)
    boxes = boxes[(boxes["collection"] == args.collection) & (boxes["segm_idx"] == args.segm_idx)]
    if boxes.empty:
        raise SystemExit(f"{args.box_set} has no boxes on {args.collection}/{args.segm_idx}")
    relative = boxes[["rx1", "ry1", "rx2", "ry2"]].to_numpy(np.float64)
    centres = np.stack([relative[:, [0, 2]].mean(1), relative[:, [1, 3]].mean(1)], axis=1)

    photo = build_photo_source("folder", csdd.data_dir).load(tablet)
    region = _region(bbox, args.radius, photo.size)
    gray = photo.convert("L").crop(region)
    gray = gray.resize((round(gray.width * scale), round(gray.height * scale)), Image.BILINEAR)
    module = load_line_module(args.ckpt)
    probability = line_probability(module.net, normalize(np.asarray(gray, np.uint8)))

    dxs = np.arange(region[0] - bbox[0], region[2] - bbox[0], args.step)
    dys = np.arange(region[1] - bbox[1], region[3] - bbox[1], args.step)
    shifts = np.stack(np.meshgrid(dxs, dys), axis=-1).reshape(-1, 2)
    results = []
    middle = centres.mean(axis=0)
    for layout_scale in args.scales:
        laid = middle + (centres - middle) * layout_scale
        base = (laid + bbox[:2] - np.array(region[:2])) * scale  # view px of the region
        score = shift_scores(probability, module.grid, base, shifts * scale)
        results += [
            (float(s), int(dx), int(dy), layout_scale)
            for s, (dx, dy) in zip(score, shifts, strict=True)
        ]
        if layout_scale == 1.0:
            released = shift_scores(probability, module.grid, base, np.zeros((1, 2)))[0]
            print(f"released position: mean p(line) at the box centres {released:.3f}")
    results.sort(reverse=True)
    print("best (mean p(line), dx, dy, layout scale):")
    for row in results[:8]:
        print(f"  {row[0]:.3f}  {row[1]:+d}  {row[2]:+d}  {row[3]:.3f}")

    _, dx, dy, layout_scale = results[0]
    shifted = bbox + np.array([dx, dy, dx, dy])
    middle4 = np.concatenate([middle, middle])
    laid = middle4 + (relative - middle4) * layout_scale
    points = csdd.lines("train" if args.collection == "train" else "test")
    here = (points["collection"] == args.collection) & (points["segm_idx"] == args.segm_idx)
    points = points[here]
    lines = [g[["x", "y"]].to_numpy(np.float64) for _, g in points.groupby("line_idx")]
    path = Path(args.out) / f"{tablet}_{args.segm_idx}_{dx:+d}_{dy:+d}.png"
    _overlay(photo, shifted, laid, lines, path)
    print(f"overlay of the best shift: {path}")


if __name__ == "__main__":
    main()
