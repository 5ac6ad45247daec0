#!/usr/bin/env python
"""End-to-end inference benchmark on the CPU: HD and 4K photos, decode -> boxes, per runtime.

    .venv/bin/python scripts/bench_inference.py --ckpt <best.ckpt> [--model <export.onnx>] \\
        [--threads 2] [--repeats 5] [--photo <tablet photo>] [--json results/inference.json]

The test photos are built from a real tablet photo (default: the CSDD test view with the most
signs) resized so that its signs are 128 px high (CSDD scale 1) and repeated to fill 1920x1080
(HD) and 3840x2160 (4K), written as JPEG: each run decodes the file, converts it to grayscale,
resizes it to the model's working sign height, runs the networks and decodes the boxes with
NMS (``cuneidet.inference.predict.predict_paths`` at scale 1). Runtimes: eager PyTorch (the
checkpoint), ONNX Runtime fp32 (the export; made in a temporary folder when --model is not
given), with --fast ONNX Runtime fp32 with the FAST recogniser settings (one crop context, only
confident localiser boxes), and, with --int8, ONNX Runtime on dynamically quantised graphs.
The baseline is the seed's network shape (1-channel MobileNetV2 x0.625, P5/P6, 12 anchors x 240
classes, random weights: ``cuneidet.models.reference_weights.paper_detector``), its forward pass
alone on the same HD/4K grayscale tensors, timed in the same process. Medians of --repeats runs
after one warm-up; torch and ONNX Runtime both get --threads threads.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from cuneidet.data.datasets import to_input_tensor
from cuneidet.deploy.export import export_onnx
from cuneidet.deploy.runtime import load_inference_model
from cuneidet.inference.predict import predict_paths
from cuneidet.models.checkpoint import load_module
from cuneidet.models.reference_weights import paper_detector
from cuneidet.utils.io import write_json
from cuneidet.utils.timing import median_seconds

SIZES = {"hd": (1920, 1080), "k4": (3840, 2160)}
#: the "fast" recogniser settings (--fast): one crop context instead of three, and only the
#: localiser's confident boxes named (its test_full mAP is measured with cuneidet-eval)
FAST = {"tta_contexts": [1.3], "loc_score_thresh": 0.3, "max_boxes": 300}


def test_photo(photo: Path, scale: float, size: tuple[int, int], out: Path) -> Path:
    """``photo`` resized by ``scale`` and repeated (no flips) to ``size``, saved as JPEG."""
    with Image.open(photo) as handle:
        image = handle.convert("RGB")
    image = image.resize((round(image.width * scale), round(image.height * scale)))
    canvas = Image.new("RGB", size, (0, 0, 0))
    for y in range(0, size[1], image.height):
        for x in range(0, size[0], image.width):
            canvas.paste(image, (x, y))
    canvas.save(out, quality=92)
    return out


def default_photo(data_dir: str | None) -> tuple[Path, float]:
    """The test_full view with the most boxes: its photo cropped to the view, and its scale."""
    from cuneidet.data.csdd import CSDD
    from cuneidet.data.location import resolve_data_dir
    from cuneidet.data.segments import crop_segment
    from cuneidet.data.sources import build_photo_source
    from cuneidet.data.views import annotated_segments

    csdd = CSDD(resolve_data_dir(data_dir))
    view = max(annotated_segments(csdd, ["test_full"]), key=lambda s: len(s.boxes))
    photo = build_photo_source("folder", csdd.data_dir).load(view.tablet)
    out = Path(tempfile.mkdtemp()) / f"{view.tablet}.png"
    crop_segment(photo, view.bbox).save(out)
    return out, view.scale


def quantised(model: Path, folder: Path) -> Path:
    """Dynamically int8-quantised copies of every graph of an export, with their sidecar."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    from cuneidet.deploy.sidecar import file_sha256, graph_path, read_sidecar

    meta = read_sidecar(model)
    out = folder / "int8.onnx"
    for role, graph in meta["graphs"].items():
        target = graph_path(out, role)
        quantize_dynamic(model.parent / graph["file"], target, weight_type=QuantType.QInt8)
        graph["file"], graph["sha256"] = target.name, file_sha256(target)
    write_json(out.with_suffix(".json"), meta)
    return out


def hardware(threads: int) -> str:
    import os
    import platform

    import onnxruntime

    return (
        f"{platform.machine()} CPU, {os.cpu_count()} cores, {threads} threads for torch "
        f"{torch.__version__} and onnxruntime {onnxruntime.__version__}, no GPU"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ckpt", required=True, help="a detector or recogniser checkpoint")
    parser.add_argument("--model", help="its ONNX export (default: exported here)")
    parser.add_argument("--photo", help="a tablet photo (default: a CSDD test view)")
    parser.add_argument("--photo-scale", type=float, help="the photo's CSDD scale")
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--int8", action="store_true", help="also time int8 (dynamic) graphs")
    parser.add_argument("--fast", action="store_true", help="also time the FAST settings")
    parser.add_argument("--json", help="results JSON to add the figures to")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    work = Path(tempfile.mkdtemp(prefix="bench_inference_"))
    if args.photo:
        photo, photo_scale = Path(args.photo), float(args.photo_scale or 1.0)
    else:
        photo, photo_scale = default_photo(args.data_dir)
    photos = {
        name: test_photo(photo, photo_scale, size, work / f"{name}.jpg")
        for name, size in SIZES.items()
    }
    model = Path(args.model) if args.model else None
    if model is None:
        module = load_module(args.ckpt)
        model = Path(
            export_onnx(module.detector, work / "model.onnx", inference=module.inference)
        ).with_suffix(".onnx")
    runtimes = {
        "torch_eager": load_inference_model("torch", ckpt_path=args.ckpt),
        "onnxruntime_fp32": load_inference_model("onnx", model=model, threads=args.threads),
    }
    if args.fast:
        runtimes["onnxruntime_fp32_fast"] = load_inference_model(
            "onnx", model=model, threads=args.threads, recogniser=FAST
        )
    if args.int8:
        runtimes["onnxruntime_int8"] = load_inference_model(
            "onnx", model=quantised(model, work), threads=args.threads
        )
    figures: dict[str, dict[str, float]] = {"hd_seconds": {}, "k4_seconds": {}, "boxes": {}}
    for name, loaded in runtimes.items():
        for size, path in photos.items():

            def run(loaded=loaded, path=path):
                return predict_paths(
                    loaded.detector, [path], scale=1.0, progress=False, **loaded.inference
                )

            figures[f"{size}_seconds"][name] = round(median_seconds(run, args.repeats), 3)
            figures["boxes"][f"{name}_{size}"] = len(run())
            print(
                f"{name:18s} {size}: {figures[f'{size}_seconds'][name]:.3f} s, "
                f"{figures['boxes'][f'{name}_{size}']} boxes",
                flush=True,
            )
    seed = paper_detector().eval()
    for size, (width, height) in SIZES.items():
        tensor = to_input_tensor(np.zeros((height, width), np.uint8))[None]
        with torch.inference_mode():
            seconds = median_seconds(lambda t=tensor: seed(t), args.repeats)
        figures[f"{size}_seconds"]["seed_shape_forward"] = round(seconds, 3)
        print(f"seed shape forward {size}: {seconds:.3f} s", flush=True)
    hd = figures["hd_seconds"]
    best = min(v for k, v in hd.items() if k != "seed_shape_forward")
    result = {
        "command": " ".join(["python", *sys.argv]),
        "hd_seconds": hd,
        "k4_seconds": figures["k4_seconds"],
        "boxes_per_photo": figures["boxes"],
        "hd_speedup_vs_seed_shape": round(hd["seed_shape_forward"] / best, 2),
        "hd_speedup_onnx_vs_eager": round(hd["torch_eager"] / hd["onnxruntime_fp32"], 2),
        "hd_speedup_vs_seed_shape_per_runtime": {
            k: round(hd["seed_shape_forward"] / v, 2)
            for k, v in hd.items()
            if k != "seed_shape_forward"
        },
        "fast_settings": FAST if args.fast else None,
        "k4_speedup_vs_seed_shape": round(
            figures["k4_seconds"]["seed_shape_forward"]
            / min(v for k, v in figures["k4_seconds"].items() if k != "seed_shape_forward"),
            2,
        ),
        "threads": args.threads,
        "repeats": args.repeats,
        "photo": f"{photo.name} at CSDD scale {photo_scale} (signs 128 px high), repeated",
        "hardware": hardware(args.threads),
    }
    print(json.dumps(result, indent=2))
    if args.json:
        path = Path(args.json)
        current = json.loads(path.read_text()) if path.is_file() else {}
        current.update(result)
        write_json(path, current)


if __name__ == "__main__":
    main()
