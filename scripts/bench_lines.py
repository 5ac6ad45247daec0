#!/usr/bin/env python
"""Line benchmark: network forward and post-processing time per view, for both line networks.

    .venv/bin/python scripts/bench_lines.py [--repeats 3] [--size 2000x1500] [--json out.json]

A synthetic scaled view (default 2000x1500 px, a typical CSDD view at the working scale) with
drawn text lines; each network is untrained, so the post-processing runs on the *annotated*
map of the drawn lines at the network's stride (what a well-trained net produces). Medians over
--repeats runs after a warm-up.
"""

from __future__ import annotations

import argparse
import json
import platform

import numpy as np
import torch

from cuneidet.lines.data import normalize
from cuneidet.lines.hypotheses import detect_lines
from cuneidet.lines.networks import LineSegNet, PaperLineNet
from cuneidet.lines.predict import line_probability
from cuneidet.lines.truth import distance_to_lines
from cuneidet.utils.timing import median_seconds


def drawn_view(height: int, width: int, pitch: int = 125) -> tuple[np.ndarray, list[np.ndarray]]:
    rng = np.random.default_rng(0)
    image = rng.integers(120, 200, (height, width)).astype(np.uint8)
    lines = []
    for y in range(pitch, height - pitch // 2, pitch):
        xs = np.linspace(100, width - 100, 8)
        ys = y + 15 * np.sin(xs / width * np.pi) + 0.02 * (xs - width / 2)
        lines.append(np.stack([xs, ys], axis=1))
        for x, yy in zip(xs, ys, strict=True):
            image[int(yy) - 40 : int(yy) + 40, int(x) - 60 : int(x) + 60] //= 2
    return image, lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", default="2000x1500", help="WIDTHxHEIGHT of the scaled view")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--json", help="also write the figures to this JSON file")
    args = parser.parse_args()
    width, height = (int(v) for v in args.size.split("x"))
    image, lines = drawn_view(height, width)
    distance = distance_to_lines(lines, (height, width))
    tensor = normalize(image)
    results = {"view": [width, height], "lines": len(lines), "threads": torch.get_num_threads()}
    results["machine"] = f"{platform.processor() or platform.machine()}, {torch.__version__}"
    for name, net in (("paper_fcn", PaperLineNet()), ("seg_resnet18_s8", LineSegNet())):
        net.eval()
        forward = median_seconds(lambda net=net: line_probability(net, tensor), args.repeats)
        shape = line_probability(net, tensor).shape
        grid = net.grid
        rows = np.clip(np.rint(grid.to_image(np.arange(shape[0]))).astype(int), 0, height - 1)
        cols = np.clip(np.rint(grid.to_image(np.arange(shape[1]))).astype(int), 0, width - 1)
        line_map = distance[rows][:, cols] < 24
        timings = {"forward_s": forward, "map": list(shape)}
        for method in ("reference", "chained"):
            post = median_seconds(
                lambda m=line_map, g=grid, k=method: detect_lines(m, (height, width), g, method=k),
                args.repeats,
            )
            found = len(detect_lines(line_map, (height, width), grid, method=method))
            timings[f"{method}_postprocess_s"] = post
            timings[f"{method}_lines_found"] = found
        results[name] = timings
        print(
            f"{name:16s} forward {forward:6.3f} s  map {shape[0]}x{shape[1]}  "
            f"post-processing reference {timings['reference_postprocess_s']:.3f} s "
            f"({timings['reference_lines_found']}/{len(lines)} lines), chained "
            f"{timings['chained_postprocess_s']:.3f} s ({timings['chained_lines_found']} lines)"
        )
    if args.json:
        with open(args.json, "w", encoding="utf-8") as handle:
            json.dump(results, handle, indent=2)


if __name__ == "__main__":
    main()
