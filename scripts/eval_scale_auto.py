#!/usr/bin/env python
"""Measure ``scale=auto`` on the real photos: relative error against the CSDD scale per view,
and test_full mAP with the estimated scale next to the metadata scale.

    .venv/bin/python scripts/eval_scale_auto.py --model outputs/export/recogniser.onnx \\
        [--data-dir ../shared/data] [--calibrate] [--map] [--threads 2] \\
        [--out results/scale_auto.csv] [--json results/inference.json]

``--calibrate`` first sets ``reference_pitch`` and ``reference_height`` (line pitch and median
box height at the right scale, in working sign heights) from the unflagged train_full views only,
then measures every view of train_full and test_full. Views that ``results/annotation_fit.csv``
flags (boxes off the text lines, often a wrong metadata scale) are reported separately.
``--map`` detects every test_full view at both scales through the same code path
(``predict_photos``) and scores both with the paper protocol in the frame the model was
evaluated in. Figures go to the CSV, a scatter plot beside it and, with ``--json``, into the
given results JSON (keys ``scale_auto_*`` and ``test_map_scale_*``).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from cuneidet.data.csdd import CSDD
from cuneidet.data.location import resolve_data_dir
from cuneidet.data.segments import PhotoCache, crop_segment
from cuneidet.data.sources import build_photo_source
from cuneidet.data.views import annotated_segments
from cuneidet.deploy.runtime import load_onnx_detector
from cuneidet.eval.paper_metric import PaperSignMAP
from cuneidet.inference.predict import PhotoRequest, predict_photos
from cuneidet.inference.scale import ScaleEstimationError, ScaleSettings, estimate_scale
from cuneidet.utils.io import atomic_open, write_json

log = logging.getLogger("eval_scale_auto")


def measure(detector, source, segments, settings) -> pd.DataFrame:
    cache = PhotoCache(source)
    rows = []
    for seg in tqdm(segments, desc="scale", unit="view"):
        image = crop_segment(cache.load(seg.tablet), seg.bbox, tablet=seg.tablet)
        start = time.perf_counter()
        try:
            estimate = estimate_scale(detector, image, settings)
            scale, response, boxes = estimate.scale, estimate.response, estimate.boxes
            last = estimate.probes[-1]
        except ScaleEstimationError as error:
            log.warning("%s: %s", seg.key, error)
            scale, response, boxes, last = float("nan"), 0.0, 0, {}
        heights = (seg.boxes[:, 3] - seg.boxes[:, 1]) * seg.scale
        rows.append(
            {
                "key": seg.key,
                "view": seg.name,
                "meta_scale": seg.scale,
                "auto_scale": scale,
                "rel_error": abs(scale - seg.scale) / seg.scale,
                "response": response,
                "boxes": boxes,
                "probe_scale": last.get("scale", np.nan),
                "probe_median_height": last.get("median_height", np.nan),
                "probe_line_pitch": last.get("line_pitch", np.nan),
                "gt_median_height_at_meta": float(np.median(heights)) if len(heights) else np.nan,
                "seconds": time.perf_counter() - start,
            }
        )
    return pd.DataFrame(rows)


def with_box_scale(frame: pd.DataFrame) -> pd.DataFrame:
    """``box_scale``: the scale the view's own boxes imply (its median box height brought to
    the median over all views): a second opinion where the metadata scale is suspect."""
    typical = float(np.nanmedian(frame["gt_median_height_at_meta"]))
    return frame.assign(box_scale=frame["meta_scale"] * typical / frame["gt_median_height_at_meta"])


def summary(frame: pd.DataFrame) -> dict[str, float]:
    errors = frame["rel_error"].fillna(np.inf)
    return {
        "views": len(frame),
        "median_rel_error": float(errors.median()),
        "p90_rel_error": float(errors.quantile(0.9)),
        "within_5pct": float((errors <= 0.05).mean()),
        "within_15pct": float((errors <= 0.15).mean()),
        "failed": int(frame["auto_scale"].isna().sum()),
    }


def test_map(detector, inference, source, segments, scales, sign_height) -> float:
    """Paper mAP over ``segments`` detected at ``scales[key]`` (None: estimate)."""
    metric = PaperSignMAP(num_classes=int(detector.num_classes))
    cache = PhotoCache(source)
    for seg in tqdm(segments, desc="detect", unit="view"):
        request = PhotoRequest(
            name=seg.key, image=cache.load(seg.tablet), scale=scales[seg.key], bbox=seg.bbox
        )
        # a view whose scale cannot be estimated is a counted skip: no detections
        frame = predict_photos(detector, [request], progress=False, **inference)
        # photo pixels -> the segment at its metadata scale and the model's sign height
        factor = seg.scale * sign_height / 128.0
        origin = np.array(seg.bbox[:2] * 2, dtype=np.float64)
        boxes = (frame[["x1", "y1", "x2", "y2"]].to_numpy(np.float64) - origin) * factor
        pred = {
            "boxes": torch.as_tensor(boxes, dtype=torch.float32).reshape(-1, 4),
            "scores": torch.as_tensor(frame["det_score"].to_numpy(), dtype=torch.float32),
            "labels": torch.as_tensor(frame["train_label"].to_numpy(), dtype=torch.long),
        }
        target = {
            "boxes": torch.as_tensor(seg.boxes * factor, dtype=torch.float32).reshape(-1, 4),
            "labels": torch.as_tensor(seg.labels, dtype=torch.long),
        }
        metric.update([pred], [target])
    return float(metric.compute()["map"]) * 100


def plot(frame: pd.DataFrame, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.5, 5))
    for flagged, colour, label in ((False, "tab:blue", "views"), (True, "tab:red", "flagged")):
        part = frame[frame["flagged"] == flagged]
        ax.scatter(part["meta_scale"], part["auto_scale"], s=14, c=colour, label=label)
    low, high = 0.5, 5.0
    ax.plot([low, high], [low, high], "k-", lw=0.8)
    for factor in (0.85, 1.15):
        ax.plot([low, high], [low * factor, high * factor], "k:", lw=0.6)
    ax.set(
        xscale="log",
        yscale="log",
        xlabel="CSDD scale",
        ylabel="scale=auto",
        title="Automatic sign scale on the real views (dotted: ±15 %)",
    )
    from matplotlib.ticker import NullFormatter, ScalarFormatter

    ticks = [0.5, 0.7, 1, 1.5, 2, 3, 4, 5]
    for axis in (ax.xaxis, ax.yaxis):
        axis.set_major_formatter(ScalarFormatter())
        axis.set_minor_formatter(NullFormatter())
    ax.set_xticks(ticks)
    ax.set_yticks(ticks)
    ax.legend()
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_open(path, "wb") as handle:
        fig.savefig(handle, format="png", dpi=120)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True, help="an exported .onnx (cuneidet-export)")
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--calibrate", action="store_true")
    parser.add_argument("--reference-height", type=float, default=None)
    parser.add_argument("--reference-pitch", type=float, default=None)
    parser.add_argument("--window", type=int, default=None, help="scale_auto.window (px)")
    parser.add_argument("--measure-window", type=int, default=None)
    parser.add_argument("--map", action="store_true", help="also test_full mAP at both scales")
    parser.add_argument("--fit", default="results/annotation_fit.csv")
    parser.add_argument("--out", default="results/scale_auto.csv")
    parser.add_argument("--json", default=None, help="results JSON to add the figures to")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    torch.set_num_threads(args.threads)
    detector, meta = load_onnx_detector(args.model, threads=args.threads)
    csdd = CSDD(resolve_data_dir(args.data_dir))
    source = build_photo_source("folder", csdd.data_dir)
    train = annotated_segments(csdd, ["train_full"])
    test = annotated_segments(csdd, ["test_full"])
    flagged = set()
    if Path(args.fit).is_file():
        fit = pd.read_csv(args.fit)
        flagged = set(fit.loc[fit["flagged"], "key"])
    stored = dict(meta.get("scale_auto") or {})
    window = {"window": args.window} if args.window else {}
    if args.measure_window:
        window["measure_window"] = args.measure_window
    references = {
        "reference_height": args.reference_height or stored.get("reference_height", 1.0),
        "reference_pitch": args.reference_pitch or stored.get("reference_pitch", 1.0),
    }
    if args.calibrate:  # on the train_full views the audit does not flag
        views = [seg for seg in train if seg.key not in flagged]
        probe = measure(detector, source, views, ScaleSettings(**window))
        ratio = probe["meta_scale"] / probe["probe_scale"]
        references = {
            "reference_height": float(np.nanmedian(ratio * probe["probe_median_height"])),
            "reference_pitch": float(np.nanmedian(ratio * probe["probe_line_pitch"])),
        }
        print(f"calibrated on {len(views)} train_full views: {references}")
    settings = ScaleSettings(**references, **window)
    frame = pd.concat(
        [
            measure(detector, source, train, settings).assign(split="train_full"),
            measure(detector, source, test, settings).assign(split="test_full"),
        ],
        ignore_index=True,
    )
    frame["flagged"] = frame["key"].isin(flagged)
    frame = with_box_scale(frame)
    with atomic_open(args.out, "w", newline="") as handle:
        frame.to_csv(handle, index=False)
    plot(frame, Path(args.out).with_suffix(".png"))
    result = {
        **references,
        "window": settings.window,
        "measure_window": settings.measure_window,
        "all_views": summary(frame),
        "unflagged_views": summary(frame[~frame["flagged"]]),
        "flagged_views": summary(frame[frame["flagged"]]),
        "test_full_views": summary(frame[frame["split"] == "test_full"]),
        "flagged": frame[frame["flagged"]][
            ["key", "view", "meta_scale", "box_scale", "auto_scale", "rel_error"]
        ]
        .round(3)
        .to_dict(orient="records"),
        "seconds_per_view": float(frame["seconds"].median()),
    }
    if args.map:
        inference = dict(meta.get("inference") or {})
        sign_height = float(meta["sign_height"])
        auto = {seg.key: None for seg in test}
        metadata = {seg.key: seg.scale for seg in test}
        # the detector estimates the scale inside predict_photos with these settings
        inference_auto = {**inference, "scale_settings": settings}
        result["test_map_scale_metadata"] = test_map(
            detector, inference, source, test, metadata, sign_height
        )
        result["test_map_scale_auto"] = test_map(
            detector, inference_auto, source, test, auto, sign_height
        )
    print(json.dumps({k: v for k, v in result.items() if k != "flagged"}, indent=2))
    if args.json:
        path = Path(args.json)
        current = json.loads(path.read_text()) if path.is_file() else {}
        current["scale_auto"] = {**result, "command": " ".join(["python", *sys.argv])}
        current["scale_auto_median_rel_error"] = result["all_views"]["median_rel_error"]
        current["scale_auto_p90_rel_error"] = result["all_views"]["p90_rel_error"]
        for key in ("test_map_scale_auto", "test_map_scale_metadata"):
            if key in result:
                current[key] = result[key]
        write_json(path, current)


if __name__ == "__main__":
    main()
