#!/usr/bin/env python
"""How well the draw page's cuneiform mode names drawings: Noto Sans Cuneiform glyphs as drawings.

    .venv/bin/python scripts/eval_draw_cuneiform.py --model outputs/export/recogniser.onnx \\
        [--font ../shared/data/fonts/NotoSansCuneiform-Regular.ttf] \\
        [--json results/draw_cuneiform.json]

Every class of the exported recogniser that has a glyph is rendered black on white (the form a
user would draw), prepared exactly as the web app prepares a canvas drawing
(``cuneidet.classify.drawings.drawing_crop``: binarised, cropped to the ink with the recogniser's
crop context, painted in the grey levels of photographed crops) and ranked by the recogniser's
sign classifier, which learned from photographs only. Reports top-1/5/10 (fractions) against
chance, and each class's rank of the right answer.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from cuneidet.classify.drawings import drawing_crop, rank_signs
from cuneidet.deploy.runtime import load_onnx_detector
from cuneidet.utils.io import write_json
from cuneidet.utils.provenance import git_commit

CANVAS = 320


def render(glyph: str, font: ImageFont.FreeTypeFont) -> np.ndarray:
    """The glyph in black on a white canvas, about as large as a user draws on the page."""
    image = Image.new("L", (CANVAS * 2, CANVAS), 255)
    ImageDraw.Draw(image).text((CANVAS, CANVAS // 2), glyph, fill=0, font=font, anchor="mm")
    return np.asarray(image)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, required=True, help="a two-stage recogniser export")
    parser.add_argument(
        "--font", type=Path, default=Path("../shared/data/fonts/NotoSansCuneiform-Regular.ttf")
    )
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    detector, meta = load_onnx_detector(args.model, threads=2)
    font = ImageFont.truetype(str(args.font), 200)
    ranks, rows = [], []
    for key, entry in sorted(meta["classes"].items(), key=lambda item: int(item[0])):
        label, glyph = int(key), entry.get("glyph") or ""
        if not glyph or "?" in glyph:
            continue
        drawing = render(glyph, font)
        if (drawing < 128).sum() < 20:  # the font has no outline for it
            continue
        crop = drawing_crop(drawing, detector.crop_size, detector.context)
        ranking = rank_signs(detector.classifier, crop, top=meta["num_classes"])
        rank = next(r for r, (lab, _) in enumerate(ranking, 1) if lab == label)
        ranks.append(rank)
        rows.append(
            {
                "label": label,
                "name": entry.get("name"),
                "glyph": glyph,
                "rank": rank,
                "top1": ranking[0][0],
                "top1_probability": round(ranking[0][1], 4),
            }
        )
    ranks = np.array(ranks)
    classes = int(meta["num_classes"]) - 1
    record = {
        "command": "eval_draw_cuneiform.py "
        + " ".join(f"--{k} {v}" for k, v in vars(args).items() if v is not None),
        "git_commit": git_commit(),
        "model": str(args.model),
        "glyphs_evaluated": len(ranks),
        "top1": float((ranks <= 1).mean()),
        "top5": float((ranks <= 5).mean()),
        "top10": float((ranks <= 10).mean()),
        "median_rank": float(np.median(ranks)),
        "chance_top10": 10 / classes,
        "classes": classes,
        "note": "drawn (rendered) glyphs against a classifier trained on photographed signs only",
        "per_class": rows,
    }
    print(
        json.dumps(
            {k: v for k, v in record.items() if k != "per_class"}, indent=1, ensure_ascii=False
        )
    )
    if args.json:
        write_json(args.json, record)


if __name__ == "__main__":
    main()
