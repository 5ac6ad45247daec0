#!/usr/bin/env python
"""Detector benchmark: parameters, CPU forward time for HD and 4K gray images, training tiles/s.

    .venv/bin/python scripts/bench_detector.py [--repeats 5] [--backbone paper|resnet18 ...]

Prints a table; the reference README claims < 1 s (HD) and < 10 s (4K) on a CPU for the paper's
network. Timings are medians over --repeats runs after one warm-up run.
"""

from __future__ import annotations

import argparse
import platform

import torch

from cuneidet.models.anchors import AnchorGenerator
from cuneidet.models.detector import SignDetector
from cuneidet.models.heads import RetinaHead, SSDHead
from cuneidet.models.necks import TorchvisionFPN
from cuneidet.models.reference_weights import paper_detector
from cuneidet.utils.timing import median_seconds


def build(backbone: str, head: str) -> SignDetector:
    if backbone == "paper" and head == "ssd":
        return paper_detector()
    head_spec = SSDHead() if head == "ssd" else RetinaHead()
    if backbone == "paper":
        from cuneidet.models.necks import PaperFPN

        return SignDetector(PaperFPN(), head_spec, AnchorGenerator(), num_classes=240)
    fpn = TorchvisionFPN(backbone)
    anchors = AnchorGenerator(sizes=(64, 128, 256))
    return SignDetector(fpn, head_spec, anchors, num_classes=240)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backbone", default="paper")
    parser.add_argument("--head", default="ssd", choices=["ssd", "retinanet"])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--batch", type=int, default=8, help="training batch of 512-px tiles")
    parser.add_argument("--train-steps", type=int, default=3)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--json", help="also write the figures to this JSON file")
    args = parser.parse_args()

    device = torch.device(args.device)
    detector = build(args.backbone, args.head).to(device)
    params = sum(p.numel() for p in detector.parameters())
    results: dict[str, object] = {
        "backbone": args.backbone,
        "head": args.head,
        "device": str(device),
        "threads": torch.get_num_threads(),
        "machine": platform.machine(),
        "parameters_M": round(params / 1e6, 3),
    }

    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize()

    detector.eval()
    for name, (height, width) in {
        "hd_1920x1080": (1080, 1920),
        "4k_3840x2160": (2160, 3840),
    }.items():
        image = torch.rand(1, 1, height, width, device=device) - 0.5

        def forward(image: torch.Tensor = image) -> None:
            with torch.inference_mode():
                detector(image)
            sync()

        def detect(image: torch.Tensor = image) -> None:
            detector.detect(image, score_thresh=0.01, nms_thresh=0.5)
            sync()

        results[f"forward_s_{name}"] = round(median_seconds(forward, args.repeats), 3)
        results[f"detect_s_{name}"] = round(median_seconds(detect, max(1, args.repeats // 2)), 3)

    detector.train()
    optimizer = torch.optim.SGD(detector.parameters(), lr=1e-3, momentum=0.9)
    images = torch.rand(args.batch, 1, 512, 512, device=device) - 0.5
    targets = [
        {
            "boxes": torch.tensor(
                [[100.0, 100.0, 228.0, 228.0], [300, 120, 420, 250]], device=device
            ),
            "labels": torch.tensor([5, 17], device=device),
        }
        for _ in range(args.batch)
    ]

    def train_step() -> None:
        loc, cls = detector(images)
        loss = detector.loss(loc, cls, targets, (512, 512))["loss"]
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        sync()

    step = median_seconds(train_step, args.train_steps)
    results["train_step_s"] = round(step, 3)
    results["train_tiles_per_s"] = round(args.batch / step, 2)
    results["ratio_4k_to_hd_forward"] = round(
        results["forward_s_4k_3840x2160"] / results["forward_s_hd_1920x1080"], 2
    )
    width = max(len(k) for k in results)
    for key, value in results.items():
        print(f"{key:<{width}}  {value}")
    if args.json:
        from cuneidet.utils.io import write_json

        write_json(args.json, results)


if __name__ == "__main__":
    main()
