"""Turn a finished ``trainer.test`` run into files a person can read."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from PIL import Image

from cuneidet.eval.paper_metric import classify_detections
from cuneidet.eval.reports import draw_segment_detections, write_metrics

log = logging.getLogger(__name__)


def write_test_report(
    module: Any,
    datamodule: Any,
    out_dir: str | Path,
    num_images: int = 4,
    draw_score_thresh: float = 0.3,
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """metrics.json, per_class_ap.csv, pr_curve.png and a few annotated test segments.

    Returns the metrics dictionary written to metrics.json (mAP values in percent).
    """
    out_dir = Path(out_dir)
    class_names = datamodule.class_names()
    info = {
        "test_sets": list(datamodule.hparams.test_sets),
        "num_segments": len(module.test_records),
        **(extra or {}),
    }
    metrics = write_metrics(
        out_dir,
        module.test_result,
        coco=getattr(module, "test_coco_result", None),
        extra=info,
        class_names=class_names,
    )
    samples = datamodule.test_samples or []
    records = sorted(module.test_records, key=lambda r: -len(r["target"]["labels"]))
    for record in records[:num_images]:
        sample = samples[record["index"]]
        # classified with all detections (as evaluated); only confident ones are drawn
        draw_segment_detections(
            Image.fromarray(sample.image),
            record["pred"],
            record["target"],
            classify_detections(record["pred"], record["target"]),
            out_dir / "segments" / f"{sample.name.replace(' ', '_')}.png",
            class_names=class_names,
            min_score=draw_score_thresh,
        )
    log.info(
        "test: mAP %s, global AP %s over %d segments → %s",
        metrics["map"],
        metrics["global_ap"],
        len(module.test_records),
        out_dir,
    )
    return metrics
