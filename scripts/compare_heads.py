#!/usr/bin/env python
"""Side by side of detector heads: test figures of finished runs + decode time per HD photo.

    .venv/bin/python scripts/compare_heads.py \\
        --run retinanet=outputs/make_train/runs/<run> \\
        --run watershed=outputs/watershed_two_stage/runs/<run> \\
        --photo ../shared/data/csdd/images/ND02486.jpg --bbox 382,343,1196,1431 --scale 1.63 \\
        --json results/watershed.json

For every ``HEAD=RUN`` it reads the run's ``summary.json`` (test mAP on the real test_full
photos, class-agnostic COCO AP50, command, commit, training time) or a cuneidet-eval folder's
``metrics.json``, loads the checkpoint (with the evaluation's overrides) and times, with
``--threads`` threads, one HD input full of signs at the model's working scale (a real tablet
view cut and scaled as for testing, repeated to fill 1920x1080):

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
from omegaconf import OmegaConf
from PIL import Image

from cuneidet.data.datasets import to_input_tensor
from cuneidet.data.segments import extract_segment
from cuneidet.models.checkpoint import load_module
from cuneidet.models.two_stage import TwoStageDetector
from cuneidet.utils.io import write_json
from cuneidet.utils.timing import median_seconds

HD = (1080, 1920)


def hd_input(photo: Path, bbox: list[float], scale: float) -> torch.Tensor:
    """``[1, 1, 1080, 1920]``: the tablet view ``bbox`` of ``photo`` cut, grayed and scaled by
    ``scale`` (signs at the model's working height), repeated side by side to fill an HD frame
    full of signs, as a photo of a large tablet at working scale would be."""
    view = np.asarray(extract_segment(Image.open(photo), tuple(bbox), scale))
    reps = (-(-HD[0] // view.shape[0]), -(-HD[1] // view.shape[1]))
    return to_input_tensor(np.tile(view, reps)[: HD[0], : HD[1]])[None]


def time_head(
    ckpt: Path, view: argparse.Namespace, repeats: int, overrides: dict[str, Any]
) -> dict[str, float]:
    module = load_module(ckpt, **overrides)
    detector = module.detector.eval()
    images = hd_input(view.photo, view.bbox, view.scale * module.sign_height / 128.0)
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


def run_summary(run_dir: Path) -> dict[str, Any]:
    """A cuneidet-train run's ``summary.json``, or the headline of a cuneidet-eval folder's
    ``metrics.json`` under the same keys (its checkpoint, command and commit)."""
    if (run_dir / "summary.json").is_file():
        return json.loads((run_dir / "summary.json").read_text())
    metrics = json.loads((run_dir / "metrics.json").read_text())
    extra = metrics.get("extra", {})
    # the evaluation's overrides of the checkpoint's settings, so the timing decodes as it did
    config = OmegaConf.load(run_dir / "config_resolved.yaml")
    overrides = {
        key: OmegaConf.to_container(config[key], resolve=True)
        for key in ("inference", "recogniser", "watershed")
        if key in config
    }
    return {
        "overrides": overrides,
        "test_map": metrics.get("map"),
        "test_coco_map_50_class_agnostic": metrics.get("coco_map_50_agnostic"),
        "test_loc_ap": extra.get("loc_ap"),
        "test_global_ap": metrics.get("global_ap"),
        "best_checkpoint": extra.get("checkpoint"),
        "command": extra.get("command"),
        "git_commit": extra.get("git_commit"),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", action="append", required=True, help="HEAD=RUN_DIR (repeat)")
    parser.add_argument("--photo", type=Path, required=True, help="a tablet photo for the HD input")
    parser.add_argument("--bbox", required=True, help="x0,y0,x1,y1 of a view (CSDD segment bbox)")
    parser.add_argument("--scale", type=float, required=True, help="its CSDD scale (128-px signs)")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json", type=Path, help="write the entries here")
    parser.add_argument("--note", default="", help="what the comparison shows, its limits")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    args.bbox = [float(v) for v in args.bbox.split(",")]
    entries: dict[str, dict[str, Any]] = {}
    for spec in args.run:
        head, _, run = spec.partition("=")
        run_dir = Path(run)
        summary = run_summary(run_dir)
        ckpt = Path(summary.get("best_checkpoint") or run_dir / "checkpoints" / "best.ckpt")
        print(f"{head}: timing {ckpt}")
        entries[head] = {
            "test_map": summary.get("test_map"),
            "test_coco_map_50_class_agnostic": summary.get("test_coco_map_50_class_agnostic"),
            "test_loc_ap": summary.get("test_loc_ap"),
            "test_global_ap": summary.get("test_global_ap"),
            "val_best": summary.get("val_best"),
            "eval_overrides": summary.get("overrides"),
            **time_head(ckpt, args, args.repeats, summary.get("overrides") or {}),
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
            "input": f"{args.photo.name} view {args.bbox} at the CSDD scale {args.scale} x the "
            "model's sign height / 128, gray, repeated to fill 1920x1080",
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
