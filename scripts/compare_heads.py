#!/usr/bin/env python
"""Side by side of detector heads: test figures of finished runs + decode time per HD photo.

    .venv/bin/python scripts/compare_heads.py \\
        --run retinanet=outputs/make_train/runs/<run> \\
        --run watershed=outputs/watershed_two_stage/runs/<run> \\
        --photo ../shared/data/csdd/images/K01057.jpg --json results/watershed.json

For every ``HEAD=RUN`` it reads the run's ``summary.json`` (test mAP on the real test_full
photos, class-agnostic COCO AP50, command, commit, training time), loads ``best.ckpt`` and times
on one HD input (a real tablet photo, grayscale, resized to 1920 px wide and cropped or padded
to 1080 rows; single thread count as set by ``--threads``):

- ``hd_forward_seconds``: the (localiser) network's forward pass;
- ``hd_decode_seconds``: turning its raw outputs into boxes (anchor decoding + NMS, or energy
  components), i.e. the head's post-processing alone;
- ``hd_detect_seconds``: the whole ``detect`` (for a recogniser: localiser + naming the boxes).

Timings are medians over ``--repeats`` runs after one warm-up. Prints a Markdown table.
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from cuneidet.data.datasets import to_input_tensor
from cuneidet.models.checkpoint import load_module
from cuneidet.models.two_stage import TwoStageDetector
from cuneidet.utils.io import write_json
from cuneidet.utils.timing import median_seconds

HD = (1080, 1920)


def hd_input(photo: Path) -> torch.Tensor:
    """``[1, 1, 1080, 1920]``: the photo in gray, 1920 px wide, cropped/padded (mid grey)."""
    image = Image.open(photo).convert("L")
    height = round(image.height * HD[1] / image.width)
    array = np.asarray(image.resize((HD[1], height), Image.Resampling.BILINEAR))
    canvas = np.full(HD, 128, dtype=np.uint8)
    top = max(0, (height - HD[0]) // 2)
    rows = min(HD[0], height)
    canvas[:rows] = array[top : top + rows]
    return to_input_tensor(canvas)[None]


def time_head(ckpt: Path, images: torch.Tensor, repeats: int) -> dict[str, float]:
    module = load_module(ckpt)
    detector = module.detector.eval()
    settings = dict(module.inference)
    net = detector.localiser if isinstance(detector, TwoStageDetector) else detector
    if isinstance(detector, TwoStageDetector):
        decode_settings = {
            "score_thresh": detector.loc_score_thresh,
            "nms_thresh": detector.loc_nms_thresh,
            "max_detections": detector.max_boxes,
        }
    else:
        decode_settings = settings
    size = tuple(images.shape[-2:])
    with torch.inference_mode():
        outputs = net(images)
        found = net.postprocess(*outputs, size, **decode_settings)[0]
        forward = median_seconds(lambda: net(images), repeats)
        decode = median_seconds(lambda: net.postprocess(*outputs, size, **decode_settings), repeats)
        detect = median_seconds(lambda: detector.detect(images, **settings), repeats)
    return {
        "hd_forward_seconds": round(forward, 4),
        "hd_decode_seconds": round(decode, 4),
        "hd_detect_seconds": round(detect, 4),
        "hd_boxes": len(found["boxes"]),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", action="append", required=True, help="HEAD=RUN_DIR (repeat)")
    parser.add_argument("--photo", type=Path, required=True, help="a tablet photo for the HD input")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json", type=Path, help="write the entries here")
    parser.add_argument("--note", default="", help="what the comparison shows, its limits")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    images = hd_input(args.photo)
    entries: dict[str, dict[str, Any]] = {}
    for spec in args.run:
        head, _, run = spec.partition("=")
        run_dir = Path(run)
        summary = json.loads((run_dir / "summary.json").read_text())
        ckpt = Path(summary.get("best_checkpoint") or run_dir / "checkpoints" / "best.ckpt")
        print(f"{head}: timing {ckpt}")
        entries[head] = {
            "test_map": summary.get("test_map"),
            "test_coco_map_50_class_agnostic": summary.get("test_coco_map_50_class_agnostic"),
            "test_loc_ap": summary.get("test_loc_ap"),
            "test_global_ap": summary.get("test_global_ap"),
            "val_best": summary.get("val_best"),
            **time_head(ckpt, images, args.repeats),
            "global_steps": summary.get("global_steps"),
            "train_time_s": summary.get("train_time_s"),
            "command": summary.get("command"),
            "git_commit": summary.get("git_commit"),
            "run_dir": str(run_dir),
        }
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=False
    ).stdout.strip()
    record = {
        "heads": entries,
        "timing": {
            "input": f"{args.photo.name} in gray, 1920x1080",
            "threads": args.threads,
            "machine": platform.machine(),
            "repeats": args.repeats,
            "script_commit": commit,
        },
        "units": "mAP / AP in percent on the real test_full photos (paper protocol; COCO AP50 "
        "class-agnostic from torchmetrics); seconds are medians on the CPU",
        "notes": args.note,
    }
    keys = [
        "test_map",
        "test_coco_map_50_class_agnostic",
        "test_loc_ap",
        "hd_forward_seconds",
        "hd_decode_seconds",
        "hd_detect_seconds",
    ]
    print("| head | " + " | ".join(keys) + " |")
    print("|---" * (len(keys) + 1) + "|")
    for head, entry in entries.items():
        print(f"| {head} | " + " | ".join(str(entry.get(k)) for k in keys) + " |")
    if args.json:
        write_json(args.json, record)
        print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
